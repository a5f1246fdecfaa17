"""Readout-loading fits: how far the column integrator lets the bitline move, and how much
current the gain cells trade for that movement.

A cell's current depends on its bitline voltage; the characterisation reads each cell against an
ideal bitline at mid-rail and each readout against an ideal current source, so neither sees the
other. In an array the integrator's virtual ground sits off mid-rail by

    dV(t) = offset + charge_coefficient * Q(t) + current_coefficient * I(t)

(the OTA's offset, its finite gain as the held charge Q grows, and its finite bandwidth while the
column current I flows), and every cell on the bitline, pulsed or resting, answers with
-g(V_store) * dV. `readout_loading` fits dV from sense_amp_loading; `cell_conductance` fits g
during a read pulse and at rest from gain_cell_bitline, a transient sweep that steps the bitline
under a floating storage node (a DC sweep with the storage node held overstates g during a read
by 25-50 %: the node follows the bitline through the conducting devices' gate capacitance).
The array simulator combines the two (gcsim.hw.loading).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcsim.fit.numerics import FitError, error_metrics, solve_linear
from gcsim.fit.schema import FitRecord, param


def _conductances(group: pd.DataFrame) -> tuple[float, float]:
    """(g_off, g_on) of one stored voltage: the charge each bitline step costs against the
    unstepped run with the same pulse width, regressed on the step's deviation integral (the
    resting conductance, all window long) and step x width (the extra while the read is on).
    A displacement charge C_cell x step would be collinear with the resting term; at about
    1 fF it is below 0.3 % of it and is left in g_off."""
    base = group[group["bitline_step_V"] == 0].set_index("t_pulse_s")
    stepped = group[group["bitline_step_V"] != 0]
    if base.empty or stepped.empty:
        raise FitError("cell_conductance needs bitline_step_V = 0 and a non-zero step at every "
                       "stored voltage")
    missing = set(stepped["t_pulse_s"]) - set(base.index)
    if missing:
        raise FitError(f"cell_conductance: no unstepped run for pulse widths {sorted(missing)}")
    width = stepped["t_pulse_s"].to_numpy(float)
    charge = (stepped["charge_C"].to_numpy(float)
              - base.loc[width, "charge_C"].to_numpy(float))
    deviation = (stepped["bitline_deviation_integral_Vs"].to_numpy(float)
                 - base.loc[width, "bitline_deviation_integral_Vs"].to_numpy(float))
    step = stepped["bitline_step_V"].to_numpy(float)
    if np.unique(width).size < 2:
        raise FitError("cell_conductance needs two or more pulse widths to tell the read "
                       "conductance from the resting one")
    g_off, g_extra = solve_linear(np.stack([deviation, step * width], axis=1), -charge)
    return float(g_off), float(g_off + g_extra)


def fit_cell_conductance(table: pd.DataFrame, order: int = 4, *, v_mid_V: float,
                         read_on_V: float) -> FitRecord:
    """Cell conductance seen from the bitline against stored voltage, during a read and at
    rest, each a polynomial in x = V_store - v_mid, from the transient bitline-step sweep
    (gain_cell_bitline): charge_C and bitline_deviation_integral_Vs over bitline_step_V x
    stored_voltage_V x t_pulse_s."""
    voltages, rest, read = [], [], []
    for stored, group in table.groupby("stored_voltage_V"):
        g_off, g_on = _conductances(group)
        voltages.append(float(stored))
        rest.append(g_off)
        read.append(g_on)
    x = np.array(voltages) - v_mid_V
    if x.size <= order:
        raise FitError(f"cell_conductance order {order} needs more than {order} stored "
                       f"voltages, got {x.size}")
    curves, metrics = {}, {}
    for name, g in (("on", np.array(read)), ("off", np.array(rest))):
        coefficients = solve_linear(np.vander(x, order + 1, increasing=True), g)
        curves[name] = (x, g, np.asarray(coefficients, float))
        metrics[name] = error_metrics(g, np.polynomial.polynomial.polyval(x, coefficients), "S")
    worst = max(metrics.values(), key=lambda m: m["max_error_pct_fs"])
    parameters = {
        "on_coefficients": param(curves["on"][2].tolist(), "S",
                                 "g = sum_i c_i x^i, x = V_store - v_mid, during a read pulse"),
        "off_coefficients": param(curves["off"][2].tolist(), "S",
                                  "the same at rest (read port at mid-rail)"),
        "order": param(order, "1"),
        "v_mid": param(v_mid_V, "V"),
        "read_on_level": param(read_on_V, "V"),
        "read_off_level": param(v_mid_V, "V"),
    }
    return FitRecord(
        kind="cell_conductance",
        description="Gain-cell conductance seen from a moving bitline (storage node floating), "
                    "against stored voltage: during a read pulse and at rest",
        parameters=parameters,
        valid_range={"stored_voltage_V": [float(table["stored_voltage_V"].min()),
                                          float(table["stored_voltage_V"].max())],
                     "bitline_step_V": [float(table["bitline_step_V"].min()),
                                        float(table["bitline_step_V"].max())]},
        metrics={"rmse_pct_fs": worst["rmse_pct_fs"], "max_error_pct_fs": worst["max_error_pct_fs"],
                 "r2": min(m["r2"] for m in metrics.values()), "on": metrics["on"],
                 "off": metrics["off"]},
        provenance={},
        extra={"curves": {name: {"x_V": c[0].tolist(), "conductance_S": c[1].tolist()}
                          for name, c in curves.items()}},
    )


def fit_readout_loading(table: pd.DataFrame, max_current_A: float = 250e-6, *,
                        tile_timing_s: dict[str, float]) -> FitRecord:
    """Least squares of the bitline deviation's time integral over the integration window:
    integral dV dt = offset * T + charge_coefficient * integral Q dt + current_coefficient * Q
    (a constant current Q / t_int integrates to Q).

    Only column currents up to `max_current_A` are fitted: beyond them the class-AB output
    stage slews and the deviation grows faster than linearly (a 64-row column of random
    cells rarely draws more than 250 uA at once)."""
    if "t_int_s" not in table:
        raise FitError("readout_loading needs two or more integration times (t_int_s) to tell "
                       "the charge term from the current term")
    current = np.abs(table["charge_in_C"] / table["t_int_s"])
    data = table[current <= max_current_A * (1 + 1e-9)].sort_values(["t_int_s", "charge_in_C"])
    window = data["integration_window_s"].to_numpy(float)
    charge_time = data["charge_time_integral_Cs"].to_numpy(float)
    charge = data["charge_in_C"].to_numpy(float)
    deviation = data["bitline_deviation_integral_Vs"].to_numpy(float)
    if charge.size < 4:
        raise FitError("readout_loading needs at least 4 points")
    if np.unique(data["t_int_s"]).size < 2:
        raise FitError("readout_loading needs two or more integration times (t_int_s) to tell "
                       "the charge term from the current term")
    design = np.stack([window, charge_time, charge], axis=1)
    offset, charge_coefficient, current_coefficient = (float(c) for c in
                                                       solve_linear(design, deviation))
    predicted = design @ np.array([offset, charge_coefficient, current_coefficient])
    metrics = error_metrics(deviation, predicted, "Vs")
    # Where the column current starts inside the window, from the ramp testbench itself:
    # integral Q dt = Q (T - start - t_int / 2) for a current Q / t_int from `start`.
    longest = (data["t_int_s"] == data["t_int_s"].max()).to_numpy()
    ramp = longest & (charge != 0)
    starts = window[ramp] - charge_time[ramp] / charge[ramp] - data["t_int_s"].max() / 2
    k_window = float(np.median(window[longest]))
    k_start = float(np.median(starts))
    # The V readout in the tile: released at t_vrel, its pulses leaving t_align into the
    # conversion window t_conv, read at t_vend; its reset edge costs it what the K readout's
    # costs (t_gap - k_start). The timing comes in as data (the tile's, from the caller).
    missing = {"t_gap", "t_vrel", "t_conv", "t_vend", "t_align"} - set(tile_timing_s)
    if missing:
        raise FitError(f"readout_loading: tile timing lacks {', '.join(sorted(missing))}")
    tile = {name: float(value) for name, value in tile_timing_s.items()}
    reset_lag = tile["t_gap"] - k_start
    v_start = tile["t_conv"] + tile["t_align"] - tile["t_vrel"] - reset_lag
    v_window = tile["t_vend"] - tile["t_vrel"] - reset_lag
    parameters = {
        "offset": param(offset, "V", "virtual-ground offset from mid-rail"),
        "charge_coefficient": param(charge_coefficient, "V/C",
                                    "deviation per coulomb held (finite gain)"),
        "current_coefficient": param(current_coefficient, "V/A",
                                     "deviation per ampere flowing (finite bandwidth)"),
        "k_window": param(k_window, "s", "K readout: integration window (reset open)"),
        "k_pulse_start": param(k_start, "s", "K readout: query pulses start this far into it"),
        "v_window": param(v_window, "s", "V readout: integration window"),
        "v_pulse_start": param(v_start, "s", "V readout: HardSigmoid pulses start this far in"),
    }
    return FitRecord(
        kind="readout_loading",
        description="Integrator virtual-ground deviation dV = offset + charge_coefficient * Q + "
                    "current_coefficient * I, and the tile's integration windows",
        parameters=parameters,
        valid_range={"charge_in_C": [float(charge.min()), float(charge.max())],
                     "current_A": [-max_current_A, max_current_A],
                     "t_int_s": [float(data["t_int_s"].min()), float(data["t_int_s"].max())]},
        metrics=metrics,
        provenance={},
        extra={"tile_timing_s": {"t_vrel": tile["t_vrel"], "t_conv": tile["t_conv"],
                                 "t_vend": tile["t_vend"], "t_align": tile["t_align"]}},
    )
