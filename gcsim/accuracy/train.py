"""Training loops: softmax pre-training on freshly generated batches, and task accuracy."""

from __future__ import annotations

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
    checkpoints: list[tuple[int, float]] = field(default_factory=list)  # (step, accuracy)


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


def train(model, task, config: TrainConfig, parameters=None, eval_batch: Batch | None = None,
          eval_every: int = 0, progress=None, time_limit_s: float | None = None) -> TrainLog:
    """AdamW on freshly generated batches with warmup and cosine decay. `parameters` restricts
    what is trained (default: everything); `time_limit_s` stops early, honestly logged."""
    rng = np.random.default_rng(config.seed)
    params = [p for p in (parameters if parameters is not None else model.parameters())
              if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.lr, betas=(0.9, 0.98))
    log = TrainLog()
    start = time.perf_counter()
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
        if eval_every and eval_batch is not None and (step + 1) % eval_every == 0:
            log.checkpoints.append((step + 1, accuracy(model, eval_batch)))
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            break
    log.seconds = time.perf_counter() - start
    return log
