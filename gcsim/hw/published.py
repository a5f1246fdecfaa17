"""The published behavioural model (MISSION.md; Leroux et al. 2025) as one named object, `PAPER`,
and the `paper`, `linear` and published-coefficient `fitted` models built from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gcsim.hw.components import (
    ExponentialDecay,
    HardwareModel,
    PolynomialCell,
    linear_gain_A_per_V,
)
from gcsim.hw.stages import ChargeToPulse, Readout, SignedConverter

MICROAMPERE = 1e-6


@dataclass(frozen=True)
class PublishedConstants:
    """Every number of the published behavioural model (MISSION.md, Leroux et al. 2025), once.

    The cell polynomial is in µA, with x = V_store - 0.45 V and V_in in volts. Charges of the
    published model are in units of 1 µA x T_max (here 15 fC).
    """

    cell_coefficients_uA: tuple[float, ...] = (
        0.17393044, 0.15653739, 0.14088365, 0.12679529, 5.51975209,
        4.96777688, 4.4709992, -1.44776001, -1.30298401, 46.05483778,
    )  # fmt: skip
    supply_V: float = 0.9
    mid_rail_V: float = 0.45
    read_on_V: float = 0.9  # read word line during the query pulse
    pulse_max_s: float = 15e-9  # T_max
    score_saturation_units: float = 80.0  # S_sat of the HardSigmoid, in µA x T_max
    output_full_scale_units: float = 40.0  # full scale of the signed converter, in µA x T_max
    decay_factor: float = 1.6e-4  # per token of age
    retention_time_constant_s: float = 5e-3
    token_period_s: float = 0.8e-6
    query_levels: int = 16
    stored_levels: int = 8
    output_levels: int = 32
    array_size: int = 64
    window: int = 1024

    @property
    def charge_unit_C(self) -> float:
        """The published model's charge unit, 1 µA for one full pulse T_max, in coulombs."""
        return MICROAMPERE * self.pulse_max_s


PAPER = PublishedConstants()


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
    )


def linear_model(constants: PublishedConstants = PAPER) -> HardwareModel:
    """Linear hardware: I = g * (V_store - 0.45), same decay, HardSigmoid and converters as `paper`.

    g is the least-squares linear fit of the published cell curve at V_in = 0.9 V over the full
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
        label=f"linear (I = {gain / MICROAMPERE:.2f} µA/V x (V_store - 0.45 V))",
        cell=PolynomialCell(coefficients_A=coefficients, v_mid_V=constants.mid_rail_V),
        notes={"linear_gain_A_per_V": gain},
    )


def fitted_model_from_paper_coefficients(constants: PublishedConstants = PAPER) -> HardwareModel:
    """A fitted-mode model whose parameters are the published ones (no fits bundle).

    The decay comes from the time constant and token period, as it would from a bundle.
    """
    return dataclasses.replace(
        paper_model(constants),
        name="fitted",
        label="fitted (paper coefficients; no fits bundle)",
        default_decay_factor=None,
    )
