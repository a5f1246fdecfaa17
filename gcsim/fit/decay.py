"""Retention fit: how the stored voltage relaxes once the write device is off.

The builtin cell leaks mostly by gate tunnelling, whose current grows roughly exponentially with
the voltage across the oxide, so the decay is fast from the rails and slow near the asymptote.
A leak I ~ sinh((V - V_inf) / V_s) integrates in closed form:

    V(t) = V_inf + 2 V_s artanh( tanh((V_0 - V_inf) / (2 V_s)) exp(-t / tau) )

which is an exponential with time constant tau for small deviations. The array simulator needs
an exponential in age (its decay must factor per token), so the fit also matches one over the
ages an attention window spans, directly to the measured curves: one time constant, and an
asymptote per written level,

    V(t) = A(V_0) + (V_0 - A(V_0)) exp(-t / tau),

which follows the sinh law's level-dependent rate (fast from the rails, slow near the middle)
and still factors per token, because A(V_0) is a property of each cell, fixed when it is
written. It is fitted at every swept temperature, so the simulator can take a temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from gcsim.fit.numerics import FitError, error_metrics
from gcsim.fit.schema import FitRecord, check_range, param

BOLTZMANN_EV_PER_K = 8.617333262e-5


def sinh_law(initial_V, time_s, asymptote_V, voltage_scale_V, time_constant_s):
    ratio = np.tanh((np.asarray(initial_V) - asymptote_V) / (2.0 * voltage_scale_V))
    return asymptote_V + 2.0 * voltage_scale_V * np.arctanh(
        ratio * np.exp(-np.asarray(time_s) / time_constant_s))


def exponential_law(initial_V, time_s, asymptote_V, time_constant_s):
    return asymptote_V + (np.asarray(initial_V) - asymptote_V) * np.exp(
        -np.asarray(time_s) / time_constant_s)


def _fit_sinh(initial, time, voltage):
    guess_tau = max(float(time.max()) / 4.0, 1e-12)
    result = least_squares(
        lambda p: sinh_law(initial, time, *p) - voltage,
        x0=[float(np.median(voltage)), 0.1, guess_tau],
        bounds=([voltage.min() - 1.0, 1e-3, 1e-15], [voltage.max() + 1.0, 10.0, 1e3]),
        x_scale=[0.1, 0.1, guess_tau],
    )
    if not result.success:
        raise FitError(f"decay fit did not converge: {result.message}")
    return result.x


def _fit_exponential(initial, time, voltage, asymptote_guess, tau_guess):
    result = least_squares(
        lambda p: exponential_law(initial, time, *p) - voltage,
        x0=[float(np.clip(asymptote_guess, voltage.min() - 1.0, voltage.max() + 1.0)),
            float(np.clip(tau_guess, 1e-15, 1e3))],
        bounds=([voltage.min() - 1.0, 1e-15], [voltage.max() + 1.0, 1e3]),
        x_scale=[0.1, tau_guess],
    )
    return result.x


def _fit_window(initial, time, voltage, asymptote_bounds_V):
    """The simulator's law over the window: one tau, one asymptote per written level (bounded
    to a band around the stored range: over a short window a nearly straight drift would
    otherwise push an asymptote and tau to infinity together). Returns (tau, levels, A)."""
    levels, level_of = np.unique(initial, return_inverse=True)
    drift = voltage - initial
    rate = np.abs(drift).max() / max(float(time.max()), 1e-30)
    span = float(levels.max() - levels.min()) or 1.0
    tau_guess = float(np.clip(span / max(rate, 1e-30), time.max(), 1e3))
    low, high = asymptote_bounds_V

    def residual(p):
        tau, asymptotes = np.exp(p[0]), p[1:]
        a = asymptotes[level_of]
        return a + (initial - a) * np.exp(-time / tau) - voltage

    start = np.clip(np.full(levels.size, levels.mean()), low, high)
    result = least_squares(
        residual, x0=np.r_[np.log(tau_guess), start],
        bounds=(np.r_[np.log(max(float(time[time > 0].min()), 1e-15)), np.full(levels.size, low)],
                np.r_[np.log(1e6), np.full(levels.size, high)]))
    if not result.success:
        raise FitError(f"the window decay fit did not converge: {result.message}")
    return float(np.exp(result.x[0])), levels, result.x[1:]


def level_law(initial_V, time_s, time_constant_s, levels_V, asymptotes_V):
    """V(t) = A(V_0) + (V_0 - A(V_0)) exp(-t / tau), A linear between the fitted levels."""
    initial = np.asarray(initial_V, dtype=float)
    a = np.interp(initial, levels_V, asymptotes_V)
    return a + (initial - a) * np.exp(-np.asarray(time_s) / time_constant_s)


def fit_decay(table: pd.DataFrame, *, age_max_s: float,
              nominal_temperature_C: float = 27.0) -> FitRecord:
    """Fit stored_voltage_V(time_s) curves per temperature_C (optional column)."""
    if "temperature_C" not in table.columns:
        table = table.assign(temperature_C=nominal_temperature_C)
    if age_max_s <= 0:
        raise FitError(f"age_max_s must be positive, got {age_max_s}")
    per_temperature = []
    all_measured, all_predicted = [], []
    for temperature, group in table.groupby("temperature_C"):
        initial = group["initial_voltage_V"].to_numpy(float)
        time = group["time_s"].to_numpy(float)
        voltage = group["stored_voltage_V"].to_numpy(float)
        if np.unique(time).size < 4:
            raise FitError("the decay fit needs at least 4 time samples per curve")
        asymptote, scale, tau = _fit_sinh(initial, time, voltage)
        predicted = sinh_law(initial, time, asymptote, scale, tau)
        all_measured.append(voltage)
        all_predicted.append(predicted)
        # The simulator's exponential: matched to the law over the window's ages, for stored
        # voltages spread over the written range.
        v0 = np.linspace(initial.min(), initial.max(), 37)
        ages = np.linspace(0.0, min(age_max_s, time.max()), 65)
        grid_v0, grid_age = np.meshgrid(v0, ages)
        law_grid = sinh_law(grid_v0, grid_age, asymptote, scale, tau)
        eff_asymptote, eff_tau = _fit_exponential(grid_v0.ravel(), grid_age.ravel(),
                                                  law_grid.ravel(), asymptote, tau)
        window = time <= age_max_s + 1e-15
        eff_metrics = error_metrics(
            voltage[window],
            exponential_law(initial[window], time[window], eff_asymptote, eff_tau), "V",
            full_scale=float(np.abs(initial - asymptote).max()))
        window_tau, levels, level_asymptotes = _fit_window(
            initial[window], time[window], voltage[window],
            (initial.min() - 0.25 * np.ptp(initial), initial.max() + 0.25 * np.ptp(initial)))
        level_metrics = error_metrics(
            voltage[window], level_law(initial[window], time[window], window_tau, levels,
                                       level_asymptotes), "V",
            full_scale=float(np.ptp(initial)) / 2.0)
        global_exp = _fit_exponential(initial, time, voltage, asymptote, tau)
        exp_metrics = error_metrics(voltage, exponential_law(initial, time, *global_exp), "V",
                                    full_scale=float(np.abs(initial - asymptote).max()))
        curves = []
        for v_start, curve in group.groupby("initial_voltage_V"):
            if abs(v_start - asymptote) < 0.02:
                continue  # starts at the asymptote: no time constant to see
            dev = (curve.sort_values("time_s")["stored_voltage_V"].to_numpy() - asymptote)
            times = curve.sort_values("time_s")["time_s"].to_numpy()
            below = np.nonzero(np.abs(dev) <= abs(dev[0]) / np.e)[0]
            curves.append({"initial_voltage_V": float(v_start),
                           "t_1_over_e_s": float(times[below[0]]) if below.size else None})
        per_temperature.append({
            "temperature_C": float(temperature),
            "law": {"asymptote_V": asymptote, "voltage_scale_V": scale,
                    "time_constant_s": tau},
            "law_metrics": error_metrics(voltage, predicted, "V",
                                         full_scale=float(np.abs(initial - asymptote).max())),
            "window_exponential": {"asymptote_V": eff_asymptote, "time_constant_s": eff_tau,
                                   "age_max_s": age_max_s, "metrics": eff_metrics},
            "window_level_law": {"time_constant_s": window_tau,
                                 "levels_V": [float(v) for v in levels],
                                 "asymptotes_V": [float(v) for v in level_asymptotes],
                                 "age_max_s": age_max_s, "metrics": level_metrics},
            "single_exponential": {"asymptote_V": global_exp[0],
                                   "time_constant_s": global_exp[1], "metrics": exp_metrics},
            "t_1_over_e_by_initial_voltage": curves,
        })
    temperatures = [entry["temperature_C"] for entry in per_temperature]
    nominal = min(per_temperature, key=lambda e: abs(e["temperature_C"] - nominal_temperature_C))
    activation = None
    if len(per_temperature) >= 2:
        inverse_kT = 1.0 / (BOLTZMANN_EV_PER_K * (np.array(temperatures) + 273.15))
        log_tau = np.log([e["law"]["time_constant_s"] for e in per_temperature])
        activation = float(np.polyfit(inverse_kT, log_tau, 1)[0])
    initial_all = table["initial_voltage_V"]
    metrics = error_metrics(np.concatenate(all_measured), np.concatenate(all_predicted), "V",
                            full_scale=float(np.abs(initial_all - nominal["law"]["asymptote_V"])
                                             .max()))
    metrics["window_level_law_at_nominal"] = nominal["window_level_law"]["metrics"]
    metrics["window_exponential_at_nominal"] = nominal["window_exponential"]["metrics"]
    metrics["single_exponential_at_nominal"] = nominal["single_exponential"]["metrics"]
    law = nominal["law"]
    window_law = nominal["window_level_law"]
    mid = float(np.mean([initial_all.min(), initial_all.max()]))
    return FitRecord(
        kind="decay",
        description=("Stored-voltage decay: V(t) = V_inf + 2 V_s artanh(tanh((V_0 - V_inf) / "
                     "(2 V_s)) exp(-t / tau)) per temperature; the array simulator uses "
                     "V(t) = A(V_0) + (V_0 - A(V_0)) exp(-t / time_constant), A per written "
                     "level (asymptote_by_level), fitted over ages up to age_max at every "
                     "temperature (extra.per_temperature)."),
        parameters={
            "time_constant": param(window_law["time_constant_s"], "s",
                                   "fitted with a per-level asymptote over ages <= age_max, at "
                                   "the nominal temperature; used by the array simulator"),
            "asymptote": param(float(np.interp(mid, window_law["levels_V"],
                                               window_law["asymptotes_V"])), "V",
                               "asymptote_by_level at mid-range"),
            "asymptote_levels": param(window_law["levels_V"], "V",
                                      "written levels the asymptote is fitted at"),
            "asymptote_by_level": param(window_law["asymptotes_V"], "V",
                                        "asymptote of each written level (linear in between)"),
            "age_max": param(age_max_s, "s"),
            "nominal_temperature": param(nominal["temperature_C"], "degC"),
            "law_time_constant": param(law["time_constant_s"], "s"),
            "law_asymptote": param(law["asymptote_V"], "V"),
            "law_voltage_scale": param(law["voltage_scale_V"], "V"),
            **({"activation_energy": param(activation, "eV", "from ln(tau) against 1/kT")}
               if activation is not None else {}),
        },
        valid_range={"time_s": [float(table["time_s"].min()), float(table["time_s"].max())],
                     "initial_voltage_V": [float(initial_all.min()), float(initial_all.max())],
                     "temperature_C": [min(temperatures), max(temperatures)]},
        metrics=metrics,
        provenance={},
        extra={"per_temperature": per_temperature},
    )


@dataclass(frozen=True)
class DecayLaw:
    """The fitted sinh law at one temperature, with range guards."""

    asymptote_V: float
    voltage_scale_V: float
    time_constant_s: float
    time_range_s: tuple[float, float]
    initial_range_V: tuple[float, float]

    @classmethod
    def from_record(cls, record: FitRecord, temperature_C: float | None = None) -> DecayLaw:
        entries = record.extra.get("per_temperature") or []
        law = {"asymptote_V": record.value("law_asymptote"),
               "voltage_scale_V": record.value("law_voltage_scale"),
               "time_constant_s": record.value("law_time_constant")}
        if temperature_C is not None:
            check_range("temperature_C", temperature_C, record.valid_range["temperature_C"],
                        False)
            match = [e for e in entries if abs(e["temperature_C"] - temperature_C) < 1e-6]
            if not match:
                raise FitError(f"the decay fit has no curve at {temperature_C:g} degC "
                               f"(has {[e['temperature_C'] for e in entries]})")
            law = match[0]["law"]
        return cls(law["asymptote_V"], law["voltage_scale_V"], law["time_constant_s"],
                   tuple(record.valid_range["time_s"]),
                   tuple(record.valid_range["initial_voltage_V"]))

    def stored_voltage_V(self, initial_V, time_s, clamp: bool = False) -> np.ndarray:
        v0 = check_range("initial_voltage_V", initial_V, self.initial_range_V, clamp)
        t = check_range("time_s", time_s, self.time_range_s, clamp)
        return sinh_law(v0, t, self.asymptote_V, self.voltage_scale_V, self.time_constant_s)
