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

STAGES = ("S", "phi", "A", "out")
UNITS = {"S": ("pC", 1e12), "phi": ("ns", 1e9), "A": ("pC", 1e12), "out": ("", 1.0)}
DESCRIPTIONS = {
    "S": "K column charge into the readout",
    "phi": "charge-to-pulse width",
    "A": "V column charge",
    "out": "signed converter output",
}
DEFAULT_THRESHOLD_PCT = 2.0


@dataclass
class StageData:
    name: str
    spice: np.ndarray
    model: np.ndarray
    full_scale: float
    index_name: str             # what an index means: "column" / "dim"
    isolated: np.ndarray | None = None   # model stage fed with SPICE's previous stage


def metrics(stage: StageData, threshold_pct: float, worst: int = 3) -> dict:
    spice, model = np.asarray(stage.spice, float), np.asarray(stage.model, float)
    error = model - spice
    rmse = float(np.sqrt(np.mean(error ** 2)))
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
        "max_abs_error": float(np.max(np.abs(error))),
        "max_abs_error_pct_fs": 100.0 * float(np.max(np.abs(error))) / stage.full_scale,
        "mean_error": float(np.mean(error)),
        "correlation": correlation,
        "spice_range": [float(spice.min()), float(spice.max())],
        "worst": [{stage.index_name: int(i), "spice": float(spice[i]), "model": float(model[i]),
                   "error": float(error[i])} for i in order],
        "threshold_pct_fs": threshold_pct,
    }
    if stage.isolated is not None:
        iso = np.asarray(stage.isolated, float) - spice
        out["isolated_rmse_pct_fs"] = 100.0 * float(np.sqrt(np.mean(iso ** 2))) / stage.full_scale
    out["passed"] = bool(out["rmse_pct_fs"] <= threshold_pct)
    return out


def parse_thresholds(items: tuple[str, ...] | list[str]) -> dict[str, float]:
    """`--threshold phi=3` (per stage) or `--threshold 3` (every stage), % of full scale."""
    thresholds = {name: DEFAULT_THRESHOLD_PCT for name in STAGES}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            name, value = "*", item
        name = name.strip()
        if name != "*" and name not in STAGES:
            raise ValueError(f"--threshold {item!r}: unknown stage {name!r} "
                             f"(stages: {', '.join(STAGES)})")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--threshold {item!r}: {value!r} is not a number") from None
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"--threshold {item!r}: expected a percentage > 0")
        for stage in (STAGES if name == "*" else (name,)):
            thresholds[stage] = number
    return thresholds


def _fmt(value: float, name: str) -> str:
    unit, scale = UNITS[name]
    return f"{value * scale:.4g}{(' ' + unit) if unit else ''}"


def format_table(report: dict) -> str:
    lines = [(f"{'stage':5s}  {'full scale':>10s}  {'RMSE %FS':>8s}  {'max |err|':>11s}  "
              f"{'corr':>7s}  {'isolated':>8s}  {'limit':>5s}  result")]
    for name, m in report["stages"].items():
        corr = "n/a" if m["correlation"] is None else f"{m['correlation']:.4f}"
        iso = m.get("isolated_rmse_pct_fs")
        iso = "-" if iso is None else f"{iso:.2f}"
        lines.append(f"{name:5s}  {_fmt(m['full_scale'], name):>10s}  {m['rmse_pct_fs']:8.2f}  "
                     f"{_fmt(m['max_abs_error'], name):>11s}  {corr:>7s}  {iso:>8s}  "
                     f"{m['threshold_pct_fs']:5.2g}  {'pass' if m['passed'] else 'FAIL'}")
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
