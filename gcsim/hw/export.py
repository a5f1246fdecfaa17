"""A fitted hardware model in the published model's form: the numbers the published PyTorch
training code consumes (cubic cell, decay factor per token, HardSigmoid and output scales), in
its units, what that form cannot express, and the published-form model itself to measure it by.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from gcsim.fit.basis import polynomial_basis
from gcsim.hw.components import ExponentialDecay, HardwareModel, PolynomialCell
from gcsim.hw.constants import MICROAMPERE, PAPER
from gcsim.hw.stages import ChargeToPulse, Readout, SignedConverter

# The published code's stored range is [0, supply] about supply / 2; a design's DAC range maps
# onto it linearly (k_published = PAPER.supply_V * (V - stored_min) / (stored_max - stored_min)).
_PUBLISHED_SPAN_V = PAPER.supply_V


@dataclass(frozen=True)
class PublishedForm:
    """The published-form numbers of a model (`numbers`, JSON-ready), what the form leaves out
    (`not_expressed`, one line each with its size), and the published-form HardwareModel at
    the design's operating point (`model`), to simulate what the published code would."""

    numbers: dict
    not_expressed: tuple[str, ...]
    model: HardwareModel


def published_form(model: HardwareModel, token_period_s: float | None = None,
                   temperature_C: float | None = None, source: str = "") -> PublishedForm:
    """The published form of `model` at a token period (default: its design's) and a
    temperature (default: its decay's nominal one)."""
    point = model.operating_point
    lo, hi = point.stored_min_V, point.stored_max_V
    centre = 0.5 * (lo + hi)
    scale = (hi - lo) / _PUBLISHED_SPAN_V      # volts of the design per published volt
    decay = model.decay if temperature_C is None else model.decay.at_temperature(temperature_C)
    period = token_period_s if token_period_s is not None else point.token_period_s
    if not (period and math.isfinite(period) and period > 0):
        raise ValueError(f"token period must be finite and > 0 s, got {period}")
    unit_C = MICROAMPERE * point.t_max_s        # the published charge unit at this T_max

    # The cell: the fitted current at the read level (with the readout's gain), projected by
    # least squares onto a cubic in the published coordinate over the whole stored range.
    stored = np.linspace(lo, hi, 1001)
    current_uA = (model.readout.gain / MICROAMPERE) * np.polynomial.polynomial.polyval(
        stored - model.cell.v_mid_V, model.cell.power_coefficients_A(model.read_on_V))
    x_published = (stored - centre) / scale
    cubic = np.polynomial.polynomial.polyfit(x_published, current_uA, 3)
    residual = np.polynomial.polynomial.polyval(x_published, cubic) - current_uA
    span = float(np.abs(current_uA).max())
    coefficients = [float(cubic[i]) if j == 0 else 0.0 for i, j in polynomial_basis(3)]

    saturation_units = model.charge_to_pulse.saturation_charge_C / unit_C
    full_scale_units = model.output_converter.full_scale_C / unit_C
    decay_factor = decay.decay_factor(period)
    numbers = {
        "source": source,
        "coefficients": coefficients,
        "coefficient_order": [list(e) for e in polynomial_basis(3)],
        "coefficients_unit": "µA; x = k - 0.45 in the published code's volts, V_in = 0.9",
        "stored_mapping": (f"k_published = {_PUBLISHED_SPAN_V:g} * (V_stored - {lo:g}) / "
                           f"({hi:g} - {lo:g}); q unchanged in [0, 1]"),
        "decay_factor": decay_factor,
        "token_period_s": period,
        "retention_time_constant_s": decay.time_constant_s,
        "temperature_C": decay.temperature_C if temperature_C is None else temperature_C,
        "hardsigmoid_saturation": saturation_units,
        "output_full_scale": full_scale_units,
        "charge_unit_C": unit_C,
        "query_levels": point.query_levels,
        "stored_levels": point.stored_levels,
        "output_levels": point.output_levels,
        "array_size": point.array_size,
        "window": point.window,
        "cubic_error_percent_of_max_current": {
            "rms": float(np.sqrt(np.mean(residual ** 2)) / span * 100),
            "max": float(np.abs(residual).max() / span * 100),
        },
        "published_defaults": {"decay_factor": PAPER.decay_factor,
                               "hardsigmoid_saturation": PAPER.score_saturation_units,
                               "output_full_scale": PAPER.output_full_scale_units},
    }
    lost = _not_expressed(model, decay, decay_factor, centre, unit_C, numbers)
    cell = PolynomialCell(
        coefficients_A=tuple(c * MICROAMPERE / scale ** i
                             for c, (i, _) in zip(coefficients, polynomial_basis(3))),
        v_mid_V=centre)
    published = HardwareModel(
        name="paper",
        label=f"published form of {source or model.label}",
        cell=cell,
        decay=ExponentialDecay(decay.time_constant_s, centre),
        readout=Readout(),
        charge_to_pulse=ChargeToPulse(slope_s_per_C=point.t_max_s / (saturation_units * unit_C),
                                      t_max_s=point.t_max_s),
        output_converter=SignedConverter(full_scale_C=full_scale_units * unit_C,
                                         levels=point.output_levels),
        read_on_V=model.read_on_V,
        default_token_period_s=period,
        operating_point=dataclasses.replace(point, token_period_s=period),
    )
    return PublishedForm(numbers, lost, published)


def _not_expressed(model: HardwareModel, decay: ExponentialDecay, decay_factor: float,
                   centre: float, unit_C: float, numbers: dict) -> tuple[str, ...]:
    """What the published form drops, each with its size in the model's own terms."""
    lost = []
    error = numbers["cubic_error_percent_of_max_current"]
    if model.cell.degree > 3:
        lost.append(f"the fitted order-{model.cell.degree} cell: its cubic projection is off by "
                    f"{error['rms']:.2f} % RMS, {error['max']:.2f} % max of the largest current")
    if decay.asymptote_levels_V is not None:
        offsets = np.asarray(decay.asymptote_by_level_V) - centre
        lost.append(f"per-level decay asymptotes ({offsets.min() * 1e3:+.1f} ... "
                    f"{offsets.max() * 1e3:+.1f} mV from mid-rail; the published decay "
                    "relaxes every cell to mid-rail)")
    elif abs(decay.asymptote_V - centre) > 1e-6:
        lost.append(f"the decay asymptote ({(decay.asymptote_V - centre) * 1e3:+.1f} mV from "
                    "mid-rail)")
    if abs(model.operating_point.mid_rail_V - centre) > 1e-9:
        lost.append(f"a mid-rail off the DAC range's centre "
                    f"({(model.operating_point.mid_rail_V - centre) * 1e3:+.1f} mV)")
    if model.pulse_edge_time_s:
        lost.append(f"the pulse edges' charge ({model.pulse_edge_time_s * 1e12:.0f} ps of extra "
                    f"width per pulse, {model.pulse_edge_time_s / model.charge_to_pulse.t_max_s:.2%}"
                    " of T_max)")
    if model.readout.offset_C:
        lost.append(f"the readout's offset ({model.readout.offset_C / unit_C:+.3g} units)")
    if model.readout.saturation_C is not None:
        lost.append(f"the readout's saturation at "
                    f"±{model.readout.saturation_C / unit_C:.4g} units")
    if model.charge_to_pulse.offset_C:
        lost.append(f"the HardSigmoid converter's offset "
                    f"({model.charge_to_pulse.offset_C / unit_C:+.3g} units)")
    if model.charge_to_pulse.threshold_C is not None:
        lost.append(f"the HardSigmoid converter's threshold "
                    f"({model.charge_to_pulse.threshold_C / unit_C:+.3g} units)")
    if model.output_converter.charge_offset_C:
        lost.append(f"the output converter's offset "
                    f"({model.output_converter.charge_offset_C / unit_C:+.3g} units)")
    if model.loading is not None:
        lost.append("readout loading (the integrators' moving virtual ground)")
    if model.write_error is not None:
        levels = np.asarray(model.write_error.values)
        lost.append(f"the write error ({levels.min() * 1e3:+.1f} ... {levels.max() * 1e3:+.1f} mV "
                    "by level)")
    if model.read_disturb is not None:
        lost.append("read disturb")
    if model.mismatch is not None:
        lost.append("per-cell mismatch")
    if model.ring_buffer:
        lost.append("the ring buffer (one conversion per physical array; the published model "
                    "converts each aligned sub-tile)")
    return tuple(lost)
