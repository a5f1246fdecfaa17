"""Mismatch fit: how Monte Carlo runs spread the cell current, condensed into the two per-cell
parameters the array simulator draws: a relative current gain and a stored-voltage shift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcsim.fit.numerics import FitError, solve_linear
from gcsim.fit.schema import FitRecord, param


def fit_mismatch(table: pd.DataFrame, v_in_V: float | None = None,
                 readout_table: pd.DataFrame | None = None) -> FitRecord:
    """Per Monte Carlo run, fit I_run(V) = g I_nom(V + s) around the runs' mean curve I_nom,
    then report the spread of g and s (and of the current itself, per stored voltage).

    `readout_table` (optional): a sense-amplifier Monte Carlo table (mc_run, charge_in_C,
    v_out_V); its output at zero charge gives the readout offset's spread.
    """
    data = table
    if "v_in_V" in data and v_in_V is None:
        v_in_V = float(data["v_in_V"].max())
    if "v_in_V" in data:
        data = data[np.isclose(data["v_in_V"], v_in_V, atol=1e-9)]
    runs = np.unique(data["mc_run"])
    if runs.size < 3:
        raise FitError(f"the mismatch fit needs at least 3 Monte Carlo runs, got {runs.size}")
    surface = data.pivot_table(index="mc_run", columns="stored_voltage_V", values="i_out_A")
    if surface.isna().any().any():
        raise FitError("every Monte Carlo run must cover the same stored voltages")
    stored = surface.columns.to_numpy(float)
    currents = surface.to_numpy(float)
    nominal = currents.mean(axis=0)
    slope = np.gradient(nominal, stored)
    gains, shifts, residuals = [], [], []
    design = np.stack([nominal, slope], axis=1)
    for run_current in currents:
        gain_minus_one, shift = solve_linear(design, run_current - nominal)
        gains.append(1.0 + gain_minus_one)
        shifts.append(shift)
        residuals.append(run_current - nominal - design @ [gain_minus_one, shift])
    full_scale = float(np.abs(nominal).max())
    sigma_current = currents.std(axis=0, ddof=1)
    gains, shifts = np.array(gains), np.array(shifts)
    parameters = {
        "current_sigma_rel": param(float(gains.std(ddof=1)), "1",
                                   "sigma of the per-cell current gain g"),
        "stored_voltage_shift_sigma": param(float(shifts.std(ddof=1)), "V",
                                            "sigma of the per-cell shift s in I(V + s)"),
        # A sample that conducts more also tends to shift one way (on builtin 0.44): the
        # simulator draws the two jointly.
        "gain_shift_correlation": param(float(np.corrcoef(gains, shifts)[0, 1]), "1",
                                        "correlation of g and s across the samples"),
        "current_sigma_max": param(float(sigma_current.max()), "A"),
        "runs": param(int(runs.size), "1"),
    }
    metrics = {
        "current_sigma_pct_fs_max": 100.0 * float(sigma_current.max()) / full_scale,
        "model_residual_rms_pct_fs": 100.0 * float(np.sqrt(np.mean(np.square(residuals))))
        / full_scale,
        "gain_mean": float(gains.mean()),
        "shift_mean_V": float(shifts.mean()),
    }
    if readout_table is not None:
        zero = readout_table.loc[readout_table.groupby("mc_run")["charge_in_C"]
                                 .apply(lambda c: c.abs().idxmin())]
        offsets = zero["v_out_V"].to_numpy(float)
        parameters["readout_offset_sigma"] = param(float(offsets.std(ddof=1)), "V",
                                                   "sense-amplifier output at zero charge")
    return FitRecord(
        kind="mismatch",
        description="Per-cell mismatch: I_cell(V) = g I(V + s), g ~ N(1, current_sigma_rel), "
                    "s ~ N(0, stored_voltage_shift_sigma), drawn jointly with correlation "
                    "gain_shift_correlation",
        parameters=parameters,
        valid_range={"stored_voltage_V": [float(stored.min()), float(stored.max())]},
        metrics=metrics,
        provenance={},
        extra={"per_stored_voltage": {"stored_voltage_V": stored.tolist(),
                                      "mean_current_A": nominal.tolist(),
                                      "sigma_current_A": sigma_current.tolist()}},
    )
