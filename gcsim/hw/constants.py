"""Every number of the published behavioural model (MISSION.md; Leroux et al. 2025) as one
named object, `PAPER`, and its operating point (gcsim.hw.published builds the models)."""

from __future__ import annotations

from dataclasses import dataclass

from gcsim.hw.operating import OperatingPoint

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

    @property
    def operating_point(self) -> OperatingPoint:
        """The published operating point: K and V in [0, supply], signed about mid-rail."""
        return OperatingPoint(
            stored_min_V=0.0, stored_max_V=self.supply_V, mid_rail_V=self.mid_rail_V,
            read_on_V=self.read_on_V, stored_levels=self.stored_levels,
            query_levels=self.query_levels, output_levels=self.output_levels,
            t_max_s=self.pulse_max_s, token_period_s=self.token_period_s, window=self.window,
            array_size=self.array_size)


PAPER = PublishedConstants()
PAPER_OPERATING_POINT = PAPER.operating_point
