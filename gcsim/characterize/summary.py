"""Headline figures of the gain-cell characterisation tables, for the one-screen summary.

Each figure function takes the table and the mid-rail the sweep ran at (its sidecar's `v_mid`,
or its design's mid-rail; None when neither is known: the figures measured from mid-rail are
then NaN or left out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

def _volts(value: float) -> str:
    """0.9 -> '0p9': a voltage inside a figure's name."""
    return f"{value:g}".replace(".", "p")


def iv_figures(table: pd.DataFrame, mid_rail_V: float | None) -> dict[str, float]:
    full = table[np.isclose(table["v_in_V"], table["v_in_V"].max())].sort_values("stored_voltage_V")
    rest = (table[np.isclose(table["v_in_V"], mid_rail_V)] if mid_rail_V is not None
            else table.iloc[:0])
    current = full["i_out_A"].to_numpy()
    stored = full["stored_voltage_V"].to_numpy()
    return {
        f"i_out_at_{_volts(stored[0])}V_A": float(current[0]),
        f"i_out_at_{_volts(stored[-1])}V_A": float(current[-1]),
        "zero_crossing_V": float(np.interp(0.0, current, stored)) if np.all(np.diff(current) > 0)
        else float("nan"),
        "monotonic": bool(np.all(np.diff(current) > 0)),
        "max_abs_i_at_rest_A": float(rest["i_out_A"].abs().max()) if len(rest) else float("nan"),
    }


def pulse_figures(table: pd.DataFrame, mid_rail_V: float | None = None) -> dict[str, float]:
    longest = table[table["t_pulse_s"] == table["t_pulse_s"].max()]
    zero = table[table["t_pulse_s"] == table["t_pulse_s"].min()]
    return {
        "charge_min_C": float(longest["charge_C"].min()),
        "charge_max_C": float(longest["charge_C"].max()),
        "edge_charge_max_abs_C": float(zero["charge_C"].abs().max()),
        "t_pulse_max_s": float(table["t_pulse_s"].max()),
    }


def retention_figures(table: pd.DataFrame, mid_rail_V: float | None) -> dict[str, float]:
    """Time for the deviation from mid-rail to fall to 1/e, from the highest initial voltage,
    and its drift over the whole sweep (none without a mid-rail)."""
    out = {}
    if mid_rail_V is None:
        return out
    top = table["initial_voltage_V"].max()
    for temperature, group in table[np.isclose(table["initial_voltage_V"], top)].groupby(
            "temperature_C"):
        group = group.sort_values("time_s")
        deviation = (group["stored_voltage_V"] - mid_rail_V).abs().to_numpy()
        below = np.nonzero(deviation <= deviation[0] / np.e)[0]
        # Not reached within the sweep (a cell that holds its charge): infinite, printed so.
        out[f"t_1_over_e_from_{top:g}V_at_{temperature:g}C_s"] = (
            float(group["time_s"].to_numpy()[below[0]]) if below.size else float("inf"))
        stored = group["stored_voltage_V"].to_numpy()
        out[f"drift_from_{top:g}V_at_{temperature:g}C_in_{group['time_s'].max():g}s_V"] = \
            float(stored[-1] - stored[0])
    return out


def bitline_figures(table: pd.DataFrame, mid_rail_V: float | None = None) -> dict[str, float]:
    """Largest relative change of a full-width read's charge per 10 mV of bitline movement
    (the loading a readout with a moving virtual ground imposes)."""
    longest = table[table["t_pulse_s"] == table["t_pulse_s"].max()]
    base = longest[longest["bitline_step_V"] == 0].set_index("stored_voltage_V")["charge_C"]
    worst = 0.0
    for _, row in longest[longest["bitline_step_V"] != 0].iterrows():
        nominal = base.get(row["stored_voltage_V"])
        if nominal is not None and abs(nominal) > 1e-15:
            change = (row["charge_C"] - nominal) * 0.01 / row["bitline_step_V"]
            worst = max(worst, abs(change / nominal))
    return {"max_rel_change_per_10mV": worst}


FIGURES = {"gain_cell_iv": iv_figures, "gain_cell_pulse": pulse_figures,
           "gain_cell_retention": retention_figures, "gain_cell_bitline": bitline_figures}


def format_value(name: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and np.isinf(value):
        return "beyond the sweep"
    if name.startswith("drift_") and name.endswith("_V"):
        return f"{value * 1e3:+.3g} mV"
    for suffix, unit, scale in (("_A", "uA", 1e6), ("_C", "fC", 1e15), ("_s", "ms", 1e3),
                                ("_V", "V", 1.0)):
        if name.endswith(suffix):
            if suffix == "_s" and abs(value) < 1e-6:
                return f"{value * 1e9:.3g} ns"
            if suffix == "_A" and abs(value) < 1e-9:
                return f"{value * 1e12:.3g} pA"
            return f"{value * scale:.4g} {unit}"
    if name.startswith("max_rel"):
        return f"{100 * value:.2f} %"
    return f"{value:.4g}"
