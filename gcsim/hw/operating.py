"""A hardware model's operating point: the DAC ranges and levels, the mid-rail the signed
weights are centred on, the read-on level, T_max, the token period and the array layout. The
published one is `gcsim.hw.published.PAPER_OPERATING_POINT`; a fits bundle's comes from the
design its sweeps ran on (`OperatingPoint.from_design`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OperatingPoint:
    """Where the arrays operate: K and V are stored in [stored_min_V, stored_max_V] through a
    `stored_levels` DAC and read as signed weights about `mid_rail_V`; queries are `query_levels`
    pulse widths up to `t_max_s`; the outputs have `output_levels` levels."""

    stored_min_V: float
    stored_max_V: float
    mid_rail_V: float
    read_on_V: float
    stored_levels: int
    query_levels: int
    output_levels: int
    t_max_s: float
    token_period_s: float
    window: int
    array_size: int

    @classmethod
    def from_design(cls, design) -> OperatingPoint:
        """The operating point of a design (gcsim.core.design.Design)."""
        dac, timing = design.dac, design.timing
        return cls(
            stored_min_V=float(dac.stored_min_V),
            stored_max_V=float(dac.stored_max_V),
            mid_rail_V=float(design.operating.mid_rail_V),
            read_on_V=float(design.operating.read_on_n_V),
            stored_levels=int(dac.stored_levels),
            query_levels=int(dac.query_levels),
            output_levels=int(dac.output_levels),
            t_max_s=float(timing.t_max_s),
            token_period_s=float(timing.token_period_s),
            window=int(timing.window_tokens),
            array_size=int(timing.array_rows),
        )

    def describe(self) -> str:
        """'0..0.9 V, mid-rail 0.45 V': the stored range and mid-rail, for notes."""
        return (f"{self.stored_min_V:g}..{self.stored_max_V:g} V, mid-rail "
                f"{self.mid_rail_V:g} V")
