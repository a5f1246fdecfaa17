"""Mapping a softmax-trained model onto the hardware and adapting it, as the published method
does: the per-head scalers are calibrated on statistics first (forward passes only), then
trained, then the weights are fine-tuned with the hardware in the loop."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from gcsim.accuracy.model import HardwareCore, TinyTransformer
from gcsim.accuracy.tasks import Batch
from gcsim.accuracy.train import TrainConfig, TrainLog, as_tensors, train

# Input targets: the mean sits mid-range and +-3 standard deviations span the range, so a
# normal input is clipped 0.3 % of the time (the published calibration matched statistics of a
# reference model's scaled inputs; a softmax model has none, so the range sets them).
SPAN_SIGMAS = 3.0


@dataclass
class Calibration:
    iterations: int
    converged: bool
    largest_error: float   # relative, over every scaler's mean and std


def _per_head(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over batch, tokens and features: (1, H, 1, 1) each."""
    return x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)


@torch.no_grad()
def _record(model: TinyTransformer, tokens: torch.Tensor, cores: bool) -> list[dict]:
    """One forward pass recording, per layer, the attention's q, k, v and core output (the
    core's scaled tensors when `cores`)."""
    model.eval()
    holders = [a.core if cores else a for a in model.attentions]
    for holder in holders:
        holder.record = True
    try:
        model(tokens)
    finally:
        for holder in holders:
            holder.record = False
    return [dict(holder.recorded) for holder in holders]


def input_targets(core: HardwareCore) -> dict[str, tuple[float, float]]:
    """(mean, std) the scaled q, k, v aim at: the query range [0, 1] and the DAC's stored range,
    each centred (k and v on the mid-rail) and spanned by +-SPAN_SIGMAS."""
    point = core.twin.operating_point
    stored_span = point.stored_max_V - point.stored_min_V
    return {"q": (0.5, 1.0 / (2 * SPAN_SIGMAS)),
            "k": (point.mid_rail_V, stored_span / (2 * SPAN_SIGMAS)),
            "v": (point.mid_rail_V, stored_span / (2 * SPAN_SIGMAS))}


@torch.no_grad()
def calibrate(model: TinyTransformer, reference: TinyTransformer, batch: Batch,
              max_iterations: int = 30, tolerance: float = 0.01, relax_steps: int = 10,
              relax_min: float = 0.1, progress=None) -> Calibration:
    """The published calibration: repeat a forward pass on one batch and move every scaler's
    (a, b) so that its per-head output mean and std reach their targets, relaxed by a factor
    that falls from 1 to `relax_min` over `relax_steps` passes, until every error is below
    `tolerance` (relative to the target std). Targets: the input ranges for q, k, v, and the
    softmax reference's core output for the output scaler. Only the scalers change."""
    tokens, _ = as_tensors(batch)
    references = _record(reference, tokens, cores=False)
    outputs = [_per_head(r["out"]) for r in references]
    cores = model.cores()
    if not all(isinstance(core, HardwareCore) for core in cores):
        raise ValueError("calibration needs hardware cores in every layer")
    # A first guess from the reference's own q, k, v statistics, so that the passes only
    # have to correct for the hardware upstream.
    for core, recorded in zip(cores, references):
        for name, (target_mean, target_std) in input_targets(core).items():
            mean, std = _per_head(recorded[name])
            scaler = core.scalers[name]
            scaler.a.copy_(target_std / std.clamp(min=1e-12))
            scaler.b.copy_(target_mean - scaler.a * mean)
    largest = float("inf")
    for iteration in range(max_iterations):
        alpha = max(relax_min, 1.0 - (1.0 - relax_min) * iteration / max(1, relax_steps - 1))
        largest = 0.0
        for core, recorded, (out_mean, out_std) in zip(cores, _record(model, tokens, True),
                                                       outputs):
            targets = {**{name: (torch.full_like(out_mean, m), torch.full_like(out_std, s))
                          for name, (m, s) in input_targets(core).items()},
                       "out": (out_mean, out_std)}
            for name, (target_mean, target_std) in targets.items():
                scaler = core.scalers[name]
                mean, std = _per_head(recorded[name])
                scale = target_std.clamp(min=1e-12)
                largest = max(largest, float(((std - target_std).abs() / scale).max()),
                              float(((mean - target_mean).abs() / scale).max()))
                # Mean and std after a x + b move linearly with (a, b); a dead head (std 0)
                # keeps its gain.
                alive = std > 1e-12
                new_a = torch.where(alive, scaler.a * target_std / std.clamp(min=1e-12),
                                    scaler.a)
                unscaled_mean = (mean - scaler.b) / scaler.a
                new_b = target_mean - new_a * unscaled_mean
                scaler.a.copy_(alpha * new_a + (1 - alpha) * scaler.a)
                scaler.b.copy_(alpha * new_b + (1 - alpha) * scaler.b)
        if progress is not None:
            progress.update(1)
        if largest < tolerance:
            return Calibration(iteration + 1, True, largest)
    return Calibration(max_iterations, False, largest)


def scaler_parameters(model: TinyTransformer) -> list[torch.nn.Parameter]:
    return [p for core in model.cores() if isinstance(core, HardwareCore)
            for scaler in core.scalers.values() for p in scaler.parameters()]


def adapt(model: TinyTransformer, task, scaler_config: TrainConfig, weight_config: TrainConfig,
          progress=None) -> tuple[TrainLog, TrainLog]:
    """Hardware-in-the-loop training after the calibration: the scalers alone, then every
    weight (scalers included). The twins' own buffers (mismatch, decay) stay fixed."""
    scalers = scaler_parameters(model)
    first = train(model, task, scaler_config, parameters=scalers, progress=progress)
    second = train(model, task, weight_config, progress=progress)
    return first, second


def hardware_copy(model: TinyTransformer, twins) -> TinyTransformer:
    """A copy of the softmax model with each layer's attention on a twin (one per layer)."""
    copied = copy.deepcopy(model)
    heads = model.config.heads
    copied.set_cores(HardwareCore(twin, heads) for twin in twins)
    return copied


def swap_twins(model: TinyTransformer, twins) -> TinyTransformer:
    """The same model (shared weights and scalers) with each layer's twin replaced: the
    non-idealities switched without touching what was learned."""
    copied = copy.deepcopy(model)
    for core, twin in zip(copied.cores(), twins):
        core.twin = twin
    return copied
