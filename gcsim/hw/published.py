"""The published behavioural model (MISSION.md; Leroux et al. 2025) as one named object, `PAPER`,
and the `paper`, `linear` and published-coefficient `fitted` models built from it."""

from __future__ import annotations

import dataclasses

from gcsim.hw.constants import MICROAMPERE, PAPER, PAPER_OPERATING_POINT, PublishedConstants
from gcsim.hw.components import (
    ExponentialDecay,
    HardwareModel,
    PolynomialCell,
    linear_gain_A_per_V,
)
from gcsim.hw.stages import ChargeToPulse, Readout, SignedConverter

# The published constants live in gcsim.hw.constants (the components default to their
# operating point); they are re-exported here, the published model's home.
__all__ = ["MICROAMPERE", "PAPER", "PAPER_OPERATING_POINT", "PublishedConstants",
           "at_operating_point", "fitted_model_from_paper_coefficients", "linear_model",
           "paper_cell", "paper_model", "published_readout_chain"]


def published_readout_chain(constants: PublishedConstants = PAPER):
    unit = constants.charge_unit_C
    readout = Readout()
    c2p = ChargeToPulse(
        slope_s_per_C=constants.pulse_max_s / (constants.score_saturation_units * unit),
        t_max_s=constants.pulse_max_s,
    )
    out = SignedConverter(
        full_scale_C=constants.output_full_scale_units * unit, levels=constants.output_levels
    )
    return readout, c2p, out


def paper_cell(constants: PublishedConstants = PAPER) -> PolynomialCell:
    return PolynomialCell(
        coefficients_A=tuple(c * MICROAMPERE for c in constants.cell_coefficients_uA),
        v_mid_V=constants.mid_rail_V,
    )


def paper_model(constants: PublishedConstants = PAPER) -> HardwareModel:
    """The published behavioural model (MISSION.md), in SI units."""
    readout, c2p, out = published_readout_chain(constants)
    return HardwareModel(
        name="paper",
        label="paper (published behavioural model)",
        cell=paper_cell(constants),
        decay=ExponentialDecay(constants.retention_time_constant_s, constants.mid_rail_V),
        readout=readout,
        charge_to_pulse=c2p,
        output_converter=out,
        read_on_V=constants.read_on_V,
        default_decay_factor=constants.decay_factor,
        default_token_period_s=constants.token_period_s,
        operating_point=constants.operating_point,
    )


def linear_model(constants: PublishedConstants = PAPER) -> HardwareModel:
    """Linear hardware: I = g * (V_store - mid-rail), same decay, HardSigmoid and converters as
    `paper`.

    g is the least-squares linear fit of the published cell curve at its read-on level over the full
    stored range (about 19.21 µA/V), so S and the outputs have the paper model's scale; the
    authors' own linear model used 19.3 µA/V. (The Taylor term at x = 0 alone, 13.6 µA/V, would
    ignore the strong cubic term and understate the scale.)
    """
    paper = paper_model(constants)
    gain = linear_gain_A_per_V(paper.cell, constants.read_on_V, constants.mid_rail_V)
    # In the published basis, the only term is (i, j) = (1, 0): I = C_10 * x.
    coefficients = (0.0, 0.0, 0.0, 0.0, gain, 0.0, 0.0, 0.0, 0.0, 0.0)
    return dataclasses.replace(
        paper,
        name="linear",
        label=(f"linear (I = {gain / MICROAMPERE:.2f} µA/V x "
               f"(V_store - {constants.mid_rail_V:g} V))"),
        cell=PolynomialCell(coefficients_A=coefficients, v_mid_V=constants.mid_rail_V),
        notes={"linear_gain_A_per_V": gain},
    )


def fitted_model_from_paper_coefficients(constants: PublishedConstants = PAPER) -> HardwareModel:
    """A fitted-mode model whose parameters are the published ones (no fits bundle).

    The decay comes from the time constant and token period, as it would from a bundle, and
    the window is read per physical array of the ring buffer, as fitted mode does.
    """
    return dataclasses.replace(
        paper_model(constants),
        name="fitted",
        label="fitted (paper coefficients; no fits bundle)",
        default_decay_factor=None,
        ring_buffer=True,
    )


def at_operating_point(model: HardwareModel, point) -> HardwareModel:
    """A published-law model (paper, linear) moved to another operating point: its cell and
    decay centred on the point's mid-rail and read at its read-on level, the same law about it.
    The model itself when it is already there."""
    if model.operating_point == point:
        return model
    return dataclasses.replace(
        model,
        cell=dataclasses.replace(model.cell, v_mid_V=point.mid_rail_V),
        decay=dataclasses.replace(model.decay, asymptote_V=point.mid_rail_V),
        read_on_V=point.read_on_V,
        default_token_period_s=point.token_period_s,
        operating_point=point,
    )
