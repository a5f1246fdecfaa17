"""`gcsim accuracy`'s run: train a small model with softmax attention, then map it onto each
hardware mode, switch the non-idealities one at a time, adapt it, and measure task accuracy."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gcsim.accuracy.adapt import calibrate, hardware_copy, scaler_parameters, swap_twins
from gcsim.accuracy.model import ModelConfig, TinyTransformer
from gcsim.accuracy.report import export_costs
from gcsim.accuracy.tasks import make_task
from gcsim.accuracy.train import TrainConfig, evaluate, train

# Non-idealities, each switched on alone and all together ("none": every one off). What stays
# on in every row is the mode itself: the cell law, HardSigmoid, converters, readout.
NONIDEALITIES = {
    "none": dict(quantize=False, decay=False, mismatch=False),
    "quantize": dict(quantize=True, decay=False, mismatch=False),
    "decay": dict(quantize=False, decay=True, mismatch=False),
    "mismatch": dict(quantize=False, decay=False, mismatch=True),
    "all": dict(quantize=True, decay=True, mismatch=True),
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Adaptation measures its validation loss every this many steps (and keeps the best state).
VALIDATE_EVERY = 10
# Softmax training stops once its validation accuracy reaches this, checked every
# TRAIN_VALIDATE_EVERY steps.
STOP_AT = 0.99
TRAIN_VALIDATE_EVERY = 50
TRAIN_VALIDATION_SEQUENCES = 64


# Modes a fits bundle is evaluated in: `fitted`, the bundle's own model; `exported`, its
# published form (gcsim.hw.export.published_form: the numbers `gcsim export paper-model`
# gives, run by the published model's signal chain), so that fitted minus exported is what
# the published code cannot express.
BUNDLE_MODES = ("fitted", "exported")


@dataclass(frozen=True)
class ModeSpec:
    """One hardware to evaluate: a simulator mode, with its fits bundle when fitted or
    exported."""

    mode: str
    fits: Path | None = None

    def __post_init__(self):
        if (self.mode in BUNDLE_MODES) != (self.fits is not None):
            raise ValueError(f"mode {self.mode!r} " + ("needs a fits bundle"
                             if self.mode in BUNDLE_MODES else "takes no fits bundle"))

    @property
    def label(self) -> str:
        return f"{self.mode}:{self.fits.name}" if self.fits is not None else self.mode

    def models_mismatch(self) -> bool:
        """Whether this mode has per-cell mismatch to switch (fitted bundles with the fit; the
        published form has none)."""
        return self.mode == "fitted" and (self.fits / "mismatch.json").is_file()

    def applicable(self, nonideality: str) -> bool:
        if self.mode == "ideal":
            return nonideality == "none"   # softmax: nothing to switch
        if nonideality == "mismatch":
            return self.models_mismatch()
        return True


@dataclass(frozen=True)
class AccuracySettings:
    task: str = "mqar"
    task_options: dict = field(default_factory=dict)
    layers: int = 2
    heads: int = 1
    steps: int = 1000          # the budget: training stops at STOP_AT validation accuracy
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    modes: tuple[ModeSpec, ...] = ()
    nonidealities: tuple[str, ...] = tuple(NONIDEALITIES)
    token_period_s: float | None = None    # None: each model's own (the design's)
    mismatch_seed: int = 0
    window: int | None = None               # None: the sequence length
    array: int = 64
    eval_sequences: int = 256
    eval_batch: int = 64
    calibration_sequences: int = 32
    scaler_steps: int = 20
    weight_steps: int = 60
    adapt_batch: int = 16
    scaler_lr: float = 0.03    # Adam on log gain and offset: about 3 % a step
    weight_lr: float = 3e-3
    adapt: bool = True
    dtype: str = "float32"
    check_sequences: int = 2
    extrapolate: bool = False   # fitted decay beyond the ages its fit covers (and say so)
    quick: bool = False

    def check(self) -> AccuracySettings:
        for name in ("layers", "heads", "steps", "batch", "array", "eval_sequences",
                     "eval_batch", "calibration_sequences", "adapt_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be an integer >= 1, got {value}")
        for name in ("scaler_steps", "weight_steps", "check_sequences"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', ' ')} must be >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.token_period_s is not None and not (
                math.isfinite(self.token_period_s) and self.token_period_s > 0):
            raise ValueError(f"token period must be > 0 s, got {self.token_period_s}")
        unknown = [n for n in self.nonidealities if n not in NONIDEALITIES]
        if unknown:
            raise ValueError(f"unknown non-ideality {unknown[0]!r}; choose from "
                             f"{', '.join(NONIDEALITIES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        for name in ("seed", "mismatch_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name.replace('_', ' ')} must be an integer >= 0, got {value}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        return self


def quick_settings(settings: AccuracySettings) -> AccuracySettings:
    """The tiny run `make test` uses: about a minute on two cores."""
    options = {"vocab": 64, "pairs": 8, "seq_len": 64} if settings.task == "mqar" else {
        "vocab": 16, "seq_len": 32}
    return replace(settings, task_options={**options, **settings.task_options}, steps=300,
                   eval_sequences=64, calibration_sequences=16, scaler_steps=10,
                   weight_steps=20, check_sequences=1, quick=True)


def _seed(*parts: int) -> int:
    """A seed derived from `parts` (independent streams for data, init, evaluation, chips)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class _Stage:
    """Wall time per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def make_twins(spec: ModeSpec, settings: AccuracySettings, window: int, nonideality: str,
               chip_seed: int, dtype: torch.dtype | None = None):
    """One GainCellAttention per layer (each layer has arrays of its own: its own mismatch
    draw) with the non-ideality's switches."""
    from gcsim.nn import GainCellAttention

    switches = NONIDEALITIES[nonideality]
    dtype = dtype or DTYPES[settings.dtype]
    twins = []
    for layer in range(settings.layers):
        options = dict(window=window, array=settings.array, quantize=switches["quantize"],
                       decay=switches["decay"], dtype=dtype,
                       token_period=settings.token_period_s if switches["decay"] else None)
        if switches["mismatch"] and spec.models_mismatch():
            options["mismatch_seed"] = _seed(chip_seed, layer)
        if spec.mode == "fitted" and settings.extrapolate:
            options["extrapolate"] = True
        if spec.mode == "exported":
            twin = GainCellAttention("paper", model=exported_model(spec.fits,
                                                                   settings.token_period_s),
                                     **options)
        elif spec.fits is not None:
            twin = GainCellAttention.from_fits(spec.fits, mode=spec.mode, **options)
        else:
            twin = GainCellAttention(spec.mode, **options)
        twins.append(twin)
    return twins


@functools.lru_cache(maxsize=8)
def exported_model(fits: Path, token_period_s: float | None):
    """The published form of a fits bundle's model (gcsim.hw.export.published_form) at a token
    period (None: the design's): the HardwareModel the `exported` mode runs in paper mode."""
    from gcsim.hw import load_fitted_models
    from gcsim.hw.export import published_form

    return published_form(load_fitted_models(fits), token_period_s=token_period_s,
                          source=str(fits)).model


def _mismatch_of(nonideality: str, spec: ModeSpec) -> bool:
    return NONIDEALITIES[nonideality]["mismatch"] and spec.models_mismatch()


def twin_check(model: TinyTransformer, batch_tokens: torch.Tensor) -> dict:
    """The twin against the NumPy simulator on the model's own hardware inputs: every layer's
    scaled q, k, v as recorded in a forward pass, run through a float64 copy of that layer's
    twin and through gcsim.simulate.simulate_attention with the same model and config."""
    from gcsim.nn import GainCellAttention
    from gcsim.simulate import simulate_attention

    cores = model.cores()
    for core in cores:
        core.record = True
    try:
        with torch.no_grad():
            model.eval()
            model(batch_tokens)
    finally:
        for core in cores:
            core.record = False
    layers = []
    for index, core in enumerate(cores):
        twin = core.twin
        exact = GainCellAttention(twin.mode, window=twin.config.window,
                                  array=twin.config.array_size, dtype=torch.float64,
                                  model=twin.model, **_config_options(twin))
        q, k, v = (core.recorded[n].to(torch.float64) for n in "qkv")
        with torch.no_grad():
            ours = exact(q, k, v).numpy()
        config = replace(exact.config, keep_intermediates=False)
        theirs = simulate_attention(q.numpy(), k.numpy(), v.numpy(), twin.mode,
                                    model=twin.model, config=config).output
        difference = np.abs(ours - theirs)
        layers.append({"layer": index, "values": int(difference.size),
                       "max_abs_difference": float(difference.max()),
                       "output_range": [float(theirs.min()), float(theirs.max())]})
    largest = max(layer["max_abs_difference"] for layer in layers)
    return {"layers": layers, "max_abs_difference": largest, "tolerance": 1e-9,
            "equal": bool(largest <= 1e-9)}


def _config_options(twin) -> dict:
    c = twin.config
    return dict(quantize_inputs=c.quantize_inputs, quantize_output=c.quantize_output,
                decay=c.decay, token_period=c.token_period_s, mismatch_seed=c.mismatch_seed,
                clip_inputs=c.clip_inputs, decay_factor=c.decay_factor,
                query_levels=c.query_levels, stored_levels=c.stored_levels,
                readout_loading=c.readout_loading, write_error=c.write_error,
                read_disturb=c.read_disturb, temperature_C=c.temperature_C,
                extrapolate=c.extrapolate)


def run(settings: AccuracySettings, progress: bool | None = None, threads: int | None = None,
        log=None) -> dict:
    """The whole study; returns the JSON-ready report (see docs/guide/accuracy.md). `threads`
    sets PyTorch's for the run (and is put back after)."""
    settings.check()
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(settings, progress, log)
    finally:
        torch.set_num_threads(saved_threads)


def _run(settings: AccuracySettings, progress: bool | None, log) -> dict:
    from tqdm import tqdm

    say = log or (lambda message: None)
    task = make_task(settings.task, **settings.task_options)
    window = settings.window or task.seq_len
    stage = _Stage()
    disable = None if progress is None else not progress

    def bar(total, desc):
        return tqdm(total=total, desc=desc, disable=disable, leave=False, unit="step")

    seeds = {"data": _seed(settings.seed, 1), "init": _seed(settings.seed, 2),
             "evaluation": _seed(settings.seed, 3), "calibration": _seed(settings.seed, 4),
             "adaptation_data": _seed(settings.seed, 5),
             "adaptation_validation": _seed(settings.seed, 6),
             "training_validation": _seed(settings.seed, 7),
             "mismatch_evaluation": settings.mismatch_seed,
             "mismatch_adaptation": settings.mismatch_seed + 1}
    eval_set = task.generate(settings.eval_sequences, np.random.default_rng(seeds["evaluation"]))
    calibration_set = task.generate(settings.calibration_sequences,
                                    np.random.default_rng(seeds["calibration"]))
    # Adaptation keeps its best state by the loss on sequences of its own (not the held-out
    # set the accuracies are measured on).
    validation_set = task.generate(settings.calibration_sequences,
                                   np.random.default_rng(seeds["adaptation_validation"]))

    # Every twin is built once before training, so that a setting the hardware refuses (a
    # window older than the decay fit covers, say) stops the run before it has cost anything.
    warnings = {}
    checked = list(settings.modes)
    # An exported bundle's adapted model is also run on its fitted cells.
    checked += [ModeSpec("fitted", s.fits) for s in settings.modes if s.mode == "exported"
                and ModeSpec("fitted", s.fits) not in settings.modes]
    for spec in checked:
        twin = make_twins(spec, settings, window, "none" if spec.mode == "ideal" else "all",
                          0)[0]
        if twin.warnings:
            warnings[spec.label] = list(twin.warnings)
    for label, lines in warnings.items():
        for line in lines:
            say(f"warning: {label}: {line}")

    # 1. Softmax training.
    torch.manual_seed(seeds["init"])
    config = ModelConfig(vocab=task.vocab, seq_len=task.seq_len, layers=settings.layers,
                         heads=settings.heads, window=window)
    model = TinyTransformer(config)
    train_config = TrainConfig(steps=settings.steps, batch=settings.batch, lr=settings.lr,
                               warmup=max(1, settings.steps // 10), seed=seeds["data"])
    training_validation = task.generate(TRAIN_VALIDATION_SEQUENCES,
                                        np.random.default_rng(seeds["training_validation"]))
    with stage("training"), bar(settings.steps, "softmax training") as progress_bar:
        log_train = train(model, task, train_config, validation=training_validation,
                          validate_every=TRAIN_VALIDATE_EVERY, stop_at=STOP_AT,
                          progress=progress_bar)
    with stage("evaluation"):
        softmax_accuracy, softmax_loss = evaluate(model, eval_set, settings.eval_batch)
    say(f"trained {model.parameter_count()} parameters in {log_train.seconds:.1f} s: softmax "
        f"accuracy {softmax_accuracy:.3f} (chance {task.chance:.3f})")

    results, adaptations, checks, transfers = [], [], [], []
    # The published chain: the model adapted on linear cells (the intermediate model), carried
    # onto each other mode by the statistics calibration alone.
    intermediate = None
    nonidealities = [n for n in NONIDEALITIES if n in settings.nonidealities]
    for spec in settings.modes:
        row_names = [n for n in nonidealities if spec.applicable(n)]
        if not row_names:
            continue
        start = time.perf_counter()

        def each_row(mapped_model, what: str, spec=spec, row_names=row_names) -> dict:
            """{row: (accuracy, loss)} of `mapped_model` with each row's twins swapped in."""
            scores = {}
            with stage("evaluation"), bar(len(row_names) * settings.eval_sequences,
                                          f"{spec.label} {what}") as progress_bar:
                for name in row_names:
                    variant = swap_twins(mapped_model, make_twins(
                        spec, settings, window, name, seeds["mismatch_evaluation"]))
                    scores[name] = evaluate(variant, eval_set, settings.eval_batch,
                                            progress_bar)
            return scores

        # 2. Map: a hardware copy under every non-ideality, scalers calibrated on statistics.
        full = "none" if spec.mode == "ideal" else "all"
        with stage("calibration"):
            mapped = hardware_copy(model, make_twins(spec, settings, window, full,
                                                     seeds["mismatch_evaluation"]))
            calibration = calibrate(mapped, model, calibration_set)
        before = each_row(mapped, "before")
        if settings.check_sequences:
            with stage("twin check"):
                tokens = torch.as_tensor(eval_set.tokens[:settings.check_sequences])
                checks.append({"mode": spec.mode, "fits": _fits(spec), "nonideality": full,
                               **twin_check(mapped, tokens)})
        after, adaptation = {}, None
        if settings.adapt:
            # 3. Adapt on a different chip (mismatch draw) than the one evaluated.
            with stage("adaptation"):
                adapted = swap_twins(mapped, make_twins(spec, settings, window, full,
                                                        seeds["mismatch_adaptation"]))
                scaler_config = TrainConfig(steps=settings.scaler_steps,
                                            batch=settings.adapt_batch,
                                            lr=settings.scaler_lr, warmup=1,
                                            weight_decay=0.0, seed=seeds["adaptation_data"])
                weight_config = TrainConfig(steps=settings.weight_steps,
                                            batch=settings.adapt_batch,
                                            lr=settings.weight_lr,
                                            warmup=max(1, settings.weight_steps // 10),
                                            seed=seeds["adaptation_data"] + 1)
                with bar(settings.scaler_steps, f"{spec.label} adapting scalers") as progress_bar:
                    scaler_log = train(adapted, task, scaler_config,
                                       parameters=scaler_parameters(adapted),
                                       validation=validation_set,
                                       validate_every=VALIDATE_EVERY, progress=progress_bar)
            with stage("evaluation"):
                on_chip = swap_twins(adapted, make_twins(spec, settings, window, full,
                                                         seeds["mismatch_evaluation"]))
                scalers_only = evaluate(on_chip, eval_set, settings.eval_batch)
            with stage("adaptation"):
                with bar(settings.weight_steps, f"{spec.label} adapting weights") as progress_bar:
                    weight_log = train(adapted, task, weight_config, validation=validation_set,
                                       validate_every=VALIDATE_EVERY, progress=progress_bar)
            after = each_row(adapted, "after")
            adaptation = {"mode": spec.mode, "fits": _fits(spec), "label": spec.label,
                          "nonideality": full,
                          "calibration": asdict(calibration),
                          "calibrated_accuracy": before[full][0] if full in before else None,
                          "scalers_trained_accuracy": scalers_only[0],
                          "adapted_accuracy": after[full][0] if full in after else None,
                          "scaler_steps": scaler_log.steps, "weight_steps": weight_log.steps,
                          "kept_steps": [scaler_log.best_step, weight_log.best_step],
                          "validation_loss": [
                              [[step, round(loss, 4)] for step, _, loss in log.checkpoints]
                              for log in (scaler_log, weight_log)],
                          "loss": [_first(scaler_log.losses), _last(scaler_log.losses),
                                   _last(weight_log.losses)],
                          "seconds": scaler_log.seconds + weight_log.seconds}
            adaptations.append(adaptation)
        deployed, recalibrated = {}, {}
        if spec.mode == "exported" and settings.adapt:
            # What a user of the published code gets: the model adapted on the export, run on
            # the cells the bundle was fitted from (their fitted model; under `all`, with the
            # evaluated chip's mismatch too), as adapted and carried there by the statistics
            # calibration (the published chain's step onto the nonlinear hardware).
            on_cells = ModeSpec("fitted", spec.fits)
            with stage("calibration"):
                carried = swap_twins(adapted, make_twins(on_cells, settings, window, full,
                                                         seeds["mismatch_evaluation"]))
                deployed_calibration = calibrate(carried, adapted, calibration_set)
            with stage("evaluation"), bar(2 * len(row_names) * settings.eval_sequences,
                                          f"{spec.label} on fitted cells") as progress_bar:
                for name in row_names:
                    cells = make_twins(on_cells, settings, window, name,
                                       seeds["mismatch_evaluation"])
                    deployed[name] = evaluate(swap_twins(adapted, cells), eval_set,
                                              settings.eval_batch, progress_bar)
                    recalibrated[name] = evaluate(swap_twins(carried, cells), eval_set,
                                                  settings.eval_batch, progress_bar)
            adaptation["on_fitted_calibration"] = asdict(deployed_calibration)
        transferred = {}
        if intermediate is not None and spec.mode not in ("ideal", "linear"):
            with stage("calibration"):
                carried = swap_twins(intermediate, make_twins(spec, settings, window, full,
                                                              seeds["mismatch_evaluation"]))
                carried_calibration = calibrate(carried, intermediate, calibration_set)
            transferred = each_row(carried, "from linear")
            transfers.append({"mode": spec.mode, "fits": _fits(spec), "label": spec.label,
                              "calibration": asdict(carried_calibration)})
        if spec.mode == "linear" and settings.adapt:
            intermediate = adapted
        twin = make_twins(spec, settings, window, full, 0)[0]
        for name in row_names:
            switches = NONIDEALITIES[name]
            results.append({
                "mode": spec.mode, "fits": _fits(spec), "label": spec.label,
                "nonideality": name, "quantize": switches["quantize"] and spec.mode != "ideal",
                "decay": switches["decay"] and spec.mode != "ideal",
                "mismatch": _mismatch_of(name, spec),
                "decay_factor_per_token": twin.decay_factor if switches["decay"] else 0.0,
                "accuracy": before[name][0], "loss": round(before[name][1], 4),
                "adapted_accuracy": after[name][0] if name in after else None,
                "adapted_loss": round(after[name][1], 4) if name in after else None,
                "from_linear_accuracy": transferred[name][0] if name in transferred else None,
                "from_linear_loss": (round(transferred[name][1], 4) if name in transferred
                                     else None),
                "on_fitted_accuracy": deployed[name][0] if name in deployed else None,
                "on_fitted_loss": round(deployed[name][1], 4) if name in deployed else None,
                "on_fitted_calibrated_accuracy": (recalibrated[name][0] if name in recalibrated
                                                  else None),
                "on_fitted_calibrated_loss": (round(recalibrated[name][1], 4)
                                              if name in recalibrated else None)})
        say(f"{spec.label}: " + ", ".join(
            f"{n} {before[n][0]:.3f}" + (f" -> {after[n][0]:.3f}" if n in after else "")
            for n in row_names) + (", on the fitted cells " + ", ".join(
                f"{n} {deployed[n][0]:.3f} (calibrated {recalibrated[n][0]:.3f})"
                for n in row_names) if deployed else "")
            + (", from linear " + ", ".join(
                f"{n} {transferred[n][0]:.3f}" for n in row_names) if transferred else "")
            + f" ({time.perf_counter() - start:.0f} s)")

    timings = {name: round(value, 2) for name, value in stage.seconds.items()}
    timings["total"] = round(sum(stage.seconds.values()), 2)
    return {
        "task": task.describe(),
        "model": {**config.describe(), "parameters": model.parameter_count(),
                  "attention_for_training": "softmax"},
        "settings": {"steps": settings.steps, "batch": settings.batch, "lr": settings.lr,
                     "eval_sequences": settings.eval_sequences, "window": window,
                     "array": settings.array, "token_period_s": settings.token_period_s,
                     "dtype": settings.dtype, "scaler_steps": settings.scaler_steps,
                     "weight_steps": settings.weight_steps, "adapt_batch": settings.adapt_batch,
                     "scaler_lr": settings.scaler_lr, "weight_lr": settings.weight_lr,
                     "adapt": settings.adapt, "quick": settings.quick,
                     "extrapolate": settings.extrapolate,
                     "threads": torch.get_num_threads()},
        "seeds": {"seed": settings.seed, **seeds},
        "chance": task.chance,
        "training": {"seconds": round(log_train.seconds, 2), "steps": log_train.steps,
                     "step_budget": settings.steps, "stop_at_validation_accuracy": STOP_AT,
                     "kept_step": log_train.best_step,
                     "final_loss": _last(log_train.losses), "accuracy": softmax_accuracy},
        "reference": {"mode": "softmax", "accuracy": softmax_accuracy,
                      "loss": round(softmax_loss, 4)},
        "results": results,
        "adaptation": adaptations,
        "from_linear": transfers,
        "twin_check": checks,
        "export_cost": export_costs(results),
        "timings_s": timings,
        "warnings": warnings,
    }


def _fits(spec: ModeSpec) -> str | None:
    return str(spec.fits) if spec.fits is not None else None


def _first(values):
    return round(values[0], 4) if values else None


def _last(values):
    return round(values[-1], 4) if values else None
