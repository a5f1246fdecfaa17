"""Training loops: softmax pre-training on freshly generated batches, and task accuracy."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from gcsim.accuracy.tasks import IGNORE, Batch


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: int = 100
    seed: int = 0          # data stream; the model's init has its own seed
    clip_norm: float = 1.0


@dataclass
class TrainLog:
    seconds: float = 0.0
    steps: int = 0
    losses: list[float] = field(default_factory=list)   # one per step
    # (step, accuracy, loss) on the validation batch, when there is one
    checkpoints: list[tuple[int, float, float]] = field(default_factory=list)
    best_step: int = 0   # the step whose state the model ends in


def as_tensors(batch: Batch, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(batch.tokens, device=device),
            torch.as_tensor(batch.targets, device=device))


def task_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the scored positions only."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=IGNORE)


@torch.no_grad()
def evaluate(model, batch: Batch, batch_size: int = 256, progress=None) -> tuple[float, float]:
    """(accuracy, loss): the fraction of scored positions whose most likely token is the
    target, and the mean cross-entropy there in nats (finer than accuracy near 1)."""
    model.eval()
    correct = total = 0
    loss = 0.0
    for start in range(0, len(batch.tokens), batch_size):
        tokens, targets = as_tensors(Batch(batch.tokens[start:start + batch_size],
                                           batch.targets[start:start + batch_size]))
        logits = model(tokens)
        scored = targets != IGNORE
        correct += int((logits.argmax(-1)[scored] == targets[scored]).sum())
        loss += float(F.cross_entropy(logits[scored].float(), targets[scored], reduction="sum"))
        total += int(scored.sum())
        if progress is not None:
            progress.update(len(tokens))
    return correct / max(total, 1), loss / max(total, 1)


def accuracy(model, batch: Batch, batch_size: int = 256, progress=None) -> float:
    return evaluate(model, batch, batch_size, progress)[0]


def cosine_lr(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    done = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


def train(model, task, config: TrainConfig, parameters=None, validation: Batch | None = None,
          validate_every: int = 0, stop_at: float | None = None, progress=None) -> TrainLog:
    """AdamW on freshly generated batches with warmup and cosine decay; `parameters` restricts
    what is trained (default: everything). With a `validation` batch, the loss there is
    measured before the first step and every `validate_every` steps, and the model ends in its
    best state: training with the hardware in the loop can silence a HardSigmoid (no charge
    above threshold, no gradient), and adaptation must not leave a model worse than it found
    it. `stop_at` ends training once the validation accuracy reaches it: the step budget is
    an upper bound (associative recall is learnt in a sudden transition whose step varies with
    the seed, and a long cosine schedule keeps the learning rate up until it comes)."""
    rng = np.random.default_rng(config.seed)
    params = [p for p in (parameters if parameters is not None else model.parameters())
              if p.requires_grad]
    # Weight decay on matrices only: not on biases, norms or the per-head scalers (4-D).
    decay = [p for p in params if p.ndim == 2]
    no_decay = [p for p in params if p.ndim != 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.lr, betas=(0.9, 0.98))
    log = TrainLog()
    best = None

    def check(step):
        nonlocal best
        accuracy_, loss_ = evaluate(model, validation)
        log.checkpoints.append((step, accuracy_, loss_))
        if best is None or loss_ < best[0]:
            best = (loss_, step, copy.deepcopy(model.state_dict()))

    start = time.perf_counter()
    if validation is not None:
        check(0)
    for step in range(config.steps):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, config)
        tokens, targets = as_tensors(task.generate(config.batch, rng))
        loss = task_loss(model(tokens), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_norm:
            torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
        optimizer.step()
        log.losses.append(loss.item())
        log.steps = step + 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{log.losses[-1]:.3f}", refresh=False)
        last = step + 1 == config.steps
        if validation is not None and (last or (validate_every and
                                                (step + 1) % validate_every == 0)):
            check(step + 1)
            if stop_at is not None and log.checkpoints[-1][1] >= stop_at:
                break
    if best is not None and best[1] != log.steps:
        model.load_state_dict(best[2])
    log.best_step = best[1] if best is not None else log.steps
    log.seconds = time.perf_counter() - start
    return log
