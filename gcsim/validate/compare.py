"""Stage-by-stage comparison of SPICE against the behavioural model, thresholds and reports.

Stages and their full scales (FS):

  S    K column charge the converter sees, C         FS = the converter's saturation charge
                                                          (fitted t_max / slope, about 1.2 pC)
  phi  HardSigmoid pulse width, s                    FS = fitted t_max (15 ns)
  A    V column charge, C                            FS = the signed converter's full scale
  out  signed converter output, in [-1, 1]           FS = 2 (the output range)

Each stage is compared end to end (the model runs from the inputs, so its errors accumulate
along the chain, as they would in use) and, as a diagnostic, in isolation: the model's stage fed
with SPICE's previous stage (`isolated_rmse_pct_fs`), which tells where an error comes from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gcsim.core.atomic import check_targets, replacing_all
from gcsim.hw.constants import PAPER

STAGES = ("S", "phi", "A", "out")
UNITS = {"S": ("pC", 1e12), "phi": ("ns", 1e9), "A": ("pC", 1e12), "out": ("", 1.0)}
DESCRIPTIONS = {
    "S": "K column charge into the readout",
    "phi": "charge-to-pulse width",
    "A": "V column charge",
    "out": "signed converter output",
}
# A stage passes when its RMSE, its largest error and its mean error (bias) are all within
# their limits, in % of the stage's full scale. The largest error may be a few RMSE (one
# column of 64 at the edge of the converter's range); a bias adds up over a model's layers,
# so its limit is tighter.
DEFAULT_THRESHOLD_PCT = 2.0
DEFAULT_MAX_ERROR_PCT = 8.0
DEFAULT_BIAS_PCT = 1.0
# out is a count on both sides (the counter's quantisation): one count of the architecture's
# 32-level counter is 2 / 31 of the range [-1, 1], 3.23 % of full scale. A model whose count
# is SPICE's or its neighbour's everywhere is as exact as a count allows, so out's RMSE and
# largest error are limited to one count by default.
ONE_COUNT_PCT = 100.0 * (2.0 / (PAPER.output_levels - 1)) / 2.0
STAGE_DEFAULTS = {"rmse": {"out": ONE_COUNT_PCT}, "max": {"out": ONE_COUNT_PCT * (1 + 1e-9)}}
# An entry matches trivially when both sides agree by construction: no pulse at all, or both
# saturated (phi at T_max, out at +-1). Such entries are counted apart and left out of the
# RMSE and the bias, which they would dilute.
TRIVIAL_FRACTION = 0.005


@dataclass
class StageData:
    name: str
    spice: np.ndarray
    model: np.ndarray
    full_scale: float
    index_name: str             # what an index means: "column" / "dim"
    isolated: np.ndarray | None = None   # model stage fed with SPICE's previous stage
    # The ends of the range the next stage resolves (None: unbounded that side): entries
    # where both sides are at or beyond the same end agree trivially downstream.
    limits: tuple[float | None, float | None] | None = None


def trivial_entries(stage: StageData) -> np.ndarray:
    """Entries where SPICE and the model agree by construction: both at or beyond the same
    end of the range the next stage resolves (no pulse; a saturated converter; a column
    charge past S_sat or past the signed converter's full scale, where the integrator's
    own saturation, which no stage after it sees, decides the charge)."""
    spice, model = np.asarray(stage.spice, float), np.asarray(stage.model, float)
    if stage.limits is None:
        return np.zeros(spice.shape, bool)
    tol = TRIVIAL_FRACTION * stage.full_scale
    low, high = stage.limits
    trivial = np.zeros(spice.shape, bool)
    if low is not None:
        trivial |= (spice <= low + tol) & (model <= low + tol)
    if high is not None:
        trivial |= (spice >= high - tol) & (model >= high - tol)
    return trivial


def metrics(stage: StageData, threshold_pct: float, worst: int = 3,
            max_error_pct: float = DEFAULT_MAX_ERROR_PCT,
            bias_pct: float = DEFAULT_BIAS_PCT) -> dict:
    spice, model = np.asarray(stage.spice, float), np.asarray(stage.model, float)
    error = model - spice
    trivial = trivial_entries(stage)
    # Every entry trivial (a tile that saturates everything) leaves nothing to score.
    scored = error[~trivial] if (~trivial).any() else np.zeros(1)
    rmse = float(np.sqrt(np.mean(scored ** 2)))
    bias = float(np.mean(scored))
    largest = float(np.max(np.abs(scored)))
    if spice.size > 1 and np.std(spice) > 0 and np.std(model) > 0:
        correlation = float(np.corrcoef(spice, model)[0, 1])
    else:
        correlation = None
    order = np.argsort(-np.abs(error))[:worst]
    unit = UNITS[stage.name][0]
    out = {
        "description": DESCRIPTIONS[stage.name],
        "unit": "C" if unit == "pC" else ("s" if unit == "ns" else "1"),
        "full_scale": stage.full_scale,
        "n": int(spice.size),
        "rmse": rmse,
        "rmse_pct_fs": 100.0 * rmse / stage.full_scale,
        "n_trivial": int(trivial.sum()),
        "max_abs_error": largest,
        "max_abs_error_pct_fs": 100.0 * largest / stage.full_scale,
        "max_abs_error_all_pct_fs": 100.0 * float(np.max(np.abs(error))) / stage.full_scale,
        "mean_error": bias,
        "bias_pct_fs": 100.0 * bias / stage.full_scale,
        "correlation": correlation,
        "spice_range": [float(spice.min()), float(spice.max())],
        "worst": [{stage.index_name: int(i), "spice": float(spice[i]), "model": float(model[i]),
                   "error": float(error[i])} for i in order],
        "threshold_pct_fs": threshold_pct,
        "max_error_threshold_pct_fs": max_error_pct,
        "bias_threshold_pct_fs": bias_pct,
    }
    if stage.isolated is not None:
        iso = np.asarray(stage.isolated, float) - spice
        out["isolated_rmse_pct_fs"] = 100.0 * float(np.sqrt(np.mean(iso ** 2))) / stage.full_scale
    failed = [what for what, value, limit in (
        ("rmse", out["rmse_pct_fs"], threshold_pct),
        ("max", out["max_abs_error_pct_fs"], max_error_pct),
        ("bias", abs(out["bias_pct_fs"]), bias_pct)) if not value <= limit]
    out["failed_on"] = failed
    out["passed"] = not failed
    return out


_DEFAULTS = {"--threshold": ("rmse", DEFAULT_THRESHOLD_PCT),
             "--max-error": ("max", DEFAULT_MAX_ERROR_PCT), "--bias": ("bias", DEFAULT_BIAS_PCT)}


def parse_thresholds(items: tuple[str, ...] | list[str],
                     option: str = "--threshold") -> dict[str, float]:
    """`--threshold phi=3` (per stage) or `--threshold 3` (every stage), % of full scale;
    --max-error and --bias (``option``) the same way. Unnamed stages keep their defaults."""
    kind, default = _DEFAULTS[option]
    thresholds = {name: STAGE_DEFAULTS.get(kind, {}).get(name, default) for name in STAGES}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            name, value = "*", item
        name = name.strip()
        if name != "*" and name not in STAGES:
            raise ValueError(f"{option} {item!r}: unknown stage {name!r} "
                             f"(stages: {', '.join(STAGES)})")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{option} {item!r}: {value!r} is not a number") from None
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"{option} {item!r}: expected a percentage > 0")
        for stage in (STAGES if name == "*" else (name,)):
            thresholds[stage] = number
    return thresholds


def _fmt(value: float, name: str) -> str:
    unit, scale = UNITS[name]
    return f"{value * scale:.4g}{(' ' + unit) if unit else ''}"


def format_table(report: dict) -> str:
    lines = [(f"{'stage':5s}  {'full scale':>10s}  {'RMSE %FS':>8s}  {'max %FS':>7s}  "
              f"{'bias %FS':>8s}  {'corr':>7s}  {'isolated':>8s}  {'trivial':>7s}  "
              f"{'limits':>11s}  result")]
    for name, m in report["stages"].items():
        corr = "n/a" if m["correlation"] is None else f"{m['correlation']:.4f}"
        iso = m.get("isolated_rmse_pct_fs")
        iso = "-" if iso is None else f"{iso:.2f}"
        limits = (f"{m['threshold_pct_fs']:.3g}/{m.get('max_error_threshold_pct_fs', 0):.3g}/"
                  f"{m.get('bias_threshold_pct_fs', 0):.3g}")
        result = "pass" if m["passed"] else "FAIL " + ",".join(m.get("failed_on", []))
        lines.append(f"{name:5s}  {_fmt(m['full_scale'], name):>10s}  {m['rmse_pct_fs']:8.2f}  "
                     f"{m['max_abs_error_pct_fs']:7.2f}  {m.get('bias_pct_fs', 0):+8.2f}  "
                     f"{corr:>7s}  {iso:>8s}  {m.get('n_trivial', 0):>3d}/{m['n']:<3d}  "
                     f"{limits:>11s}  {result}")
    lines.append("limits: RMSE / max / |bias|, % of full scale; trivial: entries both sides "
                 "saturate or leave at zero (not scored)")
    return "\n".join(lines)


# What `write_report` writes into a report folder; inputs.npz only when given the inputs.
REPORT_FILES = ("report.json", "stages.png", "inputs.npz")


def report_files(directory: Path, inputs: bool = True) -> list[Path]:
    """The files `write_report` writes into `directory`."""
    return [Path(directory) / name for name in REPORT_FILES[:3 if inputs else 2]]


def check_report_files(directory: Path, inputs: bool = True) -> list[Path]:
    """The report files, refused in one line (before any ngspice run) when one exists and
    is not a regular file: a FIFO, a device, a symlink, a folder."""
    return check_targets(report_files(directory, inputs), "report file")


def write_report(report: dict, stages: list[StageData], directory: Path,
                 inputs: dict[str, np.ndarray] | None = None) -> list[Path]:
    """report.json, stages.png (SPICE against model, one panel per stage) and, given the
    inputs ({'q': ..., 'k': ..., 'v': ...}), inputs.npz: written together through
    core.atomic, or none of them. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = check_report_files(directory, inputs is not None)
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 4.2))
    try:
        for ax, stage in zip(np.atleast_1d(axes), stages):
            unit, scale = UNITS[stage.name]
            x, y = np.asarray(stage.spice) * scale, np.asarray(stage.model) * scale
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
            ax.scatter(x, y, s=12)
            m = report["stages"][stage.name]
            ax.set_title(f"{stage.name}: RMSE {m['rmse_pct_fs']:.2f}% FS "
                         f"({'pass' if m['passed'] else 'FAIL'})", fontsize=10)
            suffix = f" [{unit}]" if unit else ""
            ax.set_xlabel(f"SPICE{suffix}")
            ax.set_ylabel(f"behavioural (fitted){suffix}")
        fig.suptitle(f"gcsim validate {report['scenario']}: {report['rows']}x{report['cols']} "
                     f"tile, models {report['models']}", fontsize=11)
        fig.tight_layout()
        with replacing_all(*paths, what="report file") as temporaries:
            Path(temporaries[0]).write_text(json.dumps(report, indent=2) + "\n")
            fig.savefig(temporaries[1], dpi=110, format="png")
            if inputs is not None:
                with open(temporaries[2], "wb") as stream:   # no .npz appended to a stream
                    np.savez(stream, **inputs)
    finally:
        plt.close(fig)
    return paths
