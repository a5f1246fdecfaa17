"""Mapping a softmax-trained model onto the hardware as the published method does: per-head
scalers in front of and behind each layer's twin, calibrated on statistics (forward passes only)
before any training with the hardware in the loop."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from gcsim.accuracy.model import HardwareCore, TinyTransformer
from gcsim.accuracy.tasks import Batch
from gcsim.accuracy.train import as_tensors

# Input targets: the mean sits mid-range and +-3 standard deviations span the range, so a
# normal input is clipped 0.3 % of the time (the published calibration matched statistics of a
# reference model's scaled inputs; a softmax model has none, so the range sets them).
SPAN_SIGMAS = 3.0
# Largest factor one calibration pass moves a gain by.
MAX_STEP = 10.0


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


def _stored_map(source, target):
    """(gain, offset) taking a stored voltage about one operating point's mid-rail to the same
    fraction of another's stored range, v' = gain * v + offset."""
    gain = ((target.stored_max_V - target.stored_min_V)
            / (source.stored_max_V - source.stored_min_V))
    return gain, target.mid_rail_V - gain * source.mid_rail_V


def _targets_from(core: HardwareCore, reference: HardwareCore, recorded: dict) -> dict:
    """(mean, std) per head of a hardware reference's scaled q, k, v, with k and v carried to
    this core's operating point."""
    gain, offset = _stored_map(reference.twin.operating_point, core.twin.operating_point)
    targets = {}
    for name in ("q", "k", "v"):
        mean, std = _per_head(recorded[name])
        targets[name] = (mean, std) if name == "q" else (gain * mean + offset, gain * std)
    return targets


@torch.no_grad()
def calibrate(model: TinyTransformer, reference: TinyTransformer, batch: Batch,
              max_iterations: int = 30, tolerance: float = 0.01, relax_steps: int = 10,
              relax_min: float = 0.1, progress=None) -> Calibration:
    """The published calibration: repeat a forward pass on one batch and move every scaler's
    (a, b) so that its per-head output mean and std reach their targets, relaxed by a factor
    that falls from 1 to `relax_min` over `relax_steps` passes, until every error is below
    `tolerance` (relative to the target std). Only the scalers change.

    The targets come from `reference`, run on the same batch: its attention output for the
    output scaler; for q, k and v, a hardware reference's own scaled inputs (the published
    chain: a model adapted to one mode calibrated onto another; its scalers are the first
    guess), or, from a softmax reference, the input ranges (`input_targets`)."""
    tokens, _ = as_tensors(batch)
    references = _record(reference, tokens, cores=False)
    outputs = [_per_head(r["out"]) for r in references]
    cores = model.cores()
    if not all(isinstance(core, HardwareCore) for core in cores):
        raise ValueError("calibration needs hardware cores in every layer")
    reference_cores = reference.cores()
    if all(isinstance(core, HardwareCore) for core in reference_cores):
        inputs = [_targets_from(core, ref, recorded) for core, ref, recorded in
                  zip(cores, reference_cores, _record(reference, tokens, cores=True))]
        for core, ref in zip(cores, reference_cores):
            gain, offset = _stored_map(ref.twin.operating_point, core.twin.operating_point)
            for name, scaler in core.scalers.items():
                a, b = ref.scalers[name].a, ref.scalers[name].b
                if name in ("k", "v"):
                    a, b = gain * a, gain * b + offset
                scaler.set(a, b)
    else:
        inputs = []
        for core, recorded in zip(cores, references):
            targets = {}
            for name, (target_mean, target_std) in input_targets(core).items():
                mean, std = _per_head(recorded[name])
                targets[name] = (torch.full_like(mean, target_mean),
                                 torch.full_like(std, target_std))
                # A first guess from the reference's own q, k, v statistics, so that the
                # passes only have to correct for the hardware upstream.
                a = target_std / std.clamp(min=1e-12)
                core.scalers[name].set(a, target_mean - a * mean)
            inputs.append(targets)
    largest = float("inf")
    for iteration in range(max_iterations):
        alpha = max(relax_min, 1.0 - (1.0 - relax_min) * iteration / max(1, relax_steps - 1))
        largest = 0.0
        for core, recorded, layer_inputs, output in zip(cores, _record(model, tokens, True),
                                                        inputs, outputs):
            for name, (target_mean, target_std) in {**layer_inputs, "out": output}.items():
                scaler = core.scalers[name]
                mean, std = _per_head(recorded[name])
                scale = target_std.clamp(min=1e-12)
                largest = max(largest, float(((std - target_std).abs() / scale).max()),
                              float(((mean - target_mean).abs() / scale).max()))
                # Mean and std after a x + b move linearly with (a, b). A silent head (a
                # layer whose HardSigmoid never fires gives a constant output) keeps its gain,
                # and no pass moves a gain by more than MAX_STEP: a silent batch must not
                # blow the scale up for every other input.
                alive = std > 1e-6 * target_std
                ratio = (target_std / std.clamp(min=1e-30)).clamp(1 / MAX_STEP, MAX_STEP)
                new_a = torch.where(alive, scaler.a * ratio, scaler.a)
                unscaled_mean = (mean - scaler.b) / scaler.a
                new_b = target_mean - new_a * unscaled_mean
                scaler.set(alpha * new_a + (1 - alpha) * scaler.a,
                           alpha * new_b + (1 - alpha) * scaler.b)
        if progress is not None:
            progress.update(1)
        if largest < tolerance:
            return Calibration(iteration + 1, True, largest)
    return Calibration(max_iterations, False, largest)


def scaler_parameters(model: TinyTransformer) -> list[torch.nn.Parameter]:
    return [p for core in model.cores() if isinstance(core, HardwareCore)
            for scaler in core.scalers.values() for p in scaler.parameters()]


def hardware_copy(model: TinyTransformer, twins) -> TinyTransformer:
    """A copy of the softmax model with each layer's attention on a twin (one per layer)."""
    copied = copy.deepcopy(model)
    heads = model.config.heads
    copied.set_cores(HardwareCore(twin, heads) for twin in twins)
    return copied


def swap_twins(model: TinyTransformer, twins) -> TinyTransformer:
    """A copy of the model (same weights and scalers) with each layer's twin replaced: the
    non-idealities switched without touching what was learned."""
    copied = copy.deepcopy(model)
    for core, twin in zip(copied.cores(), twins):
        core.twin = twin
    return copied
