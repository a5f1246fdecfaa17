"""`gcsim energy`: energy and latency per generated token from SPICE-measured per-operation
energies, against the paper's figures and GPU references."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import pandas as pd

from gcsim.core import resources
from gcsim.core.atomic import check_targets, replacing_all
from gcsim.cli.common import fail
from gcsim.core.errors import GcsimError
from gcsim.core.values import parse_number


def _number(text: str, what: str, minimum: float | None = 0.0) -> float:
    value = parse_number(text, what)
    if minimum is not None and value < minimum:
        raise GcsimError(f"{what}: must be >= {minimum:g}, got {text!r}")
    return value


def _integer(text, what: str) -> int:
    value = parse_number(text, what)
    if value != int(value) or value < 1:
        raise GcsimError(f"{what}: expected an integer >= 1, got {text!r}")
    return int(value)


def _overrides(pairs) -> dict[str, float]:
    from gcsim.energy import OPERATIONS

    out = {}
    for text in pairs:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise GcsimError(f"--op {text!r}: expected NAME=VALUE, e.g. integration=1p")
        if key not in OPERATIONS:
            raise GcsimError(f"--op {key}: unknown (known: {', '.join(OPERATIONS)})")
        out[key] = _number(value.strip(), f"--op {key}")
    return out


def _gpus(pairs) -> dict[str, tuple[float, float]] | None:
    if not pairs:
        return None
    out = {}
    for text in pairs:
        name, sep, rest = text.partition("=")
        parts = rest.split(",")
        if not sep or not name.strip() or len(parts) != 2:
            raise GcsimError(f"--gpu {text!r}: expected NAME=LATENCY_S,ENERGY_J, e.g. "
                             "'RTX 4090=22.4u,7.18m'")
        latency = _number(parts[0].strip(), f"--gpu {name.strip()} latency")
        energy = _number(parts[1].strip(), f"--gpu {name.strip()} energy")
        if latency <= 0 or energy <= 0:
            raise GcsimError(f"--gpu {name.strip()}: latency and energy must be > 0")
        out[name.strip()] = (latency, energy)
    return out


SWEEPABLE = {"window": "window", "heads": "heads", "dim": "dim", "array": "array",
             "query-mean": "query_mean", "phi-mean": "phi_mean"}


def _sweep(text: str | None):
    if text is None:
        return None
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or name not in SWEEPABLE or not values.strip():
        raise GcsimError(f"--sweep {text!r}: expected NAME=V1,V2,... with NAME one of "
                         f"{', '.join(SWEEPABLE)}, e.g. window=64,256,1024,4096")
    field = SWEEPABLE[name]
    if field in ("query_mean", "phi_mean"):
        parsed = [_number(v.strip(), f"--sweep {name}") for v in values.split(",")]
    else:
        parsed = [_integer(v.strip(), f"--sweep {name}") for v in values.split(",")]
    return field, parsed


def _lines(table: pd.DataFrame, columns: dict[str, callable], indent: str = "  ") -> list[str]:
    shown = pd.DataFrame({title: table[col].map(fmt) if fmt else table[col]
                          for title, (col, fmt) in columns.items()})
    return [indent + line for line in shown.to_string(index=False).splitlines()]


@click.command("energy")
@click.option("--fits", "fits_dir", type=click.Path(path_type=Path), default=resources.FITS,
              show_default=True, help="Fits bundle folder with the per-operation energies.")
@click.option("--models", default=None,
              help="Require fits swept on these device models (e.g. builtin, sky130:tt).")
@click.option("--sweeps", "sweeps_dir", type=click.Path(path_type=Path), default=None,
              help="Sweep tables folder (e.g. reports/sweeps): measures the integrator "
                   "settling and reset time, and the write when there is no write fit. Without "
                   "it those are stated parameters.")
@click.option("--window", default="1024", show_default=True, help="Sliding window, tokens.")
@click.option("--heads", default="12", show_default=True, help="Attention heads per layer.")
@click.option("--dim", default="64", show_default=True, help="Head dimension.")
@click.option("--array", default="64", show_default=True, help="Array size (A x A).")
@click.option("--digital-energy", default="4n", show_default=True,
              help="Digital control and routing energy per head per token, J (not simulated; "
                   "the paper's figure).")
@click.option("--digital-latency", default="0", show_default=True,
              help="Digital tail per token (sum of sub-tiles), s.")
@click.option("--query-mean", default="0.5", show_default=True,
              help="Mean query pulse width as a fraction of T_max (uniform q in [0, 1]).")
@click.option("--phi-mean", default="0.5", show_default=True,
              help="Mean phi(S) pulse width as a fraction of T_max.")
@click.option("--token-period", default="design", show_default=True,
              help="Time from one token to the next, over which every circuit's draw is "
                   "counted: 'design' (the bundle's design, timing.token_period_s), 'latency' "
                   "(tokens back to back) or a time, e.g. 100n.")
@click.option("--subtile-parallel", default="0", show_default=True,
              help="Sub-tiles converted at once (0 = all in parallel).")
@click.option("--op", "ops", multiple=True, metavar="NAME=VALUE",
              help="Override one per-operation quantity, e.g. --op integration=1p "
                   "(names: read_fixed, read_power, integration, c2p_conversion, "
                   "signed_conversion, write_energy, write_time, t_max, signed_t_max, "
                   "comparator_delay, align_time, settling, reset_time, token_period, ...; "
                   "every name is listed under 'Per-operation quantities').")
@click.option("--settle-tol", default="2m", show_default=True,
              help="Tolerance for the settling measured from --sweeps, V.")
@click.option("--gpu", "gpus", multiple=True, metavar="NAME=LATENCY_S,ENERGY_J",
              help="GPU reference per token (all heads); replaces the paper's RTX 4090 and "
                   "Jetson Nano figures. Repeatable.")
@click.option("--sweep", "sweep_spec", default=None, metavar="NAME=V1,V2,...",
              help="Scan one setting: window, heads, dim, array, query-mean, phi-mean.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="PNG: the breakdown against the paper, or with --sweep a "
                                 "log-log plot of energy and latency.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Save the tables (CSV and Parquet) and energy.json here.")
def energy_command(fits_dir, models, sweeps_dir, window, heads, dim, array, digital_energy,
                   digital_latency, query_mean, phi_mean, token_period, subtile_parallel, ops,
                   settle_tol,
                   gpus, sweep_spec, as_json, plot_file, out_dir):
    """Energy and latency of one generated token (attention of one layer), built bottom-up
    from the SPICE-measured per-operation energies in a fits bundle.

    Every row says whether it was simulated (a fit or a sweep table), a parameter, or
    missing (then what was assumed). The paper's figures (per head: QK array with
    HardSigmoid 1120 pJ, phi-V array 700 pJ, DACs 330 pJ, digital 4 nJ; 65 ns) stand beside
    them with ratios, and GPU references with speed-up and energy ratio.

    \b
    Example:
      gcsim energy --fits fits --sweeps reports/sweeps
      gcsim energy --sweep window=64,256,1024,4096 --plot energy.png --out reports/energy
      gcsim energy --op integration=0.5p --gpu 'A100=30u,5m' --json
    """
    import gcsim.energy as model    # the package: resolve and check_models are in sources
    from gcsim.fit.bundle import load_bundle

    try:
        config = model.EnergyConfig(
            window=_integer(window, "--window"), heads=_integer(heads, "--heads"),
            dim=_integer(dim, "--dim"), array=_integer(array, "--array"),
            digital_energy_J=_number(digital_energy, "--digital-energy"),
            digital_latency_s=_number(digital_latency, "--digital-latency"),
            query_mean=_number(query_mean, "--query-mean"),
            phi_mean=_number(phi_mean, "--phi-mean"),
            subtile_parallel=int(_number(subtile_parallel, "--subtile-parallel")),
            back_to_back=token_period.strip() == "latency",
        ).check()
        overrides = _overrides(ops)
        if token_period.strip() not in ("design", "latency"):
            if "token_period" in overrides:
                raise GcsimError("give the token period once: --token-period or --op "
                                 "token_period=...")
            overrides["token_period"] = _number(token_period, "--token-period")
            if overrides["token_period"] <= 0:
                raise GcsimError(f"--token-period: must be > 0, got {token_period!r}")
        references = _gpus(gpus)
        scan = _sweep(sweep_spec)
        tolerance = _number(settle_tol, "--settle-tol")
        if tolerance <= 0:
            raise GcsimError("--settle-tol: must be > 0")
        if plot_file is not None and plot_file.suffix.lower() != ".png":
            raise GcsimError(f"--plot {plot_file}: expected a .png file")
        # Every file this command writes, checked before anything is computed.
        targets = _targets(out_dir, plot_file, scanning=bool(scan))
        check_targets(targets, "output")
        if not Path(fits_dir).is_dir():
            raise GcsimError(f"fits bundle not found: {fits_dir} is not a directory (make one "
                             "with: gcsim regen --fits DIR --reports DIR)")
        bundle = load_bundle(fits_dir)
        if models:
            model.check_models(bundle, models)
        quantities = model.resolve(bundle, sweeps_dir, overrides, tolerance)
        result = model.estimate(quantities, config)
        paper = model.paper_comparison(result)
        gpu = model.gpu_comparison(result, references)
        scanned = model.sweep(quantities, config, *scan) if scan else None
    except (GcsimError, ValueError) as exc:
        fail(exc)

    used_models = sorted({str(r.provenance.get("models")) for r in bundle.records.values()
                          if r.provenance.get("models")})
    document = {
        "fits": str(fits_dir), "models": used_models,
        "sweeps": str(sweeps_dir) if sweeps_dir else None,
        "config": {**config.__dict__, "subtiles": config.subtiles},
        "energy_per_head_J": result.energy_per_head_J,
        "energy_per_token_J": result.energy_per_token_J,
        "latency_s": result.latency_s,
        "token_period_s": result.token_period_s,
        "quantities": {k: {"value": q.value, "unit": q.unit, "source": q.source,
                           "detail": q.detail} for k, q in quantities.items()},
        "breakdown": result.breakdown.to_dict(orient="records"),
        "latency": result.latency.to_dict(orient="records"),
        "paper": paper.to_dict(orient="records"),
        "gpu": gpu.to_dict(orient="records"),
        "sweep": scanned.to_dict(orient="records") if scanned is not None else None,
        "assumptions": result.assumptions,
    }
    try:
        _write(targets, out_dir, plot_file, result, paper, gpu, scanned, document,
               scan[0] if scan else None)
    except GcsimError as exc:
        fail(exc)
    except OSError as exc:
        fail(GcsimError(f"cannot write output: {exc}"))

    if as_json:
        click.echo(json.dumps(document, indent=2, default=_jsonable))
        return
    for line in _report(result, paper, gpu, scanned, scan, fits_dir, used_models, sweeps_dir):
        click.echo(line)
    if out_dir is not None:
        names = [path.name for path in targets if path.parent == out_dir]
        click.echo(f"wrote {', '.join(names)} to {out_dir}")
    if plot_file is not None:
        click.echo(f"wrote {plot_file}")


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _report(result, paper, gpu, scanned, scan, fits_dir, used_models, sweeps_dir) -> list[str]:
    from gcsim.energy import GPU_REFERENCES, PAPER_HEADS, PAPER_WINDOW, format_si

    c = result.config
    J = lambda v: format_si(v, "J")
    S = lambda v: format_si(v, "s")
    out = [
        "gcsim energy: one generated token, attention of one layer",
        (f"  fits {fits_dir} ({', '.join(used_models) or 'models not recorded'}); sweeps "
        f"{sweeps_dir if sweeps_dir else 'not given (settling and reset are parameters)'}"),
        (f"  window {c.window} ({c.subtiles} sub-tiles of {c.array}), {c.heads} heads, dim "
        f"{c.dim}, {c.array}x{c.array} arrays; activity q {c.query_mean:g}, phi "
        f"{c.phi_mean:g} of T_max"),
        (f"  token period {format_si(result.token_period_s, 's')} "
         f"({'back to back: the latency' if c.back_to_back else 'every circuit counted over it'})"),
        "",
        "Energy per component",
    ]
    table = result.breakdown.copy()
    total = {"component": "total", "energy_per_op_J": float("nan"), "count_per_head": 0,
             "per_head_J": result.energy_per_head_J, "per_token_J": result.energy_per_token_J,
             "share_pct": 100.0, "status": ""}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    out += _lines(table, {
        "component": ("component", None),
        "per op": ("energy_per_op_J", lambda v: "" if pd.isna(v) else J(v)),
        "count/head": ("count_per_head", lambda v: "" if not v else str(int(v))),
        "per head": ("per_head_J", J), f"per token ({c.heads} heads)": ("per_token_J", J),
        "share": ("share_pct", lambda v: f"{v:.1f} %"), "status": ("status", None)})
    out += ["", "Latency per token (critical path; heads in parallel)"]
    lat = pd.concat([result.latency, pd.DataFrame([{
        "phase": "total", "each_s": float("nan"), "times": 0, "total_s": result.latency_s,
        "status": "", "formula": ""}])], ignore_index=True)
    out += _lines(lat, {"phase": ("phase", None),
                        "each": ("each_s", lambda v: "" if pd.isna(v) else S(v)),
                        "x": ("times", lambda v: "" if not v else str(int(v))),
                        "total": ("total_s", S), "status": ("status", None),
                        "formula": ("formula", None)})
    out += ["", f"Against the paper (per head; the paper's figures are for window {PAPER_WINDOW})"]
    rows = []
    for _, row in paper.iterrows():
        unit = "s" if row["part"].startswith("latency") else "J"
        rows.append({"part": row["part"], "gcsim": format_si(row["gcsim_per_head_J"], unit),
                     "paper": format_si(row["paper_per_head_J"], unit),
                     "ratio": f"{row['ratio_gcsim_to_paper']:.3g}"})
    out += ["  " + line for line in pd.DataFrame(rows).to_string(index=False).splitlines()]
    for _, row in paper.iterrows():
        if row["why"] and row["why"] != "within 2x":
            out.append(f"  - {row['part']}: {row['why']}")
    custom = "given with --gpu" if set(gpu["gpu"]) != set(GPU_REFERENCES) else "the paper's"
    out += ["", (f"Against GPUs (per token, all heads; GPU figures {custom}, measured for "
                f"{PAPER_HEADS} heads, window {PAPER_WINDOW})")]
    out += _lines(gpu, {"gpu": ("gpu", None), "GPU latency": ("gpu_latency_s", S),
                        "GPU energy": ("gpu_energy_J", J),
                        "gcsim latency": ("gcsim_latency_s", S),
                        "gcsim energy": ("gcsim_energy_J", J),
                        "speed-up": ("speedup", lambda v: f"{v:,.0f}x"),
                        "energy ratio": ("energy_ratio", lambda v: f"{v:,.0f}x"),
                        "paper speed-up": ("paper_speedup", lambda v: f"{v:,.0f}x"),
                        "paper energy ratio": ("paper_energy_ratio", lambda v: f"{v:,.0f}x")})
    if c.heads != PAPER_HEADS or c.window != PAPER_WINDOW:
        out.append(f"  note: this run has {c.heads} heads, window {c.window}; the GPU figures "
                   "are not rescaled")
    if scanned is not None:
        name = scan[0]
        out += ["", f"Scan over {name}"]
        out += _lines(scanned, {name: (name, None), "energy/head": ("energy_per_head_J", J),
                                "energy/token": ("energy_per_token_J", J),
                                "latency": ("latency_s", S)})
    out += ["", "Per-operation quantities"]
    for key, q in result.quantities.items():
        label = {"fit": "simulated", "sweep": "simulated", "override": "override",
                 "parameter": "parameter", "missing": "MISSING"}[q.source]
        out.append(f"  {key:20s} {format_si(q.value, q.unit):>10s}  {label:9s} {q.detail}")
    out += ["", "Assumptions"] + [f"  - {note}" for note in result.assumptions]
    return out


TABLES = ("breakdown", "latency", "paper", "gpu")


def _targets(out_dir: Path | None, plot_file: Path | None, scanning: bool) -> list[Path]:
    """Every file the command writes: per table a CSV and a Parquet, then energy.json (with
    --out), then the plot."""
    targets = []
    if out_dir is not None:
        names = TABLES + (("sweep",) if scanning else ())
        targets += [out_dir / f"{name}{suffix}" for name in names
                    for suffix in (".csv", ".parquet")]
        targets.append(out_dir / "energy.json")
    if plot_file is not None:
        targets.append(plot_file)
    return targets


def _write(targets: list[Path], out_dir, plot_file, result, paper, gpu, scanned, document,
           name) -> None:
    """The tables, energy.json and the plot, written together (core.atomic): a failure
    leaves every old file as it was and no temporary behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not targets:
        return
    fig = _plot(result, paper, scanned, name) if plot_file is not None else None
    tables = {"breakdown": result.breakdown, "latency": result.latency, "paper": paper,
              "gpu": gpu}
    if scanned is not None:
        tables["sweep"] = scanned
    try:
        with replacing_all(*targets, what="output") as temporaries:
            if out_dir is not None:
                for number, table in enumerate(tables.values()):
                    table.to_csv(temporaries[2 * number], index=False)
                    table.to_parquet(temporaries[2 * number + 1], index=False)
                Path(temporaries[2 * len(tables)]).write_text(
                    json.dumps(document, indent=2, default=_jsonable) + "\n")
            if fig is not None:
                fig.savefig(temporaries[-1], dpi=120, format="png")
    finally:
        if fig is not None:
            plt.close(fig)


def _plot(result, paper, scanned, name):
    """The figure: the breakdown against the paper, or with a scan its log-log plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if scanned is not None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        x = scanned[name].to_numpy(float)
        for column in [c for c in scanned.columns if c.endswith("[J/head]")]:
            left.loglog(x, scanned[column].to_numpy(float), marker="o", label=column[:-9])
        left.loglog(x, scanned["energy_per_head_J"].to_numpy(float), "k-", marker="s",
                    lw=2, label="total per head")
        left.set_xlabel(name)
        left.set_ylabel("energy per head per token [J]")
        left.legend(fontsize=7)
        left.grid(True, which="both", alpha=0.3)
        right.loglog(x, scanned["latency_s"].to_numpy(float) * 1e9, "k-", marker="s")
        right.set_xlabel(name)
        right.set_ylabel("latency per token [ns]")
        right.grid(True, which="both", alpha=0.3)
        fig.suptitle(f"gcsim energy: scan over {name}")
    else:
        rows = paper[~paper["part"].str.startswith("latency")]
        fig, ax = plt.subplots(figsize=(8, 4))
        y = range(len(rows))
        ax.barh([i + 0.2 for i in y], rows["gcsim_per_head_J"] * 1e12, height=0.4,
                label="gcsim (SPICE fits)")
        ax.barh([i - 0.2 for i in y], rows["paper_per_head_J"] * 1e12, height=0.4,
                label="paper")
        ax.set_yticks(list(y))
        ax.set_yticklabels(rows["part"])
        ax.set_xscale("log")
        ax.set_xlabel("energy per head per token [pJ]")
        ax.legend()
        ax.grid(True, axis="x", which="both", alpha=0.3)
        fig.suptitle(f"gcsim energy: window {result.config.window}, latency "
                     f"{result.latency_s * 1e9:.3g} ns (paper 65 ns)")
    fig.tight_layout()
    return fig
