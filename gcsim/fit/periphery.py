"""Periphery fits: the column readout (gain, offset, linear range, saturation, residual
nonlinearity), the HardSigmoid charge-to-pulse converter and the signed output converter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gcsim.core.quantize import quantize
from gcsim.fit.numerics import FitError, error_metrics, solve_linear
from gcsim.fit.schema import FitRecord, check_range, param


def _line(q, v):
    slope, intercept = solve_linear(np.stack([q, np.ones_like(q)], axis=1), v)
    return float(slope), float(intercept)


def _idle(data: pd.DataFrame) -> dict:
    """What a periphery testbench draws outside its energy window (the energy model charges it
    for the rest of the token period): its supply and reference power at rest, and how long
    its energy_J integrates. Each is the same at every point, so the median only guards
    against a stray one."""
    out = {}
    for column, name, unit, note in (
            ("energy_window_s", "energy_window", "s", "how long energy_J integrates"),
            ("idle_power_W", "idle_power", "W", "supply power at rest (reset closed, no "
             "input), drawn whenever the circuit is not in its energy window"),
            ("reference_power_W", "reference_power", "W", "bias/reference supply power, "
             "shared by an array's columns, drawn all the time")):
        if column in data:
            out[name] = param(float(np.median(data[column].to_numpy(float))), unit, note)
    return out


def fit_sense_amp(table: pd.DataFrame, linearity_tolerance: float = 0.01) -> FitRecord:
    """v_out_V against charge_in_C: the straight part around zero charge and where it ends.

    The linear range is the contiguous charge interval around zero where the output stays
    within `linearity_tolerance` x output swing of the straight line fitted there.
    """
    data = table.sort_values("charge_in_C")
    q = data["charge_in_C"].to_numpy(float)
    v = data["v_out_V"].to_numpy(float)
    if q.size < 5:
        raise FitError("the sense-amplifier fit needs at least 5 points")
    if not (q.min() < 0 < q.max()):
        raise FitError("the sense-amplifier sweep must span negative and positive charge")
    low, high = float(v.min()), float(v.max())
    swing = high - low
    if swing <= 0:
        raise FitError("the sense-amplifier output does not change with charge")
    middle = np.abs(v - (low + high) / 2) <= swing / 4
    if middle.sum() < 2:
        middle = np.argsort(np.abs(q))[:3]
    slope, intercept = _line(q[middle], v[middle])
    zero = int(np.argmin(np.abs(q)))
    for _ in range(3):  # grow the linear region, refit on it, repeat until it settles
        inside = np.abs(v - (slope * q + intercept)) <= linearity_tolerance * swing
        lo_i = hi_i = zero
        while lo_i - 1 >= 0 and inside[lo_i - 1]:
            lo_i -= 1
        while hi_i + 1 < q.size and inside[hi_i + 1]:
            hi_i += 1
        if hi_i - lo_i < 2:
            raise FitError("no linear region around zero charge")
        slope, intercept = _line(q[lo_i:hi_i + 1], v[lo_i:hi_i + 1])
    linear = slice(lo_i, hi_i + 1)
    residual = v[linear] - (slope * q[linear] + intercept)
    linear_span = abs(slope) * (q[hi_i] - q[lo_i])
    # Saturation in the charge domain: where the line meets the output rails.
    rail_charges = sorted(((high - intercept) / slope, (low - intercept) / slope))
    metrics = error_metrics(v[linear], slope * q[linear] + intercept, "V",
                            full_scale=linear_span / 2)
    metrics["integral_nonlinearity_pct"] = 100.0 * float(np.abs(residual).max()) / linear_span
    parameters = {
        "gain": param(slope, "V/C", "d v_out / d charge in the linear range"),
        "offset": param(intercept, "V", "output at zero input charge"),
        "linear_range_low": param(q[lo_i], "C"),
        "linear_range_high": param(q[hi_i], "C"),
        "saturation_low": param(low, "V"),
        "saturation_high": param(high, "V"),
        "saturation_charge_low": param(rail_charges[0], "C"),
        "saturation_charge_high": param(rail_charges[1], "C"),
        "linearity_tolerance": param(linearity_tolerance, "1"),
    }
    if "bitline_excursion_V" in data:
        excursion = data["bitline_excursion_V"].to_numpy(float)
        parameters["bitline_excursion_linear_range_max"] = param(excursion[linear].max(), "V")
        parameters["bitline_excursion_max"] = param(excursion.max(), "V")
    if "energy_J" in data:
        energy = data["energy_J"].to_numpy(float)
        # The OTA's output sources a charge the column sinks (the read PMOSes) from VDD, and
        # absorbs one it sources: the energy is a broken line in the charge, not one number
        # (a median over the range is the zero-charge energy and drops that part).
        ql = q[linear]
        base, sunk, sourced = solve_linear(
            np.stack([np.ones_like(ql), np.maximum(-ql, 0.0), np.maximum(ql, 0.0)], axis=1),
            energy[linear])
        parameters["energy_per_integration"] = param(
            float(base), "J", "at zero charge: E = this + energy_per_sunk_charge * max(-Q, 0) "
            "+ energy_per_sourced_charge * max(Q, 0) over the linear range")
        parameters["energy_per_sunk_charge"] = param(
            float(sunk), "J/C", "extra energy per coulomb the column sinks (Q < 0)")
        parameters["energy_per_sourced_charge"] = param(
            float(sourced), "J/C", "extra energy per coulomb the column sources (Q > 0)")
        parameters["energy_per_integration_max"] = param(energy.max(), "J")
    parameters.update(_idle(data))
    return FitRecord(
        kind="sense_amp",
        description="Charge-integrating readout: v_out = offset + gain * charge inside "
                    "[linear_range_low, linear_range_high], clipped to the saturation levels",
        parameters=parameters,
        valid_range={"charge_in_C": [float(q.min()), float(q.max())]},
        metrics=metrics,
        provenance={},
    )


@dataclass(frozen=True)
class SenseAmp:
    gain_V_per_C: float
    offset_V: float
    saturation_V: tuple[float, float]
    charge_range_C: tuple[float, float]

    @classmethod
    def from_record(cls, record: FitRecord) -> SenseAmp:
        return cls(record.value("gain"), record.value("offset"),
                   (record.value("saturation_low"), record.value("saturation_high")),
                   tuple(record.valid_range["charge_in_C"]))

    def output_V(self, charge_C, clamp: bool = False) -> np.ndarray:
        q = check_range("charge_in_C", charge_C, self.charge_range_C, clamp)
        return np.clip(self.offset_V + self.gain_V_per_C * q, *self.saturation_V)


def hard_sigmoid(charge_C, slope_s_per_C, offset_C, t_max_s, threshold_C=None):
    charge_C = np.asarray(charge_C, dtype=np.float64)
    width = np.clip(slope_s_per_C * (charge_C - offset_C), 0.0, t_max_s)
    if threshold_C is not None:
        width[charge_C < threshold_C] = 0.0
    return width


def fit_charge_to_pulse(table: pd.DataFrame, zero_fraction: float = 0.01,
                        plateau_fraction: float = 0.99) -> FitRecord:
    """pulse_width_s against charge_in_C: the HardSigmoid's slope, offset, T_max (and S_sat).

    Points are sorted into the three regions by width: below `zero_fraction` x T_max is the
    zero region, above `plateau_fraction` x T_max is saturation, the rest is the ramp.
    """
    data = table.sort_values("charge_in_C")
    q = data["charge_in_C"].to_numpy(float)
    width = data["pulse_width_s"].to_numpy(float)
    top = float(width.max())
    if top <= 0:
        raise FitError("no pulse ever starts: every width is zero")
    plateau = width >= plateau_fraction * top
    t_max = float(np.median(width[plateau]))
    ramp = (width > zero_fraction * t_max) & (width < plateau_fraction * t_max)
    if ramp.sum() < 2:
        raise FitError("fewer than two points on the HardSigmoid's ramp; sweep finer charge")
    slope, intercept = _line(q[ramp], width[ramp])
    if slope <= 0:
        raise FitError("pulse width does not grow with charge")
    offset = -intercept / slope
    # A comparator needs some overdrive before it fires at all: below that charge the pulse is
    # zero although the ramp's line already predicts a width. Model it as a threshold.
    started = np.nonzero(width > zero_fraction * t_max)[0]
    threshold = None
    if started.size and started[0] > 0:
        last_zero, first_on = q[started[0] - 1], q[started[0]]
        if slope * (last_zero - offset) > zero_fraction * t_max:
            threshold = float(0.5 * (last_zero + first_on))
    predicted = hard_sigmoid(q, slope, offset, t_max, threshold)
    metrics = error_metrics(width, predicted, "s", full_scale=t_max)
    metrics["regions"] = {"zero": int((width <= zero_fraction * t_max).sum()),
                          "ramp": int(ramp.sum()), "saturated": int(plateau.sum())}
    saturation = offset + t_max / slope
    parameters = {
        "slope": param(slope, "s/C"),
        "offset": param(offset, "C", "charge at which the pulse starts"),
        "t_max": param(t_max, "s"),
        "saturation_charge": param(saturation, "C", "S_sat: charge at which the width reaches "
                                   "t_max"),
    }
    if threshold is not None:
        parameters["threshold"] = param(threshold, "C", "no pulse below this charge (the "
                                        "comparator's minimum overdrive)")
    if "comparator_delay_s" in data and ramp.any():
        # Only a pulse that ends inside the window has a comparator delay to measure.
        delays = data["comparator_delay_s"].to_numpy(float)[ramp]
        parameters["comparator_delay"] = param(float(np.median(delays)), "s",
                                               "median over the ramp region")
    if "energy_J" in data:
        parameters["energy_per_conversion"] = param(float(np.median(data["energy_J"])), "J",
                                                    "median over the sweep")
        parameters["energy_per_conversion_max"] = param(float(data["energy_J"].max()), "J")
    parameters.update(_idle(data))
    return FitRecord(
        kind="charge_to_pulse",
        description="HardSigmoid: width = clip(slope * (charge - offset), 0, t_max)",
        parameters=parameters,
        valid_range={"charge_in_C": [float(q.min()), float(q.max())]},
        metrics=metrics,
        provenance={},
    )


def fit_signed_converter(table: pd.DataFrame, levels: int = 32) -> FitRecord:
    """Signed output converter: sign x |charge| -> pulse -> count. Fits the charge that maps to
    full scale (+-1) from the pulse widths, then checks the counts against the quantiser."""
    data = table.sort_values("charge_in_C")
    q = data["charge_in_C"].to_numpy(float)
    width = data["pulse_width_s"].to_numpy(float)
    magnitude = np.abs(q)
    t_max = float(width.max())
    ramp = (width > 0.01 * t_max) & (width < 0.99 * t_max)
    if ramp.sum() < 2:
        raise FitError("fewer than two points on the signed converter's ramp")
    positive, negative = ramp & (q > 0), ramp & (q < 0)
    if positive.sum() >= 2 and negative.sum() >= 2:
        # width = slope * |q - charge_offset| + intercept, one slope for both signs: the
        # integrator's offset at this corner shifts both ramps, which a fit of |q| averages
        # away (an ss-corner converter then reads 6 % of full scale high on every column).
        on = positive | negative
        side = np.where(q > 0, 1.0, -1.0)[on]
        slope, intercept, shift = solve_linear(
            np.stack([side * q[on], np.ones(on.sum()), -side], axis=1), width[on])
        slope, intercept = float(slope), float(intercept)
        charge_offset = float(shift) / slope
    else:
        slope, intercept = _line(magnitude[ramp], width[ramp])
        charge_offset = 0.0
    full_scale = (t_max - intercept) / slope
    metrics = error_metrics(
        width, np.clip(slope * np.abs(q - charge_offset) + intercept, 0, t_max), "s",
        full_scale=t_max)
    parameters = {
        "full_scale": param(full_scale, "C", "charge that maps to an output of +-1"),
        "slope": param(slope, "s/C"),
        "pulse_offset": param(intercept, "s"),
        "charge_offset": param(charge_offset, "C", "input charge that reads as zero (the "
                               "readout's offset)"),
        "t_max": param(t_max, "s"),
        "levels": param(levels, "1"),
    }
    if "count" in data:
        counts = data["count"].to_numpy(float)
        distinct = np.unique(counts)
        sign = np.sign(q)
        ideal = quantize(np.clip((q - charge_offset) / full_scale, -1, 1), -1.0, 1.0, levels)
        span = max(abs(distinct).max(), 1.0)
        measured = counts / span
        metrics["count"] = {"distinct_values": int(distinct.size),
                            "max_abs_error_lsb": float(np.abs(measured - ideal).max()
                                                       / (2.0 / (levels - 1))),
                            "sign_errors": int(np.sum((np.sign(counts) != sign) & (counts != 0)))}
        parameters["count_full_scale"] = param(span, "1", "count that means +-1")
    if "energy_J" in data:
        parameters["energy_per_conversion"] = param(float(np.median(data["energy_J"])), "J")
    parameters.update(_idle(data))
    return FitRecord(
        kind="signed_converter",
        description="Signed converter: output = quantise(clip((charge - charge_offset) / "
                    "full_scale, -1, 1), levels)",
        parameters=parameters,
        valid_range={"charge_in_C": [float(q.min()), float(q.max())]},
        metrics=metrics,
        provenance={},
    )
