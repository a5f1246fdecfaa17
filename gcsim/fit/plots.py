"""One PNG per fit: the data against the fitted model, and the residuals."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from gcsim.fit.schema import FitRecord


def plot_fit(record: FitRecord, table: pd.DataFrame, path: Path) -> Path:
    """Data against fit, with the residuals, as a PNG at `path` (the caller makes the write
    atomic: gcsim.fit.table.write_fit)."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 2]})
    DRAW[record.kind](record, table, top, bottom)
    top.legend(fontsize=7, loc="best")
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    bottom.axhline(0, color="k", lw=0.5)
    metrics = record.metrics
    headline = ", ".join(f"{k} {metrics[k]:.3g}" for k in ("r2", "rmse_pct_fs",
                                                          "max_error_pct_fs") if k in metrics)
    figure.suptitle(f"{record.kind}: {headline}", fontsize=10)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110, format="png")
    finally:
        plt.close(figure)
    return path


def _subset(values, count=6):
    values = np.unique(values)
    return values[np.linspace(0, values.size - 1, min(count, values.size)).astype(int)]


def _nonlinearity(record, table, top, bottom):
    from gcsim.fit.cell import CellNonlinearity

    model = CellNonlinearity.from_record(record)
    lo, hi = model.v_in_range_V
    rows = table[(table["v_in_V"] >= lo - 1e-9) & (table["v_in_V"] <= hi + 1e-9)]
    fs = record.metrics["full_scale_A"]
    for v_in in _subset(rows["v_in_V"]):
        group = rows[np.isclose(rows["v_in_V"], v_in)].sort_values("stored_voltage_V")
        fit = model.current_A(group["stored_voltage_V"], group["v_in_V"], clamp=True)
        line, = top.plot(group["stored_voltage_V"], fit * 1e6, lw=1.2, label=f"fit V_in={v_in:.3g}")
        top.plot(group["stored_voltage_V"], group["i_out_A"] * 1e6, ".", ms=3,
                 color=line.get_color())
        bottom.plot(group["stored_voltage_V"], 100 * (fit - group["i_out_A"]) / fs,
                    color=line.get_color(), lw=1)
    top.set_ylabel("cell current (µA)")
    bottom.set_ylabel("fit - SPICE (% FS)")
    bottom.set_xlabel("stored voltage (V)")


def _charge_per_pulse(record, table, top, bottom):
    from gcsim.fit.cell import ChargePerPulse

    model = ChargePerPulse.from_record(record)
    fs = record.metrics["full_scale_C"]
    for v in _subset(table["stored_voltage_V"], 7):
        group = table[np.isclose(table["stored_voltage_V"], v)].sort_values("t_pulse_s")
        fit = model.charge_C(group["stored_voltage_V"], group["t_pulse_s"], clamp=True)
        line, = top.plot(group["t_pulse_s"] * 1e9, fit * 1e15, lw=1.2, label=f"V_store={v:.2f}")
        top.plot(group["t_pulse_s"] * 1e9, group["charge_C"] * 1e15, ".", ms=4,
                 color=line.get_color())
        bottom.plot(group["t_pulse_s"] * 1e9, 100 * (fit - group["charge_C"]) / fs,
                    color=line.get_color(), lw=1)
    top.set_ylabel("charge per pulse (fC)")
    bottom.set_ylabel("fit - SPICE (% FS)")
    bottom.set_xlabel("pulse width (ns)")


def _decay(record, table, top, bottom):
    from gcsim.fit.decay import DecayLaw, exponential_law

    nominal = record.value("nominal_temperature")
    if "temperature_C" in table:
        table = table[np.isclose(table["temperature_C"], nominal)]
    law = DecayLaw.from_record(record)
    tau, asym = record.value("time_constant"), record.value("asymptote")
    for v0 in np.unique(table["initial_voltage_V"]):
        group = table[np.isclose(table["initial_voltage_V"], v0)].sort_values("time_s")
        t = group["time_s"].to_numpy()
        fit = law.stored_voltage_V(group["initial_voltage_V"], t, clamp=True)
        line, = top.plot(t * 1e3, fit, lw=1.2, label=f"V0={v0:.2f}")
        top.plot(t * 1e3, group["stored_voltage_V"], ".", ms=3, color=line.get_color())
        top.plot(t * 1e3, exponential_law(v0, t, asym, tau), ":", lw=1, color=line.get_color())
        bottom.plot(t * 1e3, 1e3 * (fit - group["stored_voltage_V"]), color=line.get_color(),
                    lw=1)
    top.set_ylabel(f"stored voltage (V) at {nominal:g} °C\n(dotted: simulator's exponential)")
    bottom.set_ylabel("law - SPICE (mV)")
    bottom.set_xlabel("time (ms)")


def _sense_amp(record, table, top, bottom):
    from gcsim.fit.periphery import SenseAmp

    model = SenseAmp.from_record(record)
    data = table.sort_values("charge_in_C")
    q = data["charge_in_C"].to_numpy()
    fit = model.output_V(q, clamp=True)
    top.plot(q * 1e12, data["v_out_V"], ".", ms=4, label="SPICE")
    top.plot(q * 1e12, fit, lw=1.2, label="fit (linear, clipped)")
    for name in ("linear_range_low", "linear_range_high"):
        top.axvline(record.value(name) * 1e12, color="grey", ls=":", lw=1)
    bottom.plot(q * 1e12, 1e3 * (fit - data["v_out_V"]), ".-", lw=1, ms=3)
    top.set_ylabel("readout output (V)")
    bottom.set_ylabel("fit - SPICE (mV)")
    bottom.set_xlabel("input charge (pC)")


def _charge_to_pulse(record, table, top, bottom):
    from gcsim.fit.periphery import hard_sigmoid

    data = table.sort_values("charge_in_C")
    q = data["charge_in_C"].to_numpy()
    threshold = record.parameters.get("threshold", {}).get("value")
    fit = hard_sigmoid(q, record.value("slope"), record.value("offset"), record.value("t_max"),
                       threshold)
    top.plot(q * 1e12, data["pulse_width_s"] * 1e9, ".", ms=4, label="SPICE")
    top.plot(q * 1e12, fit * 1e9, lw=1.2, label="HardSigmoid fit")
    bottom.plot(q * 1e12, 1e12 * (fit - data["pulse_width_s"]), ".-", lw=1, ms=3)
    top.set_ylabel("pulse width (ns)")
    bottom.set_ylabel("fit - SPICE (ps)")
    bottom.set_xlabel("input charge (pC)")


def _signed_converter(record, table, top, bottom):
    data = table.sort_values("charge_in_C")
    q = data["charge_in_C"].to_numpy()
    slope, offset, t_max = (record.value("slope"), record.parameters["pulse_offset"]["value"],
                            record.value("t_max"))
    fit = np.clip(slope * np.abs(q) + offset, 0, t_max)
    top.plot(q * 1e15, data["pulse_width_s"] * 1e9, ".", ms=4, label="SPICE pulse")
    top.plot(q * 1e15, fit * 1e9, lw=1.2, label="fit")
    if "count" in data:
        ax = top.twinx()
        ax.step(q * 1e15, data["count"], where="mid", color="C2", lw=1)
        ax.set_ylabel("count", color="C2")
    bottom.plot(q * 1e15, 1e12 * (fit - data["pulse_width_s"]), ".-", lw=1, ms=3)
    top.set_ylabel("pulse width (ns)")
    bottom.set_ylabel("fit - SPICE (ps)")
    bottom.set_xlabel("input charge (fC)")


def _mismatch(record, table, top, bottom):
    detail = record.extra["per_stored_voltage"]
    v = np.array(detail["stored_voltage_V"])
    mean = np.array(detail["mean_current_A"])
    sigma = np.array(detail["sigma_current_A"])
    top.plot(v, mean * 1e6, lw=1.2, label="mean over runs")
    top.fill_between(v, (mean - 3 * sigma) * 1e6, (mean + 3 * sigma) * 1e6, alpha=0.3,
                     label="±3σ")
    bottom.plot(v, 100 * sigma / np.abs(mean).max(), lw=1.2)
    top.set_ylabel("cell current (µA)")
    bottom.set_ylabel("σ (% FS)")
    bottom.set_xlabel("stored voltage (V)")


def _write(record, table, top, bottom):
    for target in _subset(table["target_voltage_V"], 8):
        group = table[np.isclose(table["target_voltage_V"], target)].sort_values("t_write_s")
        line, = top.plot(group["t_write_s"] * 1e9, group["stored_voltage_V"], ".-", lw=1, ms=3,
                         label=f"target {target:.2f} V")
        bottom.plot(group["t_write_s"] * 1e9,
                    1e3 * (group["stored_voltage_V"] - group["target_voltage_V"]),
                    color=line.get_color(), lw=1)
    top.axvline(record.value("write_time") * 1e9, color="grey", ls=":")
    top.set_ylabel("stored voltage after the write (V)")
    bottom.set_ylabel("stored - target (mV)")
    bottom.set_xlabel("write pulse width (ns)")


def _cell_conductance(record, table, top, bottom):
    v_mid = record.value("v_mid")
    for name, label in (("on", "read pulse"), ("off", "at rest")):
        curve = record.extra["curves"][name]
        x = np.asarray(curve["x_V"])
        g = np.asarray(curve["conductance_S"])
        fit = np.polynomial.polynomial.polyval(x, record.value(f"{name}_coefficients"))
        line, = top.plot(x + v_mid, fit * 1e6, lw=1.2, label=f"fit, {label}")
        top.plot(x + v_mid, g * 1e6, ".", ms=4, color=line.get_color())
        bottom.plot(x + v_mid, 100 * (fit - g) / np.abs(g).max(), color=line.get_color(), lw=1)
    top.set_ylabel("conductance -dI/dV_bl (µS)")
    bottom.set_ylabel("fit - SPICE (% FS)")
    bottom.set_xlabel("stored voltage (V)")


def _readout_loading(record, table, top, bottom):
    coefficients = [record.value(n) for n in ("offset", "charge_coefficient",
                                              "current_coefficient")]
    for t_int, group in table.groupby("t_int_s"):
        group = group.sort_values("charge_in_C")
        design = np.stack([group["integration_window_s"], group["charge_time_integral_Cs"],
                           group["charge_in_C"]], axis=1)
        window = group["integration_window_s"].to_numpy()
        measured = group["bitline_deviation_integral_Vs"].to_numpy() / window
        fit = design @ np.asarray(coefficients) / window
        q = group["charge_in_C"] * 1e12
        line, = top.plot(q, fit * 1e3, lw=1.2, label=f"fit, t_int {t_int * 1e9:.3g} ns")
        top.plot(q, measured * 1e3, ".", ms=4, color=line.get_color())
        bottom.plot(q, (fit - measured) * 1e3, color=line.get_color(), lw=1)
    top.set_ylabel("mean bitline deviation (mV)")
    bottom.set_ylabel("fit - SPICE (mV)")
    bottom.set_xlabel("charge integrated (pC)")


def _read_disturb(record, table, top, bottom):
    levels = np.asarray(record.value("disturb_levels"))
    for width, group in table[table["t_pulse_s"] > 0].groupby("t_pulse_s"):
        group = group.sort_values("stored_voltage_V")
        top.plot(group["stored_voltage_V"], group["disturb_V"] / group["reads"] * 1e6, ".-",
                 ms=4, lw=0.8, label=f"SPICE, {width * 1e9:.3g} ns pulses")
    top.plot(levels, np.asarray(record.value("disturb_per_read")) * 1e6, "k-", lw=1.5,
             label="fit: mean over widths")
    top.set_ylabel("shift per read (µV)")
    for width, group in table[table["t_pulse_s"] > 0].groupby("t_pulse_s"):
        group = group.sort_values("stored_voltage_V")
        fit = np.interp(group["stored_voltage_V"], levels, record.value("disturb_per_read"))
        bottom.plot(group["stored_voltage_V"],
                    (fit - group["disturb_V"] / group["reads"]) * 1e6, lw=1)
    bottom.set_ylabel("fit - SPICE (µV)")
    bottom.set_xlabel("stored voltage (V)")


DRAW = {"write": _write, "read_disturb": _read_disturb, "nonlinearity": _nonlinearity, "charge_per_pulse": _charge_per_pulse, "decay": _decay,
        "sense_amp": _sense_amp, "charge_to_pulse": _charge_to_pulse,
        "signed_converter": _signed_converter, "mismatch": _mismatch,
        "cell_conductance": _cell_conductance, "readout_loading": _readout_loading}
