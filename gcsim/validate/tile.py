"""The SPICE netlist of one attention tile, generated from its inputs.

Geometry (MISSION.md): the K array has the head dimension on its R rows and the C tokens on its
columns; the V array has the C tokens on its rows and the head dimension (R) on its columns. One
query q (R,) is read against keys k (C, R) and values v (C, R), the simulator's (tokens, dim)
layout: cell (r, c) of the K array stores k[c, r], cell (c, d) of the V array stores v[c, d].

Signal chain, with the periphery of the characterisation netlists:

1. the write (`TileParams.write`): with 'devices' (the default) every K and V cell is written
   through its own write transistor exactly as netlists/gain_cell_write.cir writes one cell:
   its storage node starts at mid-rail (the testbench's v_init; see _held_storage), its write bitline sits
   at its target plus the design's DAC offset from t = 0, and its column's write word line
   rises from v_wwl_low to v_wwl after t_wwl_delay, over t_wwl_rise, stays t_write - t_wwl_rise,
   falls over t_wwl_fall and rests at v_wwl_low through the reads; the phase ends at
   `t_write_end`, and so the stored level carries the write error (settling, charge
   injection, feed-through) the write characterisation measures. With 'ideal' every storage
   node starts at its target and the write port idles (word line at v_wwl_low, bitline
   at mid-rail): no write phase. The retention scenario needs that, since it starts each cell
   at its aged voltage;
2. the integrators (cells/sense_amp.sub) are reset until t_krel (t_rst after the write);
3. row r of the K array gets a read pulse of width q[r] * t_max (flat top, edges t_edge, as in
   gain_cell_pulse.cir) on rwl_n, mirrored on rwl_p (2 v_mid - V(rwl_n)); q = 0: no pulse;
4. each K column's integrator holds its charge; at t_conv the column's charge-to-pulse converter
   (cells/charge_to_pulse.sub, driven as in charge_to_pulse.cir) discharges it and emits the
   HardSigmoid pulse `pulse_c`;
5. row c of the V array is driven by an ideal word-line driver, a linear VCVS mapping the logic
   pulse 0...vdd onto rwl_n = v_mid...v_in (rwl_p mirrored); the driver's own delay, edges and
   energy are not modelled;
6. the V columns' integrators collect the signed charges A;
7. with `signed` (the default when netlists/signed_converter.cir exists), each V integrator is
   followed by the signed converter (cells/signed_converter.sub, driven as in
   signed_converter.cir: sign sampled until 200 ps before its window, discharge window t_max +
   t_align, output window t_max opened t_align later), whose pulse width and latched sign give
   the output sign x width / t_max (the count before the counter's rounding).

Probes that load nothing: each column's bitline reaches its integrator through a 0 V source whose
current is integrated on 1 pF (charge [C] = 1e-12 V(qs_c) / V(qa_d)); each converter's pulse,
V(pulse)/vdd, is integrated (width [s] = 1e-9 V(w_c)).

Every K column, and every V column, has its own bias diodes (i_bias, i_ref) so that columns do
not interact through shared bias nodes: with no wire resistance the columns are independent
circuits, which is what lets `gcsim.validate.spice` run them in separate processes.

The write keeps them independent too: each cell's write bitline is its own ideal source at its
target, and each column (of either array) has its own write word line, and all cells are
written at once. In hardware the write bitlines are shared along a row of the K array (a
column of the V array), driven by the DAC, and the tokens are written one at a time, each by
its own word line (a K column, a V row). What that leaves out: the DAC's and the bitline's
own settling and resistance (the sources are ideal and the write lines carry no wire R or C),
the disturb of cells already written when their shared write bitline moves to the next
token's value (here each write bitline stays at its cell's target through the run), and the
hold between one token's write and the read (all cells are read a few ns after their write;
`gcsim validate retention` covers the hold).

Wire parasitics (`r_wire`, `c_wire` per cell pitch): with r_wire > 0 every bitline and word line
becomes an R-C ladder (drivers at column 0 / integrators below the last row); with only c_wire,
each bitline carries its lumped capacitance. Word-line resistance couples the columns, so the
split run is refused then.

Every number written goes through gcsim.core.values.format_number. The tile's parameters and
phase times are in gcsim.validate.timing; the recorded pulses of a split run are made into PWL
sources by gcsim.validate.waveforms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gcsim.spice import devices
from gcsim.spice import process as processes
from gcsim.core import resources
from gcsim.core.errors import ParameterError
from gcsim.spice.template import Template
from gcsim.core.values import format_number as f
from gcsim.validate.timing import CELL_PARAMS, TileParams
from gcsim.validate.waveforms import shift_pwl

PROBE_C = 1e-12     # probe integrators: 1 pF
PROBE_GM = 1e-3     # width integrator transconductance, A/V at vdd (so 1e-9 s per volt)
PARTS = ("full", "k", "v")
# The switched controls' edges: the ideal reset, sampling and gate sources of the testbenches.
_SWITCH_EDGE_S = 50e-12
# The signed converter samples the sign until this long before its discharge window opens.
_SIGN_SAMPLE_LEAD_S = 200e-12
# The transient's print step, which is also ngspice's first step; the steps taken are set by
# TileParams.max_step and trtol.
_PRINT_STEP_S = 50e-12

PulseWaveform = list[tuple[float, float]]   # PWL points (t [s], V)


@dataclass
class Tile:
    """Inputs of one tile: q (R,), stored voltages k_V (C, R) and v_V (C, R)."""

    q: np.ndarray
    k_V: np.ndarray
    v_V: np.ndarray

    @property
    def rows(self) -> int:
        return self.q.shape[0]

    @property
    def cols(self) -> int:
        return self.k_V.shape[0]


@dataclass
class Netlist:
    """A netlist's text, the vectors its run must return, and the part and columns it holds."""

    text: str
    vectors: list[str]
    part: str
    columns: list[int]


@dataclass
class _Writer:
    """A netlist being written: the element lines, and the `.ic` and `.save` cards and vector
    names the elements add as they go (they are written after every element)."""

    params: TileParams
    mismatch: Callable[[str], str]    # cell instance name -> its threshold-shift parameters
    probe_storage: bool = False       # save every storage node's voltage
    lines: list[str] = field(default_factory=list)
    initial_conditions: list[str] = field(default_factory=list)
    held: list[tuple[str, float]] = field(default_factory=list)   # (storage node, start V)
    saves: list[str] = field(default_factory=list)
    vectors: list[str] = field(default_factory=lambda: ["time"])

    def probe(self, node: str) -> None:
        """Saves V(node) and lists it among the run's vectors."""
        self.saves.append(f"v({node})")
        self.vectors.append(node)


def _subcircuits() -> list[str]:
    """The subcircuit definitions of the characterisation netlists, each once."""
    lines: list[str] = []
    seen: set[str] = set()
    names = ["gain_cell_pulse.cir", "charge_to_pulse.cir"]
    if (resources.NETLISTS / "signed_converter.cir").is_file():
        names.append("signed_converter.cir")
    for name in names:
        inside = False
        for line in Template.load(resources.NETLISTS / name).outside:
            words = line.split()
            card = words[0].lower()
            if card == ".subckt":
                inside = words[1].lower() not in seen
                seen.add(words[1].lower())
            if inside:
                lines.append(line)
            if card == ".ends":
                inside = False
    return lines


def _tolerance_options(p: TileParams) -> list[str]:
    """The readout testbench's tolerance options (charge_to_pulse.cir), preceded by the
    parameters they are written in, at the tile's values. The tile measures column charges
    (fC to pC), as the readout testbenches do; the cell's much finer ones (abstol 1.8 fA on
    builtin) cost 20-27 % more ngspice CPU, moved S by 0.01 % FS at most, and stopped a
    builtin 64x64 tile with "timestep too small" (docs/reference/ngspice.md, Tolerances)."""
    template = Template.load(resources.NETLISTS / "charge_to_pulse.cir")
    lines = [line for line in template.options if "temp_c" not in Template.referenced([line])]
    names = sorted(Template.referenced(lines) & set(template.defaults))
    if not names:
        return lines
    return [".param " + " ".join(f"{name}={f(p[name])}" for name in names)] + lines


def _chunks(items: list[str], size: int = 8) -> list[str]:
    return [" ".join(items[i:i + size]) for i in range(0, len(items), size)]


def _ladder(prefix: str, head: str, nodes: list[str], p: TileParams, lines: list[str]) -> None:
    """R-C ladder from `head` through `nodes` (one cell pitch each)."""
    previous = head
    for i, node in enumerate(nodes):
        lines.append(f"R{prefix}_{i} {previous} {node} {f(p.r_wire)}")
        if p.c_wire > 0:
            lines.append(f"C{prefix}_{i} {node} 0 {f(p.c_wire)}")
        previous = node


def _mismatch(p: TileParams, models: processes.ModelSet) -> Callable[[str], str]:
    """Per-cell threshold shifts for Monte Carlo: Pelgrom sigma of each cell transistor times a
    standard-normal draw that is a fixed function of (seed, cell name, device), so a cell gets
    the same draw whichever netlist (split or single) it is in."""
    if p.mc_seed is None or models.mismatch == "pdk":
        return lambda name: ""   # a PDK draws its own, from the netlist's seed (_pdk_seed)
    if models.mismatch != "pelgrom":
        raise ParameterError(f"models {models.name}: Monte Carlo in the tile needs Pelgrom "
                             "coefficients for the cell roles or mismatch models of its "
                             "own (builtin, sky130)")
    sigma = {
        "dn": processes.pelgrom_sigma_V(models.roles["read_nmos"].a_vt_mV_um,
                                            p["w_read_n"], p["l_read_n"]),
        "dp": processes.pelgrom_sigma_V(models.roles["read_pmos"].a_vt_mV_um,
                                            p["w_read_p"], p["l_read_p"]),
        "dw": processes.pelgrom_sigma_V(models.roles["write_nmos"].a_vt_mV_um,
                                            p["w_write"], p["l_write"]),
    }

    def params(name: str) -> str:
        return "".join(
            f" {key}={f(s * processes.standard_normal(p.mc_seed, 0, f'{name}.{key}'))}"
            for key, s in sigma.items())
    return params


def _pdk_seed(tile: Tile, p: TileParams, models: processes.ModelSet, part: str,
              columns: list[int]) -> int | None:
    """ngspice's seed for a netlist of a PDK with its own mismatch models (None: no Monte
    Carlo there). ngspice draws by instance order, so two column netlists with one seed would
    repeat each other's draws: each netlist's seed follows from (mc_seed, its first column).
    Every device gets a draw, the periphery's too; split and single runs are different
    samples of the same distribution."""
    if p.mc_seed is None or models.mismatch != "pdk":
        return None
    run = {"full": 0, "k": 1 + columns[0], "v": 1 + tile.cols + columns[0]}[part]
    return processes.run_seed(p.mc_seed, run)


# ----------------------------------------------------------------------------- shared parts
def _preamble(tile: Tile, p: TileParams, models: processes.ModelSet, part: str,
              columns: list[int], model_lines: list[str]) -> list[str]:
    """Title, temperature, device models, the characterised subcircuits, and `tile_cell`: the
    gain cell at the characterised sizes with per-instance threshold shifts (dn, dp, dw)."""
    lines = [(f"* gcsim validate tile {tile.rows}x{tile.cols} ({part}, columns "
              f"{columns[0]}..{columns[-1]}) models {models.name}")]
    lines.append(f".options temp={f(p['temp_c'])}")
    lines += model_lines      # at lines[2:], where `build` puts a prebinned library's lines
    lines += _tolerance_options(p)
    lines += _subcircuits()
    lines.append(".subckt tile_cell sn rwl_n rwl_p bl vdd wwl wbl params: dn=0 dp=0 dw=0")
    lines.append("X1 sn wwl wbl rwl_n rwl_p bl vdd gain_cell " + " ".join(
        f"{name}={f(p[name])}" for name in CELL_PARAMS if name != "v_in")
        + " dvth_read_n={dn} dvth_read_p={dp} dvth_write={dw}")
    lines.append(".ends tile_cell")
    return lines


def _supplies(p: TileParams) -> list[str]:
    """Supplies, the mid-rail reference and its mirror level, the idle write port of a tile
    written ideally (a tile written through its devices has a write port per cell, see
    `_column_cells`), and the K readouts' reset (released at t_krel)."""
    vdd, v_mid = p["vdd"], p["v_mid"]
    lines = [f"VDD vdd 0 {f(vdd)}", f"VDDB vddb 0 {f(vdd)}", f"VREF vref 0 {f(v_mid)}",
             f"VMID2 mid2 0 {f(2 * v_mid)}"]
    if p.write != "devices":
        lines += [f"VWWL wwl 0 {f(p['v_wwl_low'])}", f"VWBL wbl 0 {f(v_mid)}"]
    return lines + [
        f"VRST rst 0 PULSE({f(vdd)} 0 {f(p.t_krel)} 50p 50p 1 2)",
        f"VRSTB rstb 0 PULSE(0 {f(vdd)} {f(p.t_krel)} 50p 50p 1 2)",
    ]


def _array_nodes(w: _Writer, array: str, n_rows: int, n_cols: int, cols: list[int]):
    """Node names of each cell's word lines and bitline in `array` ('k' or 'v'):
    ({row: (rwl_n per column, rwl_p per column)}, {column: bitline node per row}). With wire
    resistance these are R-C ladder nodes (word lines driven at column 0, integrators below the
    last row); with wire capacitance only, each bitline gets its lumped capacitance."""
    p = w.params
    ladders = p.r_wire > 0
    word_lines = {}
    for r in range(n_rows):
        if ladders:
            names_n = [f"rwln{array}_{r}_{c}" for c in range(n_cols)]
            names_p = [f"rwlp{array}_{r}_{c}" for c in range(n_cols)]
            _ladder(f"wn{array}_{r}", f"rwln{array}_{r}", names_n, p, w.lines)
            _ladder(f"wp{array}_{r}", f"rwlp{array}_{r}", names_p, p, w.lines)
            word_lines[r] = (names_n, names_p)
        else:
            word_lines[r] = ([f"rwln{array}_{r}"] * n_cols, [f"rwlp{array}_{r}"] * n_cols)
    bitlines = {}
    for c in cols:
        if ladders:
            # Integrator below the last row: the ladder runs from the bottom node upwards.
            names = [f"bl{array}_{c}_{r}" for r in range(n_rows)]
            _ladder(f"b{array}_{c}", f"bl{array}_{c}", names[::-1], p, w.lines)
            bitlines[c] = names
        else:
            bitlines[c] = [f"bl{array}_{c}"] * n_rows
            if p.c_wire > 0:
                w.lines.append(f"Cb{array}_{c} bl{array}_{c} 0 {f(p.c_wire * n_rows)}")
    return word_lines, bitlines


def _column_cells(w: _Writer, array: str, n_rows: int, col: int, word_lines, bitlines,
                  stored_V: Callable[[int, int], float]) -> None:
    """One bitline's cells of `array`, cell (row, col) holding stored_V(row, col): written
    through its write device (`write` = 'devices': its own write bitline at the target plus
    the DAC offset, the column's write word line pulsed as in gain_cell_write.cir, the storage
    node starting at mid-rail as that testbench's v_init), or started there ('ideal'); either start is held by
    a switch through the operating point (_held_storage)."""
    p = w.params
    devices = p.write == "devices"
    if devices:
        wwl = f"wwl{array}_{col}"
        delay, rise, fall, flat = p.write_pulse_s
        w.lines.append(f"VWW{array}_{col} {wwl} 0 PULSE({f(p['v_wwl_low'])} {f(p['v_wwl'])} "
                       f"{f(delay)} {f(rise)} {f(fall)} {f(flat)} 1)")
    for row in range(n_rows):
        name = f"X{array}_{row}_{col}"
        node = f"sn{array}_{row}_{col}"
        if devices:
            wbl = f"wbl{array}_{row}_{col}"
            w.lines.append(f"VWB{array}_{row}_{col} {wbl} 0 "
                           f"{f(stored_V(row, col) + p['dac_offset'])}")
            start_V = p["v_mid"]
        else:
            wwl, wbl, start_V = "wwl", "wbl", stored_V(row, col)
        w.lines.append(f"{name} {node} {word_lines[row][0][col]} {word_lines[row][1][col]} "
                       f"{bitlines[col][row]} vdd {wwl} {wbl} tile_cell" + w.mismatch(name))
        w.held.append((node, start_V))
        if w.probe_storage:
            w.probe(node)


def _integrator(w: _Writer, array: str, c: int) -> None:
    """Column c's readout: the bitline through a charge probe (a 0 V source whose current a
    CCCS integrates on PROBE_C) into the sense-amp integrator, with its own bias diode."""
    p = w.params
    nb = f"nb{array}_{c}"
    rst, rstb = ("rst", "rstb") if array == "k" else ("rstv", "rstvb")
    w.lines.append(f"Vp{array}_{c} bl{array}_{c} bi{array}_{c} 0")
    w.lines.append(f"F{array}_{c} 0 q{array}_{c} Vp{array}_{c} 1")
    w.lines.append(f"Cq{array}_{c} q{array}_{c} 0 {f(PROBE_C)}")
    w.lines.append(f"Rq{array}_{c} q{array}_{c} 0 1e15")
    w.lines.append(f"Ib{array}_{c} vddb {nb} {f(p['i_bias'])}")
    w.lines.append(f"Xmb{array}_{c} {nb} {nb} 0 0 core_nmos "
                   + _sizes(p, w="w_bias", l="l_bias"))
    w.lines.append(f"Xsa{array}_{c} bi{array}_{c} out{array}_{c} {rst} {rstb} vref vdd {nb} "
                   "sense_amp " + _sizes(p, **SENSE_AMP_SIZES))
    w.initial_conditions.append(f"v(q{array}_{c})=0")
    w.probe(f"q{array}_{c}")


# {subcircuit parameter: tile parameter}: the instance lines of sense_amp.cir,
# charge_to_pulse.cir and signed_converter.cir, so the tile runs the characterised circuits
# at the design's sizes.
SENSE_AMP_SIZES = {
    "c_int": "c_int", "cc": "cc", "rz": "rz", "w_swn": "w_rst_n", "w_swp": "w_rst_p",
    "l_sw": "l_sw", "w_ota_in": "w_ota_in", "l_ota_in": "l_ota_in", "w_ota_load": "w_ota_load",
    "l_ota_load": "l_ota_load", "w_ota_tail": "w_ota_tail", "l_ota_tail": "l_ota_tail",
    "w_ota_outn": "w_ota_outn", "w_ota_outp": "w_ota_outp", "l_ota_out": "l_ota_out"}
_LOGIC_SIZES = {
    "l_logic": "l_logic", "w_inv_n": "w_inv_n", "w_inv_p": "w_inv_p", "w_nand_n": "w_nand_n",
    "w_nand_p": "w_nand_p", "w_drv_n": "w_drv_n", "w_drv_p": "w_drv_p",
    "w_cmp_in": "w_cmp_in", "l_cmp_in": "l_cmp_in", "w_cmp_load": "w_cmp_load",
    "l_cmp_load": "l_cmp_load", "w_cmp_tail": "w_cmp_tail", "l_cmp_tail": "l_cmp_tail",
    "w_cmp_gain_n": "w_cmp_gain_n", "w_cmp_gain_p": "w_cmp_gain_p"}
CHARGE_TO_PULSE_SIZES = {"w_sink": "w_sink_n", "l_sink": "l_mirror", "w_sw": "w_dis_n",
                         "l_sw": "l_sw", **_LOGIC_SIZES}
SIGNED_CONVERTER_SIZES = {
    "w_sink": "w_sink_n", "w_src": "w_src_p", "l_mirror": "l_mirror", "w_swn": "w_dis_n",
    "w_swp": "w_dis_p", "c_hold": "c_hold", "l_sw": "l_sw", "w_latch_n": "w_latch_n",
    "w_latch_p": "w_latch_p", **_LOGIC_SIZES}


def _sizes(p, **names: str) -> str:
    """`subckt_param=value ...` for an instance line, each value the tile's parameter."""
    return " ".join(f"{key}={f(p[name])}" for key, name in names.items())


def _width_probe(w: _Writer, node: str, pulse: str, also_saved: str) -> None:
    """V(pulse)/vdd integrated on PROBE_C (width = V(node) * PROBE_C / PROBE_GM)."""
    w.lines.append(f"G{node} 0 {node} {pulse} 0 {f(PROBE_GM / w.params['vdd'])}")
    w.lines.append(f"C{node} {node} 0 {f(PROBE_C)}")
    w.lines.append(f"R{node} {node} 0 1e15")
    w.initial_conditions.append(f"v({node})=0")
    w.saves.extend([f"v({node})", f"v({also_saved})"])
    w.vectors.extend([node, also_saved])


# ----------------------------------------------------------------------------- K array
def _query_drivers(w: _Writer, tile: Tile) -> None:
    """Row r's read pulse, q[r] * t_max wide from t_q, on rwl_n, mirrored on rwl_p about
    v_mid; a row with q = 0 rests at v_mid."""
    p = w.params
    for r in range(tile.rows):
        width_s = float(tile.q[r]) * p["t_max"]
        if width_s <= 0:
            w.lines.append(f"Vqn_{r} rwlnk_{r} 0 {f(p['v_mid'])}")
        else:
            w.lines.append(f"Vqn_{r} rwlnk_{r} 0 PULSE({f(p['v_mid'])} {f(p['v_in'])} "
                           f"{f(p.t_q)} {f(p['t_edge'])} {f(p['t_edge'])} {f(width_s)} 1)")
        w.lines.append(f"Eqp_{r} rwlpk_{r} mid2 rwlnk_{r} 0 -1")


def _conversion_gates(w: _Writer) -> None:
    """The HardSigmoid converters' discharge window (from t_conv, until the output window
    ends) and output window (t_align later, T_max long), exactly as charge_to_pulse.cir
    drives the characterised converter: one timing source for testbench and tile."""
    p = w.params
    vdd, t_gate = p["vdd"], p.t_conv
    discharge_s = p["t_max"] + p["t_align"] - _SWITCH_EDGE_S
    window_s = p["t_max"] - _SWITCH_EDGE_S
    w.lines.append(f"VG gate 0 PULSE(0 {f(vdd)} {f(t_gate)} 50p 50p {f(discharge_s)} 1)")
    w.lines.append(f"VGD gate_d 0 PULSE(0 {f(vdd)} {f(t_gate + p['t_align'])} 50p 50p "
                   f"{f(window_s)} 1)")


def _hardsigmoid_converter(w: _Writer, c: int) -> None:
    """K column c's charge-to-pulse converter on its integrator, with its own reference
    diode; its pulse `pulse_c` (and its width probe) is the HardSigmoid output phi."""
    p = w.params
    w.lines.append(f"Ir_{c} vddb nr_{c} {f(p['i_ref'])}")
    w.lines.append(f"Xmr_{c} nr_{c} nr_{c} 0 0 core_nmos "
                   + _sizes(p, w="w_ref_n", l="l_mirror"))
    w.lines.append(f"Xcp_{c} outk_{c} bik_{c} vref gate gate_d pulse_{c} "
                   f"cmp_{c} vdd nbk_{c} nr_{c} charge_to_pulse "
                   + _sizes(p, **CHARGE_TO_PULSE_SIZES))
    _width_probe(w, f"w_{c}", f"pulse_{c}", f"pulse_{c}")


def _k_array(w: _Writer, tile: Tile, k_cols: list[int]) -> None:
    """The K array's `k_cols` (cell (r, c) stores k[c, r]) with the query drivers, and each
    column's readout and HardSigmoid converter."""
    _conversion_gates(w)
    _query_drivers(w, tile)
    word_lines, bitlines = _array_nodes(w, "k", tile.rows, tile.cols, k_cols)
    for c in k_cols:
        _column_cells(w, "k", tile.rows, c, word_lines, bitlines, lambda r, c: tile.k_V[c, r])
        _integrator(w, "k", c)
        _hardsigmoid_converter(w, c)


# ----------------------------------------------------------------------------- V array
def _v_resets(w: _Writer, shift_s: float) -> None:
    """The V readouts' reset, released at t_vrel (on a V-only run's axis, `shift_s` earlier)."""
    p = w.params
    vdd, t_release = p["vdd"], p.t_vrel - shift_s
    w.lines.append(f"VRSTV rstv 0 PULSE({f(vdd)} 0 {f(t_release)} 50p 50p 1 2)")
    w.lines.append(f"VRSTVB rstvb 0 PULSE(0 {f(vdd)} {f(t_release)} 50p 50p 1 2)")


def _signed_converter_controls(w: _Writer, shift_s: float) -> None:
    """The signed converters' controls, as in signed_converter.cir: sign sampled until just
    before the discharge window (from t_vend, s_t_max + s_t_align long), output window
    s_t_align later."""
    p = w.params
    vdd, t_window = p["vdd"], p.t_vend - shift_s
    t_sampled = t_window - _SIGN_SAMPLE_LEAD_S
    discharge_s = p["s_t_max"] + p["s_t_align"] - _SWITCH_EDGE_S
    w.lines += [
        f"VSMP smp 0 PULSE({f(vdd)} 0 {f(t_sampled)} 50p 50p 1 2)",
        f"VSMPB smpb 0 PULSE(0 {f(vdd)} {f(t_sampled)} 50p 50p 1 2)",
        f"VG2 gate2 0 PULSE(0 {f(vdd)} {f(t_window)} 50p 50p {f(discharge_s)} 1)",
        (f"VGD2 gate2_d 0 PULSE(0 {f(vdd)} {f(t_window + p['s_t_align'])} 50p 50p "
         f"{f(p['s_t_max'] - _SWITCH_EDGE_S)} 1)"),
    ]


def _v_row_drivers(w: _Writer, n_rows: int, pulses: dict[int, PulseWaveform] | None,
                   shift_s: float) -> None:
    """Row c's ideal word-line driver: logic pulse_c (0...vdd) -> rwl_n = v_mid...v_in, rwl_p
    mirrored. In a V-only run (`pulses`), pulse_c is the recorded pulse as a PWL source."""
    p = w.params
    gain = (p["v_in"] - p["v_mid"]) / p["vdd"]
    for c in range(n_rows):
        if pulses is not None:
            points = " ".join(f"{f(t)} {f(v)}" for t, v in shift_pwl(pulses[c], shift_s))
            w.lines.append(f"Vpl_{c} pulse_{c} 0 PWL({points})")
        w.lines.append(f"Ewn_{c} rwlnv_{c} vref pulse_{c} 0 {f(gain)}")
        w.lines.append(f"Ewp_{c} rwlpv_{c} vref pulse_{c} 0 {f(-gain)}")


def _signed_converter(w: _Writer, d: int) -> None:
    """V column d's signed converter on its integrator, with its own reference diodes; its
    pulse spulse_d (width probe ws_d) and latched sign s_d give the output."""
    p = w.params
    w.lines.append(f"Irs_{d} vddb nrs_{d} {f(p['s_i_ref'])}")
    w.lines.append(f"Xmrs_{d} nrs_{d} nrs_{d} 0 0 core_nmos "
                   + _sizes(p, w="w_ref_n", l="l_mirror"))
    w.lines.append(f"Irp_{d} prs_{d} 0 {f(p['s_i_ref'])}")
    w.lines.append(f"Xmrp_{d} prs_{d} prs_{d} vddb vddb core_pmos "
                   + _sizes(p, w="w_ref_p", l="l_mirror"))
    w.lines.append(f"Xsc_{d} outv_{d} biv_{d} vref smp smpb gate2 gate2_d spulse_{d} s_{d} "
                   f"vdd nbv_{d} nrs_{d} prs_{d} signed_converter "
                   + _sizes(p, **SIGNED_CONVERTER_SIZES))
    _width_probe(w, f"ws_{d}", f"spulse_{d}", f"s_{d}")


def _v_array(w: _Writer, tile: Tile, v_cols: list[int],
             pulses: dict[int, PulseWaveform] | None, shift_s: float) -> None:
    """The V array's `v_cols` (cell (c, d) stores v[c, d]) with its row drivers, and each
    column's readout (and signed converter when `signed`)."""
    p = w.params
    _v_resets(w, shift_s)
    if p.signed:
        _signed_converter_controls(w, shift_s)
    _v_row_drivers(w, tile.cols, pulses, shift_s)
    word_lines, bitlines = _array_nodes(w, "v", tile.cols, tile.rows, v_cols)
    for d in v_cols:
        _column_cells(w, "v", tile.cols, d, word_lines, bitlines, lambda c, d: tile.v_V[c, d])
        _integrator(w, "v", d)
        if p.signed:
            _signed_converter(w, d)


# ----------------------------------------------------------------------------- the netlist
# The storage nodes' hold (see _held_storage) lets go here: long before anything moves them
# (the write word lines rise after the testbench's t_delay, 1 ns; reads come after the reset).
HOLD_RELEASE_S = 1e-12


def _held_storage(w: _Writer) -> list[str]:
    """Every storage node starts at its level held by an ideal switch to a source at that level,
    closed through the operating point and open from HOLD_RELEASE_S on, rather than by `.ic`:
    ngspice holds each `.ic` node by walking every node of the circuit at every load of the
    operating point (ZeroNoncurRow in cktload.c), so `.ic` on every cell cost a 64-row sky130
    column a quarter of its analysis (0.43 s of 1.70 s; the switches: 0.02 s) and gave the
    same charge and pulse width to 5e-6. Open, a switch leaks (V - V_start) / 1e18 ohm. Each
    node has its own source: with one source shared by a V column's cells, ngspice's sparse
    factorisation filled in 5,712 entries instead of 1,673 (a 64-row sky130 V column)."""
    if not w.held:
        return []
    first_event = w.params.write_pulse_s[0] if w.params.write == "devices" else w.params.t_krel
    if not HOLD_RELEASE_S < 0.1 * first_event:
        raise ParameterError(f"the tile's first event at {first_event:.3g} s leaves no time "
                             f"to release the storage nodes' hold ({HOLD_RELEASE_S:g} s)")
    release = HOLD_RELEASE_S
    lines = [".model tile_hold sw vt=0.5 vh=0 ron=1 roff=1e18",
             f"Vhold hold 0 PWL(0 1 {f(release / 2)} 1 {f(release)} 0)"]
    for node, start_V in w.held:
        lines.append(f"V{node}_start {node}_start 0 {f(start_V)}")
        lines.append(f"S{node} {node} {node}_start hold 0 tile_hold")
    return lines


def _control_cards(w: _Writer, t_stop_s: float) -> list[str]:
    """The storage nodes' hold, initial conditions, saved vectors and the transient analysis,
    after every element."""
    p = w.params
    lines = _held_storage(w)
    lines += [".ic " + chunk for chunk in _chunks(w.initial_conditions)]
    lines += [".save " + chunk for chunk in _chunks(w.saves)]
    lines.append(f".options trtol={f(p.trtol)} reltol={f(p.reltol)} pivrel={f(p.pivrel)}")
    lines.append(f".tran {f(_PRINT_STEP_S)} {f(t_stop_s)} 0 {f(p.max_step)}")
    lines.append(".end")
    return lines


def _check_part(tile: Tile, p: TileParams, part: str, columns: list[int] | None,
                pulses: dict[int, PulseWaveform] | None) -> list[int]:
    """The part's columns (all of its array's by default), after checking that the part can
    be built on its own."""
    if part not in PARTS:
        raise ValueError(f"unknown tile part {part!r}")
    if part != "full" and not p.splittable:
        raise ParameterError("wire resistance couples the columns: a tile with r_wire > 0 runs "
                             "as one netlist")
    n_cols = tile.cols if part in ("full", "k") else tile.rows
    columns = list(range(n_cols)) if columns is None else list(columns)
    if part == "v" and (pulses is None or set(pulses) != set(range(tile.cols))):
        raise ValueError("part 'v' needs the pulse waveform of every V row")
    return columns


def build(tile: Tile, params: TileParams, models: processes.ModelSet, part: str = "full",
          columns: list[int] | None = None,
          pulses: dict[int, PulseWaveform] | None = None,
          probe_storage: bool = False) -> Netlist:
    """The netlist of a tile, or of one part of it.

    part 'full': both arrays and all their periphery, the V rows driven by the converters.
    part 'k':    the K array's `columns` with their readouts and converters (no V array).
    part 'v':    the V array's `columns` with their readouts, the V rows driven by PWL sources
                 the converters' pulses (`pulses`: row -> [(t, V)]).
    probe_storage: also save every storage node, `snk_r_c` / `snv_c_d` (what the write left).
    """
    p = params
    columns = _check_part(tile, p, part, columns, pulses)
    seed = _pdk_seed(tile, p, models, part, columns)
    model_lines = models.lines(seed)
    lines = _preamble(tile, p, models, part, columns, model_lines)
    w = _Writer(p, _mismatch(p, models), probe_storage)
    w.lines += _supplies(p)
    if part in ("full", "k"):
        _k_array(w, tile, columns if part == "k" else list(range(tile.cols)))
    # A V-only run's read phases start v_shift earlier: nothing happens in the V array between
    # its write and its readouts' reset.
    shift_s = p.v_shift if part == "v" else 0.0
    if part in ("full", "v"):
        _v_array(w, tile, columns if part == "v" else list(range(tile.rows)),
                 pulses if part == "v" else None, shift_s)
    # A K-only run stops when the last HardSigmoid pulse has ended: the V stage's time is not
    # its business.
    t_stop_s = p.t_vend if part == "k" else p.t_end - shift_s
    lines += w.lines + _control_cards(w, t_stop_s)
    if models.prebin_file:
        # As a sweep does: each role calls a copy of its device with only the model bins
        # the tile's sizes use, and the library's big device file is not loaded at all.
        sizes: dict[str, set] = {}
        for device in devices.check_sizes("\n".join(lines), models):
            sizes.setdefault(device.role, set()).add((device.w_m, device.l_m))
        lines[2:2 + len(model_lines)] = models.lines(seed, sizes)
    return Netlist("\n".join(lines) + "\n", w.vectors, part, columns)
