"""Resolves each per-operation quantity of the energy model and records where it came from.

An explicit override wins, else the fit parameter, else (for settling, reset and a missing
write fit) a sweep table, else a stated fallback that is flagged in the output. Nothing is
silent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from gcsim.core.errors import ParameterError
from gcsim.core.values import parse_number
from gcsim.energy.model import OPERATIONS, EnergyError, Operation, Quantity
from gcsim.hw.constants import PAPER

# The settling testbench's timing (netlists/sense_amp.cir .param names), for a settling table
# whose sweep sidecar does not give it: the netlist's defaults, whose integration window t_int
# is the published T_max.
SETTLING_TIMING = {"t_rst": 2e-9, "t_gap": 0.5e-9, "t_int": PAPER.pulse_max_s,
                   "t_edge": 100e-12, "t_hold": 1e-9}


def resolve(bundle=None, sweeps_dir: str | Path | None = None,
            overrides: dict[str, float] | None = None,
            settle_tolerance_V: float = 2e-3) -> dict[str, Quantity]:
    """Every per-operation quantity with its source."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OPERATIONS))
    if unknown:
        raise EnergyError(f"unknown operation {unknown[0]!r} (known: {', '.join(OPERATIONS)})")
    sweeps = Path(sweeps_dir) if sweeps_dir is not None else None
    if sweeps is not None and not sweeps.is_dir():
        raise EnergyError(f"--sweeps {sweeps}: not a directory")
    out: dict[str, Quantity] = {}
    for key, op in OPERATIONS.items():
        if key in overrides:
            value = float(overrides[key])
            if value < 0:
                raise EnergyError(f"--op {key}: must be >= 0, got {value:g}")
            out[key] = Quantity(key, value, op.unit, "override", "given on the command line")
            continue
        value = _fit_value(bundle, op)
        if value is not None:
            out[key] = Quantity(key, value, op.unit, "fit", f"{op.kind}.{op.parameter}")
            continue
        derived = _derived(bundle, key)
        if derived is not None:
            out[key] = Quantity(key, derived[0], op.unit, "fit", derived[1])
            continue
        found = _from_sweeps(key, sweeps, settle_tolerance_V) if sweeps is not None else None
        if found is not None:
            out[key] = Quantity(key, found[0], op.unit, "sweep", found[1])
            continue
        designed = _from_design(key, getattr(bundle, "design", None))
        if designed is not None:
            out[key] = Quantity(key, designed[0], op.unit, "parameter", designed[1])
            continue
        source = "parameter" if op.kind is None else "missing"
        where = f"no {op.kind}.{op.parameter} in the fits; " if op.kind else ""
        out[key] = Quantity(key, float(op.fallback), op.unit, source, where + op.fallback_note)
    return out


def _fit_value(bundle, op: Operation):
    if bundle is None or op.kind is None or op.derived or op.kind not in bundle.records:
        return None
    record = bundle.records[op.kind]
    if op.parameter not in record.parameters:
        return None
    value = record.value(op.parameter)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EnergyError(f"fit {op.kind}: parameter {op.parameter!r} is not a finite number")
    return float(value)


def settling_timing(table_path: str | Path) -> dict[str, float]:
    """The settling sweep's timing from its sidecar's parameters (what the testbench ran
    with); a name the sidecar lacks (or a table without one) takes SETTLING_TIMING's value."""
    sidecar = Path(table_path).with_suffix(".json")
    try:
        parameters = json.loads(sidecar.read_text()).get("parameters") or {}
    except (OSError, ValueError, AttributeError):
        parameters = {}
    timing = dict(SETTLING_TIMING)
    for name in timing:
        if name in parameters:
            try:
                timing[name] = parse_number(parameters[name], f"{sidecar}: parameters.{name}")
            except ParameterError as exc:
                raise EnergyError(str(exc)) from None
    return timing


def settling_from_sweep(table: pd.DataFrame, tolerance_V: float = 2e-3, *, t_rst: float,
                        t_gap: float, t_int: float, t_edge: float, t_hold: float) -> float:
    """Integrator settling from sense_amp_settling: the time after the input current ends until
    V(out) stays within `tolerance_V` of its value at the read instant (t_rst + t_gap + t_int +
    t_edge + t_hold, the testbench's timing: `settling_timing`), worst case over the swept
    charges."""
    needed = {"charge_in_C", "time_s", "v_out_V"}
    if not needed <= set(table.columns):
        raise EnergyError(f"settling table lacks columns {sorted(needed - set(table.columns))}")
    t_end = t_rst + t_gap + t_int + t_edge
    t_read = t_end + t_hold
    worst = 0.0
    for _, curve in table.groupby("charge_in_C"):
        curve = curve.sort_values("time_s")
        t = curve["time_s"].to_numpy(float)
        v = curve["v_out_V"].to_numpy(float)
        final = float(np.interp(t_read, t, v))
        window = (t >= t_end) & (t <= t_read + 1e-15)
        tw, vw = t[window], v[window]
        outside = np.abs(vw - final) > tolerance_V
        settle = 0.0
        if outside.any():  # settled at the grid point after the last one outside
            index = np.nonzero(outside)[0][-1]
            settle = float(tw[min(index + 1, tw.size - 1)] - t_end)
        worst = max(worst, settle)
    return worst


def _derived(bundle, key: str):
    """(value, note) of a quantity computed from a fit rather than read from it: the cell's
    read current over the stored levels the DAC writes (equally likely), which sets how much
    charge a column sinks and sources. None without the fit."""
    if key not in ("cell_current_mean", "cell_current_std") or bundle is None:
        return None
    record = bundle.records.get("charge_per_pulse")
    if record is None or "current_coefficients" not in record.parameters:
        return None
    design = getattr(bundle, "design", None)
    if design is not None:
        low, high, levels = (design.dac.stored_min_V, design.dac.stored_max_V,
                             design.dac.stored_levels)
        where = f"design {design.name}'s {levels} DAC levels"
    else:
        low, high = record.valid_range.get("stored_voltage_V", (0.0, PAPER.supply_V))
        levels = PAPER.stored_levels
        where = f"{levels} levels over [{low:g}, {high:g}] V"
    x = np.linspace(low, high, levels) - float(record.value("v_mid"))
    current = np.polynomial.polynomial.polyval(
        x, np.asarray(record.value("current_coefficients"), float))
    value = float(current.mean() if key == "cell_current_mean" else current.std())
    return value, (f"charge_per_pulse I(V_store), {'mean' if key.endswith('mean') else 'spread'}"
                   f" over {where}")


# Operations a design states as a timing (the value its testbenches and tile run with), by
# (table, key) of the design file, for when neither a fit nor a sweep measures them.
DESIGN_TIMINGS = {"align_time": ("timing", "t_align_s"), "settling": ("timing", "t_hold_s"),
                  "reset_time": ("timing", "t_rst_s"), "t_max": ("timing", "t_max_s"),
                  "signed_t_max": ("timing", "t_max_s"),
                  "token_period": ("timing", "token_period_s")}


def _from_design(key: str, design):
    """(value, note) of a timing the bundle's design states; None without one."""
    if design is None or key not in DESIGN_TIMINGS:
        return None
    table, name = DESIGN_TIMINGS[key]
    value = float(getattr(getattr(design, table), name))
    return value, (f"parameter: design {design.name}'s {table}.{name} ({value * 1e9:.3g} ns)"
                   + ("; pass --sweeps to measure it" if key in ("settling", "reset_time")
                      else ""))


def _from_sweeps(key: str, sweeps: Path, tolerance_V: float):
    def table(name):
        path = sweeps / f"{name}.parquet"
        if not path.is_file():
            return None
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable table is a one-line error
            raise EnergyError(f"cannot read {path}: {exc}") from None

    if key == "settling":
        data = table("sense_amp_settling")
        if data is None:
            return None
        value = settling_from_sweep(
            data, tolerance_V, **settling_timing(sweeps / "sense_amp_settling.parquet"))
        return value, (f"sense_amp_settling.parquet: worst time for V(out) to stay within "
                       f"{tolerance_V * 1e3:g} mV after the column current ends")
    if key == "reset_time":
        data = table("sense_amp_reset")
        if data is None or "reset_settling_s" not in data:
            return None
        return float(data["reset_settling_s"].max()), "sense_amp_reset.parquet: worst case"
    if key in ("write_energy", "write_time"):
        data = table("gain_cell_write")
        needed = {"target_voltage_V", "t_write_s", "stored_voltage_V"}
        if data is None or not needed <= set(data.columns):
            return None
        widest = float(data["t_write_s"].max())
        at = data[np.isclose(data["t_write_s"], widest, rtol=1e-9, atol=0.0)]
        error = float((at["stored_voltage_V"] - at["target_voltage_V"]).abs().max())
        note = (f"gain_cell_write.parquet at the widest pulse {widest * 1e9:g} ns (no write fit; "
                f"worst write error there {error * 1e3:.3g} mV)")
        if key == "write_time":
            return widest, note
        if "energy_J" not in data:
            return None
        return float(at["energy_J"].mean()), "mean over DAC targets, " + note
    return None


def check_models(bundle, models: str) -> None:
    """Refuse a bundle whose fits were swept on other device models than `models`."""
    found = set()
    for record in bundle.records.values():
        used = record.provenance.get("models")
        if used:
            found.add(str(used))
    wanted = models.strip()
    bad = sorted(m for m in found if not (m == wanted or m.split(":")[0] == wanted))
    if bad:
        raise EnergyError(f"fits in {bundle.directory} were swept on {', '.join(sorted(found))}, "
                          f"not {wanted}; run gcsim regen --models {wanted} --fits DIR first")
