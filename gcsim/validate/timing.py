"""A validation tile's electrical and timing parameters, taken from the characterisation
testbenches, and the times of the tile's phases derived from them (SI units).

The phases, in order: the write (`write` = 'devices': every cell written through its write
device as gain_cell_write.cir writes it, ending at `t_write_end`; 'ideal': no write phase,
`t_write_end` = 0), the readouts' reset (released at `t_krel`), the query pulses (`t_q`), the
HardSigmoid conversion (`t_conv`), the V integration (`t_vrel` to `t_vend`) and the signed
conversion (to `t_end`). Every phase after the write is placed from `t_write_end`, so the write
shifts them all alike and the read's own timing (`readout_timing_s`) does not change."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gcsim.core import resources
from gcsim.core.design import Design
from gcsim.core.errors import ParameterError
from gcsim.spice.template import Template

# Periphery parameters taken from the characterisation testbench charge_to_pulse.cir, and cell
# parameters from gain_cell_pulse.cir, so the tile uses the circuits that were characterised.
C2P_PARAMS = ("vdd", "v_mid", "t_edge", "t_rst", "t_gap", "t_hold", "t_max", "t_align", "i_ref",
              "c_int", "i_bias", "cc", "rz", "temp_c", "c_bl")
CELL_PARAMS = ("c_store", "w_write", "l_write", "w_read_n", "l_read_n", "w_read_p", "l_read_p",
               "v_in", "v_wwl_low")
# Periphery device sizes, from charge_to_pulse.cir (integrator, HardSigmoid converter) and
# signed_converter.cir (its own devices): the tile instantiates the same subcircuits with them.
C2P_DEVICES = ("w_bias", "l_bias", "w_rst_n", "w_rst_p", "l_sw", "w_ota_in", "l_ota_in",
               "w_ota_load", "l_ota_load", "w_ota_tail", "l_ota_tail", "w_ota_outn",
               "w_ota_outp", "l_ota_out", "w_ref_n", "l_mirror", "w_sink_n", "w_dis_n",
               "l_logic", "w_inv_n", "w_inv_p", "w_nand_n", "w_nand_p", "w_drv_n", "w_drv_p",
               "w_cmp_in", "l_cmp_in", "w_cmp_load", "l_cmp_load", "w_cmp_tail", "l_cmp_tail",
               "w_cmp_gain_n", "w_cmp_gain_p")
SIGNED_DEVICES = ("w_ref_p", "w_src_p", "w_dis_p", "w_latch_n", "w_latch_p", "c_hold")
# The write, from gain_cell_write.cir (the write word line's high level and its pulse, the DAC's
# offset), so the tile writes its cells as the write characterisation did.
WRITE_PARAMS = ("v_wwl", "t_write", "t_wwl_rise", "t_wwl_fall", "dac_offset")
# 'devices': the cells are written through their write devices at the start of the run;
# 'ideal': every storage node starts at its target, as the retention scenario needs.
WRITE_MODES = ("devices", "ideal")
# ngspice refuses a zero-width PULSE top; gain_cell_write.cir's floor for it, mirrored.
_MIN_FLAT_S = 1e-12


@dataclass
class TileParams:
    """Electrical and timing parameters of a tile (SI units)."""

    values: dict[str, float] = field(default_factory=dict)
    r_wire: float = 0.0     # ohm per cell pitch
    c_wire: float = 0.0     # farad per cell pitch
    # ngspice's time step: set by its truncation-error estimate at `trtol` (ngspice's default
    # is 7) and never above `max_step`, as in the converter sweeps the fits come from. Against
    # a 10 ps reference this is closer than a 50 ps cap at the default trtol, for less CPU
    # (docs/reference/ngspice.md, "The tile's time step").
    max_step: float = 200e-12
    trtol: float = 2.0
    # ngspice's relative tolerance, on Newton convergence and on the step's truncation error
    # alike, kept at ngspice's default: at 2e-3 a sky130 column took 18 % fewer iterations, but
    # builtin's phi moved by 0.5 % FS (docs/reference/ngspice.md, "What did not help").
    reltol: float = 1e-3
    # The sparse solver's relative pivot threshold (ngspice's default is 1e-3). At the default,
    # 18 of a 64x64 sky130 tile's 64 V column runs reorder their matrix into 3.6 times the
    # fill-ins, and their factorisation costs four times as much (same notes).
    pivrel: float = 1e-5
    signed: bool = False    # V readouts end in the signed converter
    mc_seed: int | None = None   # Pelgrom mismatch of every cell transistor (Monte Carlo)
    write: str = "devices"  # WRITE_MODES

    def __post_init__(self) -> None:
        if self.write not in WRITE_MODES:
            raise ParameterError(f"write {self.write!r}: one of {', '.join(WRITE_MODES)}")

    @property
    def signed_available(self) -> bool:
        return (resources.NETLISTS / "signed_converter.cir").is_file()

    @classmethod
    def defaults(cls, r_wire: float = 0.0, c_wire: float = 0.0,
                 signed: bool | None = None, design: Design | None = None,
                 write: str = "devices") -> TileParams:
        """The testbenches' parameter defaults, with ``design``'s values over them."""
        c2p = Template.load(resources.NETLISTS / "charge_to_pulse.cir").defaults
        cell = Template.load(resources.NETLISTS / "gain_cell_pulse.cir").defaults
        writing = Template.load(resources.NETLISTS / "gain_cell_write.cir").defaults
        if design is not None:
            c2p = {**c2p, **design.template_parameters()}
            cell = {**cell, **design.template_parameters()}
            writing = {**writing, **design.template_parameters()}
        values = {name: c2p[name] for name in C2P_PARAMS + C2P_DEVICES}
        values.update({name: cell[name] for name in CELL_PARAMS})
        values.update({name: writing[name] for name in WRITE_PARAMS})
        # The testbench's wait before the word line rises (its t_delay, no design value).
        values["t_wwl_delay"] = writing["t_delay"]
        # The stored (K/V) range: the design's DAC; without a design, the whole supply.
        values["v_stored_min"] = design.dac.stored_min_V if design is not None else 0.0
        values["v_stored_max"] = (design.dac.stored_max_V if design is not None
                                  else values["vdd"])
        if design is not None:
            values["stored_levels"] = design.dac.stored_levels
            values["query_levels"] = design.dac.query_levels
        if r_wire < 0 or c_wire < 0:
            raise ParameterError("wire R and C per pitch must be >= 0")
        signed_cir = resources.NETLISTS / "signed_converter.cir"
        if signed is None:
            signed = signed_cir.is_file()
        if signed:
            if not signed_cir.is_file():
                raise ParameterError(f"no signed converter netlist ({signed_cir})")
            sc = Template.load(signed_cir).defaults
            if design is not None:
                sc = {**sc, **design.template_parameters()}
            values.update({"s_i_ref": sc["i_ref_signed"], "s_t_max": sc["t_max"],
                           "s_t_align": sc["t_align"]})
            values.update({name: sc[name] for name in SIGNED_DEVICES})
        return cls(values, float(r_wire), float(c_wire), signed=bool(signed), write=write)

    @property
    def levels(self) -> dict[str, int]:
        """The design's stored and query DAC levels (random_inputs' keywords); {} without."""
        return {name: int(self.values[name]) for name in ("stored_levels", "query_levels")
                if name in self.values}

    @property
    def stored_range(self) -> tuple[float, float]:
        """(lowest, highest) stored K/V voltage the tile's DAC writes."""
        return self.values["v_stored_min"], self.values["v_stored_max"]

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def readout_timing_s(self) -> dict[str, float]:
        """The V readout's timing the readout_loading fit needs (gcsim.fit.loading), on the
        read's own axis (from the end of the write phase): the same with or without it."""
        read = replace(self, write="ideal")   # the same times, less the write phase
        return {"t_gap": self["t_gap"], "t_vrel": read.t_vrel, "t_conv": read.t_conv,
                "t_vend": read.t_vend, "t_align": self["t_align"]}

    @property
    def write_pulse_s(self) -> tuple[float, float, float, float]:
        """The write word line's PULSE timing (delay, rise, fall, flat top), as
        gain_cell_write.cir's VWWL: t_write is the rise plus the flat top."""
        rise, fall = self["t_wwl_rise"], self["t_wwl_fall"]
        return (self["t_wwl_delay"], rise, fall, max(self["t_write"] - rise, _MIN_FLAT_S))

    @property
    def t_write_end(self) -> float:
        """End of the write phase: every write word line is back at rest (0 without one)."""
        if self.write != "devices":
            return 0.0
        return sum(self.write_pulse_s)

    @property
    def t_krel(self) -> float:
        """The K readouts' reset is released here, t_rst after the write phase."""
        return self.t_write_end + self["t_rst"]

    @property
    def t_q(self) -> float:
        """Start of the query pulses."""
        return self.t_krel + self["t_gap"]

    @property
    def t_conv(self) -> float:
        """Start of the conversion window (as in charge_to_pulse.cir, with t_int = t_max)."""
        return self.t_q + self["t_max"] + 2 * self["t_edge"] + self["t_hold"]

    @property
    def t_vrel(self) -> float:
        """The V readouts' reset is released here, t_rst before the conversion window (the
        same reset length as the K readouts', so a V-only run can start t_conv - 2 t_rst
        later, see `v_shift`)."""
        return self.t_conv - self["t_rst"]

    @property
    def v_shift(self) -> float:
        """How much earlier a V-only run's read phases start: nothing happens in the V array
        between its write and its readouts' reset (the V rows rest until the converters fire),
        so a V-only run writes its cells as the full run does and is reset from then on."""
        return self.t_vrel - self["t_rst"] - self.t_write_end

    @property
    def t_vend(self) -> float:
        """End of the V integration (the last HardSigmoid pulse has ended t_hold before)."""
        return self.t_conv + self["t_align"] + self["t_max"] + 2 * self["t_edge"] + self["t_hold"]

    @property
    def t_end(self) -> float:
        """End of the run: the V integration's end, or with `signed` the end of the signed
        converter's output window (and 0.5 ns for its last edge to settle)."""
        if not self.signed:
            return self.t_vend
        return self.t_vend + self["s_t_align"] + self["s_t_max"] + 2 * self["t_edge"] + 0.5e-9

    @property
    def splittable(self) -> bool:
        """Columns are independent circuits (no word-line resistance)."""
        return self.r_wire == 0.0
