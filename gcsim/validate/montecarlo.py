"""Monte Carlo validation of the mismatch model: N mismatched SPICE tiles against N seeded model
draws on the same inputs, compared stage by stage as distributions of deviations from nominal.

The statistics (`compare_deviations`):

* A stage's deviations are `value(sample) - value(nominal)` per column, in % of the stage's full
  scale (as `gcsim validate tile` defines the stages), pooled over columns and samples; SPICE's
  from its nominal tile, the model's from its nominal run. Only the spread is compared: the
  nominal model's own error is what `gcsim validate tile` scores.
* sigma ratio = std(model deviations) / std(SPICE deviations), within a stated band
  (default 0.67 ... 1.5: the model's spread right within a factor of 1.5 either way).
* two-sample Kolmogorov-Smirnov statistic D of the pooled deviations, with its p-value from
  permutations of whole samples between the two sides.

Within one sample the columns are not independent: every V column integrates the same K-side
pulses, so a mismatched converter moves all of A and out together. The sample (one tile, one
draw) is therefore the unit of every resampling: the permutation test exchanges whole samples
(exact under "SPICE's and the model's samples come from one distribution", whatever the
correlation inside a sample), and the sigma ratio's interval is a bootstrap over samples.
ks_2samp's own p-value, which assumes every pooled value independent, is reported beside it
for comparison and is not used.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gcsim.core.atomic import check_targets, replacing_all
from gcsim.core.errors import GcsimError
from gcsim.hw import HardwareModel
from gcsim.spice import devices
from gcsim.spice import process as processes
from gcsim.validate.behaviour import run_model
from gcsim.validate.compare import STAGES
from gcsim.validate.scenarios import NO_PULSE_S, check_inputs
from gcsim.validate.spice import SpiceStages, run_tile
from gcsim.validate.tile import Tile, build
from gcsim.validate.timing import TileParams

# The model's spread counts as right within a factor of 1.5 either way: with 20 samples of a
# 16-column tile the ratio's own 95 % interval is about +-20 %, so a tighter band would fail
# correct models by chance, and a wider one would pass a sigma off by a factor of two.
DEFAULT_SIGMA_RATIO = (0.67, 1.5)
DEFAULT_ALPHA = 0.01            # KS permutation p-value below this: the shapes differ
PERMUTATIONS = 2000             # resolves p down to 1 / 2001
BOOTSTRAPS = 2000
CONFIDENCE = 0.95               # of the sigma ratio's bootstrap interval
RESAMPLING_SEED = 20260517      # permutations and bootstraps: reproducible reports
REPORT_FILES = ("report.json", "montecarlo.png", "deviations.npz")


class MonteCarloError(GcsimError):
    """A Monte Carlo validation that cannot run as asked."""


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    gap = (np.searchsorted(a, grid, side="right") / a.size
           - np.searchsorted(b, grid, side="right") / b.size)
    return float(np.max(np.abs(gap)))


def _sigma(samples: np.ndarray) -> float:
    pooled = samples.ravel()
    return float(np.std(pooled, ddof=1)) if pooled.size > 1 else 0.0


def _ratio(model_sigma: float, spice_sigma: float) -> float | None:
    """model / SPICE sigma; 1 when neither spreads; None (infinite) when only the model does."""
    if spice_sigma > 0:
        return model_sigma / spice_sigma
    return 1.0 if model_sigma == 0 else None


def compare_deviations(spice: np.ndarray, model: np.ndarray,
                       sigma_ratio: tuple[float, float] = DEFAULT_SIGMA_RATIO,
                       alpha: float = DEFAULT_ALPHA, permutations: int = PERMUTATIONS,
                       bootstraps: int = BOOTSTRAPS, seed: int = RESAMPLING_SEED) -> dict:
    """Compare two sets of deviations, (samples, columns) each (% of full scale; the sample
    counts may differ, the columns match): sigma ratio with a bootstrap interval over samples,
    KS statistic with a permutation p-value over samples. Passes when the ratio is within
    `sigma_ratio` and the p-value is at least `alpha`."""
    spice, model = np.atleast_2d(np.asarray(spice, float)), np.atleast_2d(np.asarray(model, float))
    if spice.shape[1] != model.shape[1]:
        raise ValueError(f"deviations of {spice.shape[1]} and {model.shape[1]} columns")
    if spice.shape[0] < 2 or model.shape[0] < 2:
        raise ValueError("the comparison needs at least 2 samples a side")
    if not (np.all(np.isfinite(spice)) and np.all(np.isfinite(model))):
        raise ValueError("deviations contain NaN or infinite values")
    low, high = sigma_ratio
    rng = np.random.default_rng(seed)
    s_sigma, m_sigma = _sigma(spice), _sigma(model)
    ratio = _ratio(m_sigma, s_sigma)

    # The sample is the unit: resample whole rows on each side.
    n_s, n_m = spice.shape[0], model.shape[0]
    boot = []
    for _ in range(bootstraps):
        r = _ratio(_sigma(model[rng.integers(0, n_m, n_m)]),
                   _sigma(spice[rng.integers(0, n_s, n_s)]))
        boot.append(np.inf if r is None else r)
    tail = 100 * (1 - CONFIDENCE) / 2
    # "nearest": an infinite ratio (SPICE without spread in a resample) stays one.
    interval = [float(x) for x in np.percentile(boot, [tail, 100 - tail], method="nearest")]

    statistic = _ks_statistic(spice.ravel(), model.ravel())
    both = np.concatenate([spice, model])
    exceed = 0
    for _ in range(permutations):
        order = rng.permutation(n_s + n_m)
        exceed += _ks_statistic(both[order[:n_s]].ravel(), both[order[n_s:]].ravel()) \
            >= statistic - 1e-12
    p_value = (1 + exceed) / (1 + permutations)
    from scipy.stats import ks_2samp

    naive = float(ks_2samp(spice.ravel(), model.ravel()).pvalue)

    failed = []
    if ratio is None or not low <= ratio <= high:
        failed.append("sigma")
    if not p_value >= alpha:
        failed.append("ks")
    return {
        "samples_spice": n_s,
        "samples_model": n_m,
        "n_spice": int(spice.size),
        "n_model": int(model.size),
        "spice_sigma_pct_fs": s_sigma,
        "model_sigma_pct_fs": m_sigma,
        "spice_mean_pct_fs": float(spice.mean()),
        "model_mean_pct_fs": float(model.mean()),
        "sigma_ratio": ratio,
        "sigma_ratio_interval": [x if np.isfinite(x) else None for x in interval],
        "ks_statistic": statistic,
        "ks_p": p_value,
        "ks_p_independent": naive,
        "sigma_ratio_range": [low, high],
        "alpha": alpha,
        "failed_on": failed,
        "passed": not failed,
    }


@dataclass
class MonteCarlo:
    report: dict
    spice: dict[str, np.ndarray]     # stage -> (N, n) deviations, % FS
    model: dict[str, np.ndarray]
    nominal: dict[str, tuple[np.ndarray, np.ndarray]]   # stage -> (SPICE, model) nominal values


def _stage_values(spice: SpiceStages | None, behaviour, model: HardwareModel,
                  params: TileParams) -> dict[str, np.ndarray]:
    """S, phi, A and out of one run (one side). out stays unquantised: the counter's step
    (3.2 % FS) is larger than the mismatch spread, and would turn it into a few counts."""
    if spice is None:
        S, phi, A, out = behaviour.S_C, behaviour.phi_s, behaviour.A_C, behaviour.out
    else:
        # A converter that stayed off leaves a width of ngspice's noise (1e-14 s) of either
        # sign around zero where the model's is exactly zero: as in `validate tile`, no pulse.
        S, A = spice.S_C, spice.A_C
        phi = np.where(spice.phi_s > NO_PULSE_S, spice.phi_s, 0.0)
        out = spice.out if spice.out is not None else \
            model.output_converter.convert(A, quantize=False)
    return {"S": np.asarray(S, float), "phi": np.asarray(phi, float),
            "A": np.asarray(A, float), "out": np.clip(np.asarray(out, float), -1.0, 1.0)}


def full_scales(model: HardwareModel) -> dict[str, float]:
    """Each stage's full scale, as `gcsim validate tile` takes it."""
    return {"S": model.charge_to_pulse.saturation_charge_C,
            "phi": model.charge_to_pulse.t_max_s,
            "A": model.output_converter.full_scale_C, "out": 2.0}


def validate_montecarlo(q, k, v, model: HardwareModel, models: processes.ModelSet, *,
                        samples: int = 20, first_seed: int = 1, jobs: int = 2,
                        params: TileParams | None = None,
                        sigma_ratio: tuple[float, float] = DEFAULT_SIGMA_RATIO,
                        alpha: float = DEFAULT_ALPHA, extra: dict | None = None,
                        progress=None) -> MonteCarlo:
    """One nominal SPICE tile and `samples` mismatched ones (mc seeds first_seed, ...), and
    the model nominal and with the same number of drawn mismatches (mismatch seeds the same
    numbers: independent streams of their own), all on inputs q, k, v; the stages' deviations
    from nominal compared with `compare_deviations`. `progress(message)` hears of each run."""
    started = time.perf_counter()
    params = params or TileParams.defaults()
    if samples < 2:
        raise MonteCarloError(f"--samples {samples}: the comparison needs at least 2")
    if model.mismatch is None:
        raise MonteCarloError(f"fits bundle {model.label}: no mismatch fit, nothing to compare")
    if models.mismatch == "none":
        raise MonteCarloError(f"models {models.name}: no mismatch to draw in SPICE (neither "
                              "Pelgrom coefficients nor mismatch models of its own)")
    low, high = params.stored_range
    q, k, v = check_inputs(q, k, v, high, low=low)
    tile = Tile(q, k, v)
    devices.check_sizes(build(Tile(q[:1], k[:2, :1], v[:2, :1]), params, models).text, models)
    say = progress or (lambda message: None)
    seeds = list(range(first_seed, first_seed + samples))
    scales = full_scales(model)

    spice_runs, spice_s, spice_cpu = [], 0.0, 0.0
    for seed in [None] + seeds:
        run = run_tile(tile, replace(params, mc_seed=seed), models, jobs=jobs)
        spice_s += run.elapsed_s
        spice_cpu += run.cpu_s
        spice_runs.append(_stage_values(run, None, model, params))
        say(f"SPICE tile {'nominal' if seed is None else f'mc seed {seed}'}: "
            f"{run.elapsed_s:.1f} s")
    # Written as the tile writes its cells (through the write devices unless params say ideal).
    write_error = params.write != "ideal"
    model_runs = [_stage_values(None, run_model(q, k, v, model, mismatch_seed=seed,
                                                write_error=write_error), model, params)
                  for seed in [None] + seeds]

    deviations: dict[str, dict[str, np.ndarray]] = {"spice": {}, "model": {}}
    stages = {}
    for name in STAGES:
        for side, runs in (("spice", spice_runs), ("model", model_runs)):
            deviations[side][name] = 100.0 * np.array(
                [r[name] - runs[0][name] for r in runs[1:]]) / scales[name]
        stages[name] = {"full_scale": scales[name],
                        **compare_deviations(deviations["spice"][name],
                                             deviations["model"][name], sigma_ratio, alpha)}
    mismatch = model.mismatch
    report = {
        "scenario": "montecarlo",
        "rows": int(k.shape[1]),
        "cols": int(k.shape[0]),
        "models": models.name,
        "fits": model.label,
        "samples": samples,
        "mc_seeds": [seeds[0], seeds[-1]],
        "spice_mismatch": {"pelgrom": "Pelgrom threshold shifts of the cell transistors "
                                      "(read NMOS, read PMOS, write); periphery nominal",
                           "pdk": "the PDK's own mismatch models on every device, the "
                                  "periphery's (integrators, converters) too"}[models.mismatch],
        "model_mismatch": {"gain_sigma": mismatch.gain_sigma,
                           "vt_sigma_V": mismatch.vt_sigma_V,
                           "correlation": mismatch.correlation},
        "test": {
            "deviation": "value(sample) - value(nominal) per column, % of the stage's full "
                         "scale, pooled over columns and samples; out unquantised",
            "sigma_ratio": "std(model) / std(SPICE), pass within sigma_ratio_range; "
                           f"{100 * CONFIDENCE:g} % bootstrap interval over samples",
            "ks": "two-sample KS statistic of the pooled deviations; p from "
                  f"{PERMUTATIONS} permutations of whole samples, pass when p >= alpha",
            "sigma_ratio_range": list(sigma_ratio),
            "alpha": alpha,
        },
        "spice": {"tiles": samples + 1, "jobs": jobs, "elapsed_s": round(spice_s, 3),
                  "cpu_s": round(spice_cpu, 3)},
        "elapsed_s": round(time.perf_counter() - started, 3),
        "stages": stages,
        "passed": all(s["passed"] for s in stages.values()),
        **(extra or {}),
    }
    nominal = {name: (spice_runs[0][name], model_runs[0][name]) for name in STAGES}
    return MonteCarlo(report, deviations["spice"], deviations["model"], nominal)


def format_table(report: dict) -> str:
    head = (f"validate montecarlo: {report['rows']}x{report['cols']} tile, models "
            f"{report['models']}, {report['fits']}, {report['samples']} samples a side "
            f"(mc seeds {report['mc_seeds'][0]}..{report['mc_seeds'][1]})\n"
            f"  SPICE: {report['spice']['tiles']} tiles, {report['spice']['elapsed_s']:.1f} s; "
            f"total {report['elapsed_s']:.1f} s")
    low, high = report["test"]["sigma_ratio_range"]
    lines = [head, f"{'stage':5s}  {'SPICE sigma':>11s}  {'model sigma':>11s}  {'ratio':>6s}  "
                   f"{'95% interval':>13s}  {'KS D':>5s}  {'KS p':>6s}  {'mean S/M':>13s}  "
                   "result"]
    for name, m in report["stages"].items():
        ratio = "inf" if m["sigma_ratio"] is None else f"{m['sigma_ratio']:.2f}"
        lo, hi = (("inf" if x is None else f"{x:.2f}") for x in m["sigma_ratio_interval"])
        result = "pass" if m["passed"] else "FAIL " + ",".join(m["failed_on"])
        lines.append(f"{name:5s}  {m['spice_sigma_pct_fs']:10.3f}%  {m['model_sigma_pct_fs']:10.3f}%"
                     f"  {ratio:>6s}  {lo + '...' + hi:>13s}  {m['ks_statistic']:5.3f}  "
                     f"{m['ks_p']:6.4f}  {m['spice_mean_pct_fs']:+6.2f}/"
                     f"{m['model_mean_pct_fs']:+6.2f}  {result}")
    lines.append(f"sigma, mean: of the deviations from nominal, % of full scale; pass: ratio "
                 f"(model/SPICE) in {low:g}...{high:g} and KS p (whole-sample permutations) "
                 f">= {report['test']['alpha']:g}")
    return "\n".join(lines + ["PASSED" if report["passed"] else "FAILED"])


def report_files(directory: Path) -> list[Path]:
    return [Path(directory) / name for name in REPORT_FILES]


def check_report_files(directory: Path) -> list[Path]:
    """Refused in one line, before any ngspice run, when a report file exists and is not a
    regular file."""
    return check_targets(report_files(directory), "report file")


def write_report(result: MonteCarlo, directory: Path,
                 inputs: dict[str, np.ndarray]) -> list[Path]:
    """report.json, montecarlo.png (per stage: histograms of both sides' deviations, and
    their quantiles against each other) and deviations.npz (both sides' deviations, the
    nominal values and the inputs), together through core.atomic or none of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = check_report_files(directory)
    report = result.report
    fig, axes = plt.subplots(2, len(STAGES), figsize=(4.2 * len(STAGES), 8.0))
    try:
        for i, name in enumerate(STAGES):
            s, m = result.spice[name].ravel(), result.model[name].ravel()
            stats = report["stages"][name]
            top, bottom = axes[0, i], axes[1, i]
            lo, hi = float(min(s.min(), m.min())), float(max(s.max(), m.max()))
            bins = np.linspace(lo, hi, 25) if hi > lo else 10
            top.hist(s, bins=bins, alpha=0.55, density=True, label="SPICE")
            top.hist(m, bins=bins, alpha=0.55, density=True, label="model")
            ratio = "inf" if stats["sigma_ratio"] is None else f"{stats['sigma_ratio']:.2f}"
            top.set_title(f"{name}: sigma ratio {ratio}, KS p {stats['ks_p']:.3f} "
                          f"({'pass' if stats['passed'] else 'FAIL'})", fontsize=10)
            top.set_xlabel("deviation from nominal [% FS]")
            top.legend(fontsize=8)
            levels = np.linspace(0, 100, 101)
            qs, qm = np.percentile(s, levels), np.percentile(m, levels)
            edge = float(max(np.abs(qs).max(), np.abs(qm).max()) or 1.0) * 1.05
            bottom.plot([-edge, edge], [-edge, edge], color="0.6", lw=1)
            bottom.scatter(qs, qm, s=10)
            bottom.set_xlabel("SPICE quantile [% FS]")
            bottom.set_ylabel("model quantile [% FS]")
        fig.suptitle(f"gcsim validate montecarlo: {report['rows']}x{report['cols']} tile, models "
                     f"{report['models']}, {report['samples']} samples a side", fontsize=11)
        fig.tight_layout()
        arrays = {**inputs}
        for name in STAGES:
            arrays[f"spice_{name}_pct_fs"] = result.spice[name]
            arrays[f"model_{name}_pct_fs"] = result.model[name]
            arrays[f"spice_{name}_nominal"], arrays[f"model_{name}_nominal"] = \
                result.nominal[name]
        with replacing_all(*paths, what="report file") as temporaries:
            Path(temporaries[0]).write_text(json.dumps(report, indent=2) + "\n")
            fig.savefig(temporaries[1], dpi=110, format="png")
            with open(temporaries[2], "wb") as stream:   # no .npz appended to a stream
                np.savez(stream, **arrays)
    finally:
        plt.close(fig)
    return paths


__all__ = ["compare_deviations", "validate_montecarlo", "format_table", "write_report",
           "full_scales", "MonteCarlo", "MonteCarloError"]
