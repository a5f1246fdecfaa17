"""A design: everything that makes one implementation of the gain-cell attention architecture
in one process, as data (netlists/designs/NAME.toml, or a user's own file).

A design names its process and corner, and holds the operating point (supply, mid-rail, the
read word lines' levels), the DAC's ranges and levels, every device size of the cell and the
periphery, the storage, bitline and integrator capacitances, the reference currents, every
timing and the tolerances the fits use. Every value is in SI units, and its name says which
(``vdd_V``, ``c_store_F``, ``w_write_m``, ``t_max_s``).

The netlists declare the same quantities as ``.param`` defaults; ``Design.template_parameters``
maps a design onto those parameter names, so a sweep on a design sets each parameter the
testbench declares (a spec's [parameters] and ``--set`` still override, a spec's axes sweep).
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PrivateAttr, field_validator, model_validator

from gcsim.core import resources
from gcsim.core.errors import GcsimError, SpecError
from gcsim.core.files import read_text
from gcsim.core.tables import FileTable, TableError, validated
from gcsim.core.values import shown

# A design is a few kB; a megabyte is far beyond any real one.
MAX_DESIGN_BYTES = 1024 * 1024
DESIGNS = resources.NETLISTS / "designs"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {shown(value)}")
    return float(value)


def _positive(value: Any) -> Any:
    number = _number(value)
    if not number > 0:
        raise ValueError(f"expected a number > 0, got {shown(value)}")
    return number


def _non_negative(value: Any) -> Any:
    number = _number(value)
    if not number >= 0:
        raise ValueError(f"expected a number >= 0, got {shown(value)}")
    return number


def _count(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"expected an integer >= 2, got {shown(value)}")
    return value


Number = Annotated[float, BeforeValidator(_number)]
Positive = Annotated[float, Field(gt=0), BeforeValidator(_positive)]
NonNegative = Annotated[float, Field(ge=0), BeforeValidator(_non_negative)]
Count = Annotated[int, Field(ge=2), BeforeValidator(_count)]


def _field(description: str, unit: str | None = None, default: Any = ...) -> Any:
    extra = {"unit": unit} if unit else None
    return Field(default, description=description, json_schema_extra=extra)


class OperatingPoint(FileTable):
    """The supply and the levels of the read word lines and the bitline."""

    vdd_V: Positive = _field("The supply voltage (netlist parameter vdd).", "V")
    mid_rail_V: Positive = _field(
        "Mid-rail: the bitline's virtual ground, the write bitline's and the read word lines' "
        "rest level (netlist parameter v_mid).", "V")
    read_on_n_V: Number = _field(
        "Level of the NMOS read word line rwl_n during a read pulse (netlist parameter v_in).",
        "V")
    read_on_p_V: Number = _field(
        "Level of the PMOS read word line rwl_p during a read pulse. The architecture's read "
        "is signed and symmetric: the testbenches and the tile mirror rwl_n about mid-rail, so "
        "this must equal 2 * mid_rail_V - read_on_n_V (it is stated, and checked, so that a "
        "design file reads completely).", "V")
    rest_V: Number = _field(
        "Level of both read word lines and of the bitline between reads: every read device's "
        "drain-source voltage is then zero, and so is the read current.", "V")

    @model_validator(mode="after")
    def _levels(self) -> "OperatingPoint":
        if not self.mid_rail_V < self.vdd_V:
            raise TableError(f"mid-rail {shown(self.mid_rail_V)} V is not below the supply "
                             f"{shown(self.vdd_V)} V", "mid_rail_V")
        mirrored = 2 * self.mid_rail_V - self.read_on_n_V
        if abs(self.read_on_p_V - mirrored) > 1e-9:
            raise TableError(f"{shown(self.read_on_p_V)} V is not read_on_n_V mirrored about "
                             f"mid-rail ({mirrored:.6g} V), as the netlists drive rwl_p",
                             "read_on_p_V")
        return self


class Dac(FileTable):
    """The DACs: the stored (K/V) voltages' range and levels, the queries' and outputs' levels."""

    stored_min_V: Number = _field("Lowest stored voltage the write DAC drives (a K/V level).",
                                  "V")
    stored_max_V: Number = _field("Highest stored voltage the write DAC drives.", "V")
    stored_levels: Count = _field("Levels of the stored-value DAC (8: 3 bits).")
    query_levels: Count = _field("Levels of a query's pulse width (16: 4 bits).")
    output_levels: Count = _field("Levels of the output pulse counter (32: 5 bits, signed).")
    dac_offset_V: Number = _field(
        "Added to every write target on the write bitline: cancels the mean word-line "
        "feedthrough as the write device turns off (0 when not needed).", "V", 0.0)

    @model_validator(mode="after")
    def _range(self) -> "Dac":
        if not self.stored_min_V < self.stored_max_V:
            raise TableError(f"stored_min_V {shown(self.stored_min_V)} is not below "
                             f"stored_max_V {shown(self.stored_max_V)}", "stored_max_V")
        return self


class Cell(FileTable):
    """The gain cell's devices (cells/gain_cell.sub) and its storage capacitor."""

    w_write_m: Positive = _field("Width of the write device (write_nmos).", "m")
    l_write_m: Positive = _field("Length of the write device.", "m")
    w_read_n_m: Positive = _field("Width of the NMOS read device (read_nmos).", "m")
    l_read_n_m: Positive = _field("Length of the NMOS read device.", "m")
    w_read_p_m: Positive = _field("Width of the PMOS read device (read_pmos).", "m")
    l_read_p_m: Positive = _field("Length of the PMOS read device.", "m")
    c_store_F: Positive = _field(
        "The explicit storage capacitor on the storage node (the read gates add to it).", "F")
    cap_model: str | None = _field(
        "The process's capacitor device for c_store (e.g. a MIM capacitor); left out: an "
        "ideal capacitor.", default=None)
    cap_w_m: Positive | None = _field("Width of the capacitor device, with cap_model.", "m",
                                      None)
    cap_l_m: Positive | None = _field("Length of the capacitor device, with cap_model.", "m",
                                      None)

    @model_validator(mode="after")
    def _capacitor(self) -> "Cell":
        sized = self.cap_w_m is not None and self.cap_l_m is not None
        if self.cap_model is not None and not sized:
            raise TableError("a cap_model needs cap_w_m and cap_l_m", "cap_model")
        if self.cap_model is None and (self.cap_w_m is not None or self.cap_l_m is not None):
            raise TableError("cap_w_m and cap_l_m size a cap_model, and there is none",
                             "cap_model")
        return self


class Write(FileTable):
    """A write: the write word line's levels and the pulse that writes the storage node."""

    wwl_high_V: Number = _field("Write word line while writing (boosted above vdd when the "
                                "write device needs it to pass the top level).", "V")
    wwl_low_V: Number = _field("Write word line at rest (below 0 V to cut the write device's "
                               "leakage when the process needs it).", "V")
    t_write_s: Positive = _field("The write word line's rise plus its flat top (the fall "
                                 "follows; netlist parameter t_write).", "s")
    t_rise_s: Positive = _field("Rise time of the write word line.", "s")
    t_fall_s: Positive = _field("Fall time of the write word line (a slow fall lowers the "
                                "feedthrough's spread between levels).", "s")


class PeripheryDevices(FileTable):
    """W and L of every periphery device (cells/sense_amp.sub, logic.sub, charge_to_pulse.sub,
    signed_converter.sub and the testbenches' bias diodes). Each name, without its _m, is the
    netlists' parameter name."""

    w_ota_in_m: Positive = _field("OTA input pair width (ota2 M1, M2).", "m")
    l_ota_in_m: Positive = _field("OTA input pair length.", "m")
    w_ota_load_m: Positive = _field("OTA first-stage PMOS mirror load width (M3, M4).", "m")
    l_ota_load_m: Positive = _field("OTA first-stage load length.", "m")
    w_ota_tail_m: Positive = _field("OTA tail width (M5, mirrored from the bias diode).", "m")
    l_ota_tail_m: Positive = _field("OTA tail length.", "m")
    w_ota_outn_m: Positive = _field("OTA push-pull output stage NMOS width (M7).", "m")
    w_ota_outp_m: Positive = _field("OTA push-pull output stage PMOS width (M6).", "m")
    l_ota_out_m: Positive = _field("OTA output stage length.", "m")
    w_rst_n_m: Positive = _field("Integrator reset transmission gate NMOS width.", "m")
    w_rst_p_m: Positive = _field("Integrator reset transmission gate PMOS width.", "m")
    l_sw_m: Positive = _field("Length of every switch: the integrator reset, the converters' "
                              "discharge switches and the sign latch's transmission gate.", "m")
    w_cmp_in_m: Positive = _field("Comparator preamplifier input pair width.", "m")
    l_cmp_in_m: Positive = _field("Comparator input pair length.", "m")
    w_cmp_load_m: Positive = _field("Comparator PMOS mirror load width.", "m")
    l_cmp_load_m: Positive = _field("Comparator load length.", "m")
    w_cmp_tail_m: Positive = _field("Comparator tail width.", "m")
    l_cmp_tail_m: Positive = _field("Comparator tail length.", "m")
    w_cmp_gain_n_m: Positive = _field("Comparator's first (gain-stage) inverter NMOS width.",
                                      "m")
    w_cmp_gain_p_m: Positive = _field("Comparator's first (gain-stage) inverter PMOS width.",
                                      "m")
    l_logic_m: Positive = _field("Length of every logic gate device (inverters, NAND2).", "m")
    w_inv_n_m: Positive = _field("Logic inverter NMOS width.", "m")
    w_inv_p_m: Positive = _field("Logic inverter PMOS width.", "m")
    w_nand_n_m: Positive = _field("NAND2 NMOS width.", "m")
    w_nand_p_m: Positive = _field("NAND2 PMOS width.", "m")
    w_drv_n_m: Positive = _field("Output driver inverter NMOS width (pulse outputs, the "
                                 "comparator's last inverter).", "m")
    w_drv_p_m: Positive = _field("Output driver inverter PMOS width.", "m")
    w_bias_m: Positive = _field("Bias diode width (carries i_bias; the OTA and comparator "
                                "tails mirror it).", "m")
    l_bias_m: Positive = _field("Bias diode length.", "m")
    w_ref_n_m: Positive = _field("NMOS reference diode width (carries i_ref).", "m")
    w_ref_p_m: Positive = _field("PMOS reference diode width (signed converter's source).",
                                 "m")
    l_mirror_m: Positive = _field("Length of the reference diodes and the converters' "
                                  "current sink and source.", "m")
    w_sink_n_m: Positive = _field("Converters' NMOS current sink width.", "m")
    w_src_p_m: Positive = _field("Signed converter's PMOS current source width.", "m")
    w_dis_n_m: Positive = _field("Converters' NMOS discharge switch width.", "m")
    w_dis_p_m: Positive = _field("Signed converter's PMOS discharge switch width.", "m")
    w_latch_n_m: Positive = _field("Sign latch transmission gate NMOS width.", "m")
    w_latch_p_m: Positive = _field("Sign latch transmission gate PMOS width.", "m")


class Periphery(FileTable):
    """The column readout: integrator, converters, their references, and device sizes."""

    c_int_F: Positive = _field("Integration capacitor of the column integrator.", "F")
    c_bl_F: Positive = _field("Bitline capacitance the integrator sees.", "F")
    i_bias_A: Positive = _field("Bias current of the OTA and comparator tails.", "A")
    cc_F: Positive = _field("OTA Miller compensation capacitor.", "F")
    rz_ohm: Positive = _field("OTA nulling resistor in series with cc.", "ohm")
    i_ref_A: Positive = _field("Discharge current of the HardSigmoid charge-to-pulse "
                               "converter: S_sat = i_ref_A * t_max_s.", "A")
    i_ref_signed_A: Positive = _field("Discharge current of the signed converter: full scale "
                                      "= i_ref_signed_A * t_max_s.", "A")
    c_hold_F: Positive = _field("The signed converter's sign-holding capacitor.", "F")
    devices: PeripheryDevices = Field(description="W and L of every periphery device.")


class Timing(FileTable):
    """The phases of a token's computation, and the array it runs on."""

    t_max_s: Positive = _field("T_max: the longest query pulse and output window.", "s")
    t_edge_s: Positive = _field("Edges of the query pulses and the integrated currents.", "s")
    t_rst_s: Positive = _field("Integrator reset before an integration.", "s")
    t_gap_s: NonNegative = _field("Wait from the reset's release to the first query pulse.",
                                  "s")
    t_hold_s: NonNegative = _field("Wait from the last pulse's end to the conversion.", "s")
    t_align_s: NonNegative = _field("Delay of the output window after the discharge starts: "
                                    "matches the comparator's delay, so it shifts the output "
                                    "pulse instead of lengthening it.", "s")
    token_period_s: Positive = _field("Time between two tokens.", "s")
    window_tokens: int = Field(description="Tokens in the attention window (rows of K and V "
                                           "kept), so the retention a stored value needs is "
                                           "window_tokens * token_period_s.", gt=0)
    array_rows: int = Field(description="Rows of one array (one token's key per row).", gt=0)
    array_cols: int = Field(description="Columns of one array (the head dimension).", gt=0)


class Tolerances(FileTable):
    """How far a measured figure may be from its target before a fit or check fails."""

    write_V: Positive = _field("A write lands within this of its target at the chosen write "
                               "time (the write fit).", "V")
    settle_V: Positive = _field("The integrator output has settled once within this of "
                                "mid-rail (sense_amp.cir's settle_tol).", "V")


class Fits(FileTable):
    """How the design's curves are fitted: the polynomial orders its cell needs (a cell with
    a dead band around mid-rail needs a higher order than a square-law one)."""

    charge_order: int = Field(5, ge=1, le=15, description=(
        "Order of the charge-per-pulse model's current term in the stored voltage (fitted "
        "mode's cell)."))
    edge_order: int = Field(3, ge=0, le=15, description=(
        "Order of the charge-per-pulse model's edge-charge term."))
    conductance_order: int = Field(4, ge=1, le=15, description=(
        "Order of the cell-conductance polynomials (readout loading)."))
    nonlinearity_order: int = Field(3, ge=1, le=15, description=(
        "Order of the published-form nonlinearity fit (3: the published model's, which "
        "`gcsim export paper-coefficients` needs)."))


class Design(FileTable):
    """A design (netlists/designs/NAME.toml, or a file given to --design): one implementation
    of the architecture in one process. SI units throughout; each name carries its unit."""

    name: str = Field(description="The design's name (what --design takes for a shipped one).",
                      pattern=_NAME.pattern)
    description: str = Field(description="What the design is, for people.")
    process: str = Field(description="The models selector without a corner: 'builtin', "
                                     "'sky130', or a user library path.")
    corner: str = Field(description="The corner the design was made at (e.g. 'tt').",
                        pattern=r"^[A-Za-z0-9_]+$")
    operating: OperatingPoint = Field(description="Supply and read levels.")
    dac: Dac = Field(description="DAC ranges and levels.")
    cell: Cell = Field(description="The gain cell's devices and storage capacitor.")
    write: Write = Field(description="The write pulse and word-line levels.")
    periphery: Periphery = Field(description="Integrator, converters and their devices.")
    timing: Timing = Field(description="Phases of a token and the array size.")
    tolerances: Tolerances = Field(description="The tolerances of the fits and checks.")
    fits: Fits = Field(default_factory=Fits, description="The fits' polynomial orders.")

    _path: Path | None = PrivateAttr(None)
    _sha256: str | None = PrivateAttr(None)

    @field_validator("name", "process", mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected a non-empty string, got {shown(value)}")
        return value

    @property
    def path(self) -> Path | None:
        """The file the design was read from."""
        return self._path

    @property
    def sha256(self) -> str | None:
        """The sha256 of the design's values (its TOML as canonical JSON; comments and order
        do not count), recorded in sweeps' and fits' provenance."""
        return self._sha256

    @property
    def models(self) -> str:
        """The models selector of the design's process at its corner."""
        return f"{self.process}:{self.corner}"

    def template_parameters(self) -> dict[str, float]:
        """{netlist parameter name: value}: the design's values under the names the netlists'
        ``.param`` lines declare (one name, one meaning, in every testbench)."""
        op, cell, periphery, timing = self.operating, self.cell, self.periphery, self.timing
        values = {
            "vdd": op.vdd_V, "v_mid": op.mid_rail_V, "v_in": op.read_on_n_V,
            "c_store": cell.c_store_F,
            "w_write": cell.w_write_m, "l_write": cell.l_write_m,
            "w_read_n": cell.w_read_n_m, "l_read_n": cell.l_read_n_m,
            "w_read_p": cell.w_read_p_m, "l_read_p": cell.l_read_p_m,
            "v_wwl": self.write.wwl_high_V, "v_wwl_low": self.write.wwl_low_V,
            "t_write": self.write.t_write_s, "t_wwl_rise": self.write.t_rise_s,
            "t_wwl_fall": self.write.t_fall_s, "dac_offset": self.dac.dac_offset_V,
            "c_int": periphery.c_int_F, "c_bl": periphery.c_bl_F,
            "i_bias": periphery.i_bias_A, "cc": periphery.cc_F, "rz": periphery.rz_ohm,
            "i_ref": periphery.i_ref_A, "i_ref_signed": periphery.i_ref_signed_A,
            "c_hold": periphery.c_hold_F,
            "t_max": timing.t_max_s, "t_edge": timing.t_edge_s, "t_rst": timing.t_rst_s,
            "t_gap": timing.t_gap_s, "t_hold": timing.t_hold_s, "t_align": timing.t_align_s,
            "settle_tol": self.tolerances.settle_V,
        }
        for field_name, value in periphery.devices:
            values[field_name.removesuffix("_m")] = value
        return values

    def terms(self) -> dict[str, float]:
        """The names a spec's values may use (``stop = "vdd"``, ``start = "v_mid - 0.45"``):
        every netlist parameter the design sets, and the DAC's stored range
        (v_stored_min, v_stored_max), the PMOS read level (v_in_p), the token period, the
        write tolerance, the HardSigmoid's saturation charge s_sat = i_ref * t_max and the
        signed converter's full scale q_fs = i_ref_signed * t_max."""
        return {**self.template_parameters(),
                "v_stored_min": self.dac.stored_min_V, "v_stored_max": self.dac.stored_max_V,
                "v_in_p": self.operating.read_on_p_V, "v_rest": self.operating.rest_V,
                "token_period": self.timing.token_period_s,
                "write_tol": self.tolerances.write_V,
                "s_sat": self.periphery.i_ref_A * self.timing.t_max_s,
                "q_fs": self.periphery.i_ref_signed_A * self.timing.t_max_s}


DESIGN_SCHEMA = Design


def design_path(name_or_path: str | Path) -> Path:
    """A bare name (no folder, no .toml) is a shipped design in netlists/designs/; anything
    else is a file."""
    text = str(name_or_path)
    if "/" not in text and "\\" not in text and not text.endswith(".toml"):
        return DESIGNS / f"{text}.toml"
    return Path(text)


def shipped_designs() -> list[str]:
    """The names of the designs netlists/designs/ holds."""
    return sorted(p.stem for p in DESIGNS.glob("*.toml")) if DESIGNS.is_dir() else []


def load_design(name_or_path: str | Path) -> Design:
    """Read and check a design; every error is one line naming the file (and the key)."""
    path = design_path(name_or_path)
    if path.parent == DESIGNS and not path.is_file():
        raise SpecError(f"design {shown(str(name_or_path))}: no such design (shipped: "
                        f"{', '.join(shipped_designs()) or 'none'}; or give a .toml file)")
    try:
        text = read_text(path, "design file", MAX_DESIGN_BYTES)
    except GcsimError as exc:   # missing, not a regular file, too large
        raise SpecError(str(exc)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"design file {path}: {' '.join(str(exc).split())}") from None
    design: Design = validated(Design, raw, f"design file {path}")
    design._path = path
    # The hash of what the file says, not of its bytes: a comment or a reordering changes no
    # result, so it must not make the committed fits look stale.
    design._sha256 = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    return design


def default_design(process: str) -> Design | None:
    """The design used when none is given: the shipped design named like the process
    (netlists/designs/builtin.toml, sky130.toml); None for a process without one (a user
    library: give its design with --design)."""
    if "/" in process or "\\" in process or not (DESIGNS / f"{process}.toml").is_file():
        return None
    return load_design(process)


def process_of(models: str) -> str:
    """The process a models selector names: 'sky130:ss' -> 'sky130', 'path/lib.spice:tt' ->
    'path/lib.spice' (a selector without a corner is the process itself)."""
    return models.rsplit(":", 1)[0] if ":" in models else models


def choose_design(design: str | Path | Design | None,
                  models: str | None) -> tuple[Design | None, str | None]:
    """--design and --models together: a design alone brings its process and corner
    (--design sky130 runs on sky130:tt); models alone bring their process's shipped design
    (--models sky130:ss runs the sky130 design at ss); both must name one process. Neither:
    (None, None), so each spec keeps its own models and their default design."""
    if design is None:
        if models is None:
            return None, None
        return default_design(process_of(models)), models
    chosen = design if isinstance(design, Design) else load_design(design)
    if models is None:
        return chosen, chosen.models
    if process_of(models) != chosen.process:
        raise SpecError(f"--design {chosen.name} is for process {chosen.process}, and --models "
                        f"is {models}: give that process's models, or leave one of them out")
    return chosen, models


def default_fits(design: Design | None) -> Path:
    """The committed bundle that goes with a design: fits/NAME/ for a shipped design (when it
    exists), else the default design's (fits/builtin/)."""
    if design is not None and design.path is not None and \
            design.path.resolve().parent == DESIGNS.resolve():
        folder = resources.fits_for(design.name)
        if folder.is_dir():
            return folder
    return resources.FITS
