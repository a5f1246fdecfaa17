"""The stages `gcsim run` and `gcsim regen` chain: every spec's sweep, then every fit whose
sweep exists. Each stage reads the files the previous one wrote, so either can run alone."""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gcsim.characterize import spec as spec_module
from gcsim.core.errors import GcsimError
from gcsim.characterize.cache import ResultCache
from gcsim.core.atomic import write_text_atomically
from gcsim.core.design import Design
from gcsim.fit.bundle import DESIGN_FILE
from gcsim.fit import kinds, schema
from gcsim.fit.table import fit_table, write_fit
from gcsim.hw.operating import OperatingPoint
from gcsim.hw.published import PAPER, PAPER_OPERATING_POINT
from gcsim.validate.timing import TileParams

# The options `gcsim regen` fits with; each is stated in the fit file's provenance.
#  - nonlinearity: at the array's read on-level only (regen_options adds it: the design's, the
#    published one without a design), like the published coefficients (whose C_0j / C_00 =
#    0.9^j shows they were fitted at V_in = 0.9 V), with the minimax objective because its
#    requirement is a bound on the maximum error.
#  - charge_per_pulse: least squares; minimax would trade the small edge-charge term for the
#    long pulses' error and make the edge time meaningless (343 ps against 126 ps). Order 5,
#    not the published 3: the cubic's 1 % FS error per cell is systematic per stored level, so
#    it adds up over a 64-row column (a 64x64 tile's A stage: 2.56 % FS isolated error with
#    order 3, 1.08 % with 5, 0.77 % with 7); 5 costs 6 array products per decaying read, not 4.
REGEN_OPTIONS = {
    "nonlinearity": {"order": 3, "objective": "minimax"},
    "charge_per_pulse": {"order": 5, "edge_order": 3, "objective": "lsq"},
}


def regen_options(kind_name: str, design: Design | None = None) -> dict:
    """REGEN_OPTIONS of a kind, with the nonlinearity's read voltage `v_in_V` set to the read-on
    level of the operating point the sweeps ran at (the design's; the published one without a
    design)."""
    options = dict(REGEN_OPTIONS.get(kind_name, {}))
    if design is not None:
        orders = design.fits
        options.update({"nonlinearity": {"order": orders.nonlinearity_order},
                        "charge_per_pulse": {"order": orders.charge_order,
                                             "edge_order": orders.edge_order},
                        "cell_conductance": {"order": orders.conductance_order},
                        }.get(kind_name, {}))
    if kind_name == "nonlinearity":
        point = (OperatingPoint.from_design(design) if design is not None
                 else PAPER_OPERATING_POINT)
        options = {"order": options.pop("order"), "v_in_V": point.read_on_V, **options}
    return options


def context_options(kind_name: str, design: Design | None = None) -> dict:
    """What a fit needs from the architecture rather than from its table: the ages the decay's
    exponential must match (the design's window x its token period; the published 1024 tokens
    x 0.8 µs without a design), and the tile's V readout timing (readout_loading). Recorded in
    each fit's provenance with its options."""
    if kind_name == "decay":
        if design is None:
            return {"age_max_s": PAPER.window * PAPER.token_period_s}
        return {"age_max_s": design.timing.window_tokens * design.timing.token_period_s}
    if kind_name == "readout_loading":
        return {"tile_timing_s": TileParams.defaults(signed=False, design=design)
                .readout_timing_s()}
    if kind_name == "write" and design is not None:
        return {"tolerance_V": design.tolerances.write_V,
                "write_time_s": design.write.t_write_s}
    return {}


# Extra fits that are reported but are not part of the bundle.
EXTRA_FITS = {
    "nonlinearity_surface": ("nonlinearity", {"order": 3, "objective": "lsq"}),
}


@dataclass
class SweepOutcome:
    spec: Path
    table: Path
    rows: int
    failed: int
    stats: dict
    table_data: pd.DataFrame | None = None   # the table itself: callers need not read it back
    design: Design | None = None   # the design the sweep ran on (None: the netlists' defaults)


def swept_design(outcomes: list[SweepOutcome]) -> Design | None:
    """The one design the sweeps ran on; None when they ran on none or on different ones."""
    designs = {o.design.sha256: o.design for o in outcomes if o.design is not None}
    if len(designs) != 1 or any(o.design is None for o in outcomes):
        return None
    return next(iter(designs.values()))


def run_sweeps(spec_dir: Path, sweep_dir: Path, models: str | None = None,
               jobs: int | None = None, on_done: Callable[[SweepOutcome], None] | None = None,
               only: set[str] | None = None, executor=None,
               design: str | Path | Design | None = None) -> list[SweepOutcome]:
    """Sweep every spec of `spec_dir` into `sweep_dir`; `executor` (gcsim.spice.executors) runs
    the ngspice runs elsewhere, e.g. on Dask (default: local worker processes). `design`: a
    shipped design's name or a design file (default: the models' process's design)."""
    from gcsim.characterize.sweep import Sweep, write_outputs
    from gcsim.core.design import choose_design

    chosen, models = choose_design(design, models)

    specs = [path for path in sorted(Path(spec_dir).glob("*.toml"))
             if only is None or path.stem in only]
    if not specs:
        raise GcsimError(f"no specs (*.toml) in {spec_dir}" + (
            f" named {', '.join(sorted(only))}" if only else "") + ": nothing to sweep")
    outcomes = []
    for path in specs:
        spec = spec_module.load(path)
        sweep = Sweep(spec, models=models, workers=jobs, cache=ResultCache(),
                      executor=executor, design=chosen)
        result = sweep.run()
        output = Path(sweep_dir) / f"{path.stem}.parquet"
        write_outputs(result, output, "parquet")
        outcome = SweepOutcome(path, output, len(result.table), len(result.failures),
                               result.metadata["stats"], result.table, sweep.design)
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return outcomes


@dataclass
class FitOutcome:
    name: str
    kind: str
    record: schema.FitRecord
    json_path: Path
    plot_path: Path


def fit_all(sweep_dir: Path, fits_dir: Path, plots_dir: Path,
            on_done: Callable[[FitOutcome], None] | None = None,
            on_skip: Callable[[str, str], None] | None = None,
            swept: set[str] | None = None, design: Design | None = None) -> list[FitOutcome]:
    """Fit every kind whose sweep table is in `sweep_dir`: bundle files into `fits_dir`, plots
    (and the extra, non-bundle fits) into `plots_dir`. With `swept` (the sweeps this run made),
    a table left in `sweep_dir` by an earlier run is not fitted: it may be stale. `design`, the
    design the sweeps ran on, sets the decay's age window and is copied into the bundle as
    design.toml (the simulator's operating point); without one a stale copy is removed."""
    write_design(fits_dir, design)
    outcomes = []
    jobs = [(kind.name, kind.name, regen_options(kind.name, design), fits_dir)
            for kind in kinds.all_kinds()]
    jobs += [(name, kind, options, plots_dir) for name, (kind, options) in EXTRA_FITS.items()]
    for name, kind_name, options, target in jobs:
        kind = kinds.get(kind_name)
        table = Path(sweep_dir) / f"{kind.sweep}.parquet"
        if not table.is_file() or (swept is not None and kind.sweep not in swept):
            if on_skip:
                on_skip(name, f"no {kind.sweep} sweep" + ("" if swept is None else
                                                          " in this run"))
            continue
        record, data = fit_table(kind_name, table,
                                 **{**context_options(kind_name, design), **options})
        json_path, plot_path = write_fit(record, data, Path(target) / f"{name}.json",
                                         Path(plots_dir) / f"{name}.png")
        outcome = FitOutcome(name, kind_name, record, json_path, plot_path)
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return outcomes


def write_design(fits_dir: Path, design: Design | None) -> None:
    """Copy the design file into the bundle as design.toml (atomically); without a design,
    remove one an earlier run left there."""
    target = Path(fits_dir) / DESIGN_FILE
    if design is None:
        if target.is_file():
            target.unlink()
        return
    Path(fits_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomically(target, Path(design.path).read_text(), f"fits {DESIGN_FILE}")


# The published model's charge unit, which S_sat and the converter's full scale are quoted in.
PAPER_UNIT = f"µA x {PAPER.pulse_max_s * 1e9:g} ns"


def headline(r: schema.FitRecord) -> list[tuple[str, str]]:
    """The figures `gcsim fit`, `gcsim run` and `gcsim regen` print for a fit."""
    m = r.metrics
    rows = []
    if "max_error_pct_fs" in m:
        rows.append(("fit max error", f"{m['max_error_pct_fs']:.2f} % FS "
                                      f"(RMSE {m['rmse_pct_fs']:.2f} %, R² {m['r2']:.5f})"))
    if r.kind in ("nonlinearity", "charge_per_pulse"):
        at = m.get("at_read_on_level")
        if at:
            rows.append((f"  at V_in = {at['v_in_V']:g} V",
                         f"{at['max_error_pct_fs']:.2f} % FS max"))
        name = "current_at_range_ends" if r.kind == "charge_per_pulse" else None
        if name:
            low, high = r.value(name)
            ends = " / ".join(f"{v:g}" for v in r.valid_range["stored_voltage_V"])
            rows.append((f"pulse current at {ends} V", f"{low * 1e6:.2f} / {high * 1e6:.2f} µA"))
            rows.append(("edge time", f"{r.value('edge_time') * 1e12:.0f} ps"))
    elif r.kind == "decay":
        if "asymptote_by_level" in r.parameters:
            asymptotes = np.asarray(r.value("asymptote_by_level"))
            rows.append(("tau (simulator, window)",
                         f"{r.value('time_constant') * 1e3:.3g} ms, asymptotes "
                         f"{asymptotes.min():.3f} ... {asymptotes.max():.3f} V per level"))
        else:
            rows.append(("tau (simulator, window)", f"{r.value('time_constant') * 1e3:.3g} ms, "
                                                    f"asymptote {r.value('asymptote'):.3f} V"))
        rows.append(("tau (sinh law)", f"{r.value('law_time_constant') * 1e3:.3g} ms, "
                                       f"V_s {r.value('law_voltage_scale') * 1e3:.0f} mV"))
        level_law = m.get("window_level_law_at_nominal", {})
        if level_law:
            rows.append(("  simulator's law in window",
                         f"{level_law['max_error_pct_fs']:.2f} % FS max"))
        window = m.get("window_exponential_at_nominal", {})
        if window:
            rows.append(("  one exponential in window",
                         f"{window['max_error_pct_fs']:.2f} % FS max"))
        if "activation_energy" in r.parameters:
            rows.append(("tau activation energy", f"{r.value('activation_energy'):.3f} eV"))
    elif r.kind == "sense_amp":
        rows.append(("gain", f"{r.value('gain') * 1e-12:.4g} V/pC, offset "
                             f"{r.value('offset'):.4f} V"))
        rows.append(("linear range", f"{r.value('linear_range_low') * 1e12:.3g} .. "
                                     f"{r.value('linear_range_high') * 1e12:.3g} pC"))
    elif r.kind == "charge_to_pulse":
        rows.append(("S_sat", f"{r.value('saturation_charge') * 1e12:.4g} pC "
                              f"({r.value('saturation_charge') / PAPER.charge_unit_C:.1f} "
                              f"{PAPER_UNIT})"))
        rows.append(("T_max", f"{r.value('t_max') * 1e9:.4g} ns, offset "
                              f"{r.value('offset') * 1e15:.3g} fC"))
        if "threshold" in r.parameters:
            rows.append(("no pulse below", f"{r.value('threshold') * 1e15:.3g} fC"))
    elif r.kind == "signed_converter":
        rows.append(("full scale", f"{r.value('full_scale') * 1e15:.4g} fC "
                                   f"({r.value('full_scale') / PAPER.charge_unit_C:.1f} "
                                   f"{PAPER_UNIT})"))
    elif r.kind == "write":
        energy = r.parameters.get("energy_per_write", {}).get("value")
        rows.append(("write time", f"{r.value('write_time') * 1e9:.3g} ns"
                     + (f", {energy * 1e15:.3g} fJ per write" if energy is not None else "")))
    elif r.kind == "read_disturb":
        shifts = np.asarray(r.value("disturb_per_read"))
        rows.append(("shift per read", f"{shifts.min() * 1e6:+.3g} ... "
                                       f"{shifts.max() * 1e6:+.3g} µV over the levels"))
    elif r.kind == "mismatch":
        rows.append(("sigma current gain", f"{100 * r.value('current_sigma_rel'):.2f} %"))
        rows.append(("sigma stored-voltage shift",
                     f"{r.value('stored_voltage_shift_sigma') * 1e3:.2f} mV"))
    elif r.kind == "readout_loading":
        rows.append(("virtual ground", f"{r.value('offset') * 1e3:+.3g} mV "
                     f"{r.value('current_coefficient'):+.3g} mV/mA "
                     f"{r.value('charge_coefficient') * 1e-9:+.3g} mV/pC"))
    elif r.kind == "cell_conductance":
        # At the ends of the stored range and at mid-rail, as offsets from mid-rail.
        mid = float(r.value("v_mid"))
        stored = np.array([r.valid_range["stored_voltage_V"][0], mid,
                           r.valid_range["stored_voltage_V"][1]], dtype=float)
        x = stored - mid
        on = np.polynomial.polynomial.polyval(x, r.value("on_coefficients")) * 1e6
        off = np.polynomial.polynomial.polyval(x, r.value("off_coefficients")) * 1e6
        rows.append((f"g at {' / '.join(f'{v:g}' for v in stored)} V",
                     "read " + " / ".join(f"{g:.3g}" for g in on)
                     + " µS, rest " + " / ".join(f"{g:.3g}" for g in off) + " µS"))
    return rows


# Where the table was written, when, and its bytes (Parquet metadata may differ between
# machines) are not the fit; the numbers and the model files' hashes are. The sweep's
# netlist_sha256 hashes the rendered netlist, which names the library by absolute path, so
# it differs between checkouts of the same commit.
VOLATILE = {"date", "sweep_date", "source_sha256", "source_table", "netlist_sha256"}


def compare_fits(expected: Path, actual: Path, rel_tol: float = 1e-6) -> list[str]:
    """Differences between two fit folders, ignoring dates and the tables' byte hashes, and
    numbers that agree to `rel_tol` (floating point may differ in the last bits between
    machines). Returns one line per difference."""
    differences = []
    expected, actual = Path(expected), Path(actual)
    names = sorted({p.name for p in expected.glob("*.json")} | {p.name for p in
                                                                actual.glob("*.json")})
    for name in names:
        if not (expected / name).is_file() or not (actual / name).is_file():
            differences.append(f"{name}: only in {expected if (expected / name).is_file() else actual}")
            continue
        a = json.loads((expected / name).read_text())
        b = json.loads((actual / name).read_text())
        differences += [f"{name}: {d}" for d in _diff(a, b, "", rel_tol)]
    # The design copy: its values, not its bytes (comments and order do not count).
    has = [(folder / DESIGN_FILE).is_file() for folder in (expected, actual)]
    if has == [True, True]:
        a, b = (tomllib.loads((folder / DESIGN_FILE).read_text()) for folder in (expected, actual))
        differences += [f"{DESIGN_FILE}: {d}" for d in _diff(a, b, "", rel_tol)]
    elif any(has):
        differences.append(f"{DESIGN_FILE}: only in {expected if has[0] else actual}")
    return differences


def _diff(a, b, where, rel_tol):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key in VOLATILE:
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key} present on one side only")
            else:
                out += _diff(a[key], b[key], f"{where}.{key}", rel_tol)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{where}[{i}]",
                                                                      rel_tol)]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(
                a, b, rel_tol=rel_tol, abs_tol=1e-30):
            return []
        return [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]

