"""The SPICE netlist of one attention tile, generated from its inputs.

Geometry (MISSION.md): the K array has the head dimension on its R rows and the C tokens on its
columns; the V array has the C tokens on its rows and the head dimension (R) on its columns. One
query q (R,) is read against keys k (C, R) and values v (C, R), the simulator's (tokens, dim)
layout: cell (r, c) of the K array stores k[c, r], cell (c, d) of the V array stores v[c, d].

Signal chain, with the periphery of the characterisation netlists:

1. every storage node starts at its stored voltage (`.ic`), write transistors off;
2. the integrators (cells/sense_amp.sub) are reset until t_rst;
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

Wire parasitics (`r_wire`, `c_wire` per cell pitch): with r_wire > 0 every bitline and word line
becomes an R-C ladder (drivers at column 0 / integrators below the last row); with only c_wire,
each bitline carries its lumped capacitance. Word-line resistance couples the columns, so the
split run is refused then.

Every number written goes through gcsim.core.values.format_number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gcsim.spice import process as processes
from gcsim.core import resources
from gcsim.core.errors import ParameterError
from gcsim.spice.template import Template
from gcsim.core.values import format_number as f

# Periphery parameters taken from the characterisation testbench charge_to_pulse.cir, and cell
# parameters from gain_cell_pulse.cir, so the tile uses the circuits that were characterised.
_C2P_PARAMS = ("vdd", "v_mid", "t_edge", "t_rst", "t_gap", "t_hold", "t_max", "t_align", "i_ref",
               "c_int", "i_bias", "cc", "rz", "temp_c")
_CELL_PARAMS = ("c_store", "w_write", "l_write", "w_read_n", "l_read_n", "w_read_p", "l_read_p",
                "v_in")
PROBE_C = 1e-12     # probe integrators: 1 pF
PROBE_GM = 1e-3     # width integrator transconductance, A/V at vdd (so 1e-9 s per volt)


@dataclass
class TileParams:
    """Electrical and timing parameters of a tile (SI units)."""

    values: dict[str, float] = field(default_factory=dict)
    r_wire: float = 0.0     # ohm per cell pitch
    c_wire: float = 0.0     # farad per cell pitch
    max_step: float = 50e-12   # within 0.12-0.2 % FS of a 20 ps run on phi and A, 3x faster
    signed: bool = False    # V readouts end in the signed converter
    mc_seed: int | None = None   # Pelgrom mismatch of every cell transistor (Monte Carlo)

    @property
    def signed_available(self) -> bool:
        return (resources.NETLISTS / "signed_converter.cir").is_file()

    @classmethod
    def defaults(cls, r_wire: float = 0.0, c_wire: float = 0.0,
                 signed: bool | None = None) -> TileParams:
        c2p = Template.load(resources.NETLISTS / "charge_to_pulse.cir").defaults
        cell = Template.load(resources.NETLISTS / "gain_cell_pulse.cir").defaults
        values = {name: c2p[name] for name in _C2P_PARAMS}
        values.update({name: cell[name] for name in _CELL_PARAMS})
        if r_wire < 0 or c_wire < 0:
            raise ParameterError("wire R and C per pitch must be >= 0")
        signed_cir = resources.NETLISTS / "signed_converter.cir"
        if signed is None:
            signed = signed_cir.is_file()
        if signed:
            if not signed_cir.is_file():
                raise ParameterError(f"no signed converter netlist ({signed_cir})")
            sc = Template.load(signed_cir).defaults
            values.update({"s_i_ref": sc["i_ref"], "s_t_max": sc["t_max"],
                           "s_t_align": sc["t_align"]})
        return cls(values, float(r_wire), float(c_wire), signed=bool(signed))

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def readout_timing_s(self) -> dict[str, float]:
        """The V readout's timing the readout_loading fit needs (gcsim.fit.loading)."""
        return {"t_gap": self["t_gap"], "t_vrel": self.t_vrel, "t_conv": self.t_conv,
                "t_vend": self.t_vend, "t_align": self["t_align"]}

    @property
    def t_q(self) -> float:
        """Start of the query pulses."""
        return self["t_rst"] + self["t_gap"]

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
        """How much earlier a V-only run's time axis starts: nothing happens in the V array
        before its readouts' reset (the V rows rest until the converters fire)."""
        return self.t_vrel - self["t_rst"]

    @property
    def t_vend(self) -> float:
        """End of the V integration (the last HardSigmoid pulse has ended t_hold before)."""
        return self.t_conv + self["t_align"] + self["t_max"] + 2 * self["t_edge"] + self["t_hold"]

    @property
    def t_end(self) -> float:
        if not self.signed:
            return self.t_vend
        return self.t_vend + self["s_t_align"] + self["s_t_max"] + 2 * self["t_edge"] + 0.5e-9

    @property
    def splittable(self) -> bool:
        """Columns are independent circuits (no word-line resistance)."""
        return self.r_wire == 0.0


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
    text: str
    vectors: list[str]
    part: str
    columns: list[int]


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


def _chunks(items: list[str], size: int = 8) -> list[str]:
    return [" ".join(items[i:i + size]) for i in range(0, len(items), size)]


def _pulse_source(name: str, node: str, p: TileParams, width: float) -> str:
    if width <= 0:
        return f"{name} {node} 0 {f(p['v_mid'])}"
    return (f"{name} {node} 0 PULSE({f(p['v_mid'])} {f(p['v_in'])} {f(p.t_q)} {f(p['t_edge'])} "
            f"{f(p['t_edge'])} {f(width)} 1)")


def _ladder(prefix: str, head: str, nodes: list[str], p: TileParams, lines: list[str]) -> None:
    """R-C ladder from `head` through `nodes` (one cell pitch each)."""
    previous = head
    for i, node in enumerate(nodes):
        lines.append(f"R{prefix}_{i} {previous} {node} {f(p.r_wire)}")
        if p.c_wire > 0:
            lines.append(f"C{prefix}_{i} {node} 0 {f(p.c_wire)}")
        previous = node


def clean_pulse(time_s: np.ndarray, values: np.ndarray, high: float, width_s: float,
                min_dt: float = 1e-13) -> list[tuple[float, float]]:
    """A recorded converter pulse as the trapezoid an ideal word-line driver would make of it,
    as PWL points: it starts where the recording first crosses half of `high`, lasts the
    recording's area-equivalent `width_s` at `high`, and keeps the recording's own 10-90 % edge
    times (as a straight edge). The recording's ringing (tens of mV) is dropped: every bend of it would be a PWL
    breakpoint that the V-array run must step through.

    ngspice makes every PWL point a breakpoint, and points closer than `min_dt` would force
    vanishing timesteps, so the points sit on one grid of `min_dt` for every row."""
    t = np.asarray(time_s, dtype=float)
    v = np.asarray(values, dtype=float)
    end = float(t[-1])
    if width_s <= 0 or v.max() < high / 2:
        return [(0.0, 0.0), (end, 0.0)]
    last = t.size - 1

    def when(i: int, level: float) -> float:
        """Where the segment from sample i to i + 1 meets `level`."""
        i = min(max(i, 0), last - 1)
        span = v[i + 1] - v[i]
        fraction = np.clip((level - v[i]) / span, 0.0, 1.0) if span else 0.0
        return float(t[i] + fraction * (t[i + 1] - t[i]))

    def first(mask: np.ndarray, start: int) -> int:
        hits = np.flatnonzero(mask[start:])
        return start + int(hits[0]) if hits.size else last

    def last_before(mask: np.ndarray, stop: int) -> int:
        hits = np.flatnonzero(mask[:stop])
        return int(hits[-1]) if hits.size else 0

    lo, mid, hi = 0.1 * high, 0.5 * high, 0.9 * high
    on = first(v >= mid, 0)                 # first sample at half height or above
    off = first(v < mid, on)                # first sample back below it
    t_on = when(on - 1, mid)
    # A straight edge spends 80 % of its length between 10 and 90 %.
    rise = max(when(first(v >= hi, on) - 1, hi) - when(last_before(v < lo, on), lo),
               min_dt) / 0.8
    fall = max(when(first(v <= lo, off) - 1, lo) - when(last_before(v > hi, off), hi),
               min_dt) / 0.8
    # Half-height crossings t_on and t_on + width make the area high * width.
    points = [(0.0, 0.0), (t_on - rise / 2, 0.0), (t_on + rise / 2, high),
              (t_on + width_s - fall / 2, high), (t_on + width_s + fall / 2, 0.0), (end, 0.0)]
    out: list[tuple[float, float]] = []
    for time, level in points:
        tick = round(time / min_dt) * min_dt
        if not out or tick > out[-1][0]:
            out.append((tick, level))
    return out


def _mismatch(p: TileParams, models: processes.ModelSet):
    """Per-cell threshold shifts for Monte Carlo: Pelgrom sigma of each cell transistor times a
    standard-normal draw that is a fixed function of (seed, cell name, device), so a cell gets
    the same draw whichever netlist (split or single) it is in."""
    if p.mc_seed is None:
        return lambda name: ""
    if models.mismatch != "pelgrom":
        raise ParameterError(f"models {models.name}: Monte Carlo in the tile needs Pelgrom "
                             "coefficients for the cell roles (e.g. builtin)")
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


def shift_pwl(points: list[tuple[float, float]], shift: float) -> list[tuple[float, float]]:
    """The waveform seen from `shift` on, on a time axis starting there."""
    if shift <= 0:
        return points
    t = np.array([p[0] for p in points])
    v = np.array([p[1] for p in points])
    later = t > shift + 1e-13
    start = float(np.interp(shift, t, v))
    return [(0.0, start)] + list(zip((t[later] - shift).tolist(), v[later].tolist()))


def build(tile: Tile, params: TileParams, models: processes.ModelSet, part: str = "full",
          columns: list[int] | None = None,
          pulses: dict[int, list[tuple[float, float]]] | None = None) -> Netlist:
    """The netlist of a tile, or of one part of it.

    part 'full': both arrays and all their periphery, the V rows driven by the converters.
    part 'k':    the K array's `columns` with their readouts and converters (no V array).
    part 'v':    the V array's `columns` with their readouts, the V rows driven by PWL sources
                 the converters' pulses (`pulses`: row -> [(t, V)]).
    """
    p = params
    R, C = tile.rows, tile.cols
    if part not in ("full", "k", "v"):
        raise ValueError(f"unknown tile part {part!r}")
    if part != "full" and not p.splittable:
        raise ParameterError("wire resistance couples the columns: a tile with r_wire > 0 runs "
                             "as one netlist")
    n_cols = C if part in ("full", "k") else R
    columns = list(range(n_cols)) if columns is None else list(columns)
    if part == "v" and (pulses is None or set(pulses) != set(range(C))):
        raise ValueError("part 'v' needs the pulse waveform of every V row")
    vdd, v_mid = p["vdd"], p["v_mid"]
    lines = [(f"* gcsim validate tile {R}x{C} ({part}, columns {columns[0]}..{columns[-1]}) "
              f"models {models.name}")]
    lines.append(f".options temp={f(p['temp_c'])}")
    lines += models.lines()
    lines += _subcircuits()
    lines.append(".subckt tile_cell sn rwl_n rwl_p bl vdd wwl wbl params: dn=0 dp=0 dw=0")
    lines.append("X1 sn wwl wbl rwl_n rwl_p bl vdd gain_cell " + " ".join(
        f"{name}={f(p[name])}" for name in _CELL_PARAMS if name != "v_in")
        + " dvth_read_n={dn} dvth_read_p={dp} dvth_write={dw}")
    lines.append(".ends tile_cell")
    mismatch = _mismatch(p, models)
    lines += [
        f"VDD vdd 0 {f(vdd)}", f"VDDB vddb 0 {f(vdd)}", f"VREF vref 0 {f(v_mid)}",
        f"VMID2 mid2 0 {f(2 * v_mid)}", "VWWL wwl 0 0", f"VWBL wbl 0 {f(v_mid)}",
        f"VRST rst 0 PULSE({f(vdd)} 0 {f(p['t_rst'])} 50p 50p 1 2)",
        f"VRSTB rstb 0 PULSE(0 {f(vdd)} {f(p['t_rst'])} 50p 50p 1 2)",
    ]
    ic: list[str] = []
    saves: list[str] = []
    vectors: list[str] = ["time"]
    ladders = p.r_wire > 0

    def cell_nodes(array: str, n_rows: int, n_cols: int, cols: list[int]):
        """Node names of each cell's word lines and bitline (ladders when r_wire > 0)."""
        wl = {}
        for r in range(n_rows):
            if ladders:
                names_n = [f"rwln{array}_{r}_{c}" for c in range(n_cols)]
                names_p = [f"rwlp{array}_{r}_{c}" for c in range(n_cols)]
                _ladder(f"wn{array}_{r}", f"rwln{array}_{r}", names_n, p, lines)
                _ladder(f"wp{array}_{r}", f"rwlp{array}_{r}", names_p, p, lines)
                wl[r] = (names_n, names_p)
            else:
                wl[r] = ([f"rwln{array}_{r}"] * n_cols, [f"rwlp{array}_{r}"] * n_cols)
        bl = {}
        for c in cols:
            if ladders:
                # Integrator below the last row: the ladder runs from the bottom node upwards.
                names = [f"bl{array}_{c}_{r}" for r in range(n_rows)]
                _ladder(f"b{array}_{c}", f"bl{array}_{c}", names[::-1], p, lines)
                bl[c] = names
            else:
                bl[c] = [f"bl{array}_{c}"] * n_rows
                if p.c_wire > 0:
                    lines.append(f"Cb{array}_{c} bl{array}_{c} 0 {f(p.c_wire * n_rows)}")
        return wl, bl

    def width_probe(node: str, pulse: str, also_saved: str) -> None:
        """V(pulse)/vdd integrated on PROBE_C (width = V(node) * PROBE_C / PROBE_GM)."""
        lines.append(f"G{node} 0 {node} {pulse} 0 {f(PROBE_GM / vdd)}")
        lines.append(f"C{node} {node} 0 {f(PROBE_C)}")
        lines.append(f"R{node} {node} 0 1e15")
        ic.append(f"v({node})=0")
        saves.extend([f"v({node})", f"v({also_saved})"])
        vectors.extend([node, also_saved])

    def readout(array: str, c: int, converter: bool) -> None:
        nb = f"nb{array}_{c}"
        rst, rstb = ("rst", "rstb") if array == "k" else ("rstv", "rstvb")
        lines.append(f"Vp{array}_{c} bl{array}_{c} bi{array}_{c} 0")
        lines.append(f"F{array}_{c} 0 q{array}_{c} Vp{array}_{c} 1")
        lines.append(f"Cq{array}_{c} q{array}_{c} 0 {f(PROBE_C)}")
        lines.append(f"Rq{array}_{c} q{array}_{c} 0 1e15")
        lines.append(f"Ib{array}_{c} vddb {nb} {f(p['i_bias'])}")
        lines.append(f"Xmb{array}_{c} {nb} {nb} 0 0 core_nmos w=1u l=250n")
        lines.append(f"Xsa{array}_{c} bi{array}_{c} out{array}_{c} {rst} {rstb} vref vdd {nb} "
                     f"sense_amp c_int={f(p['c_int'])} cc={f(p['cc'])} rz={f(p['rz'])}")
        ic.append(f"v(q{array}_{c})=0")
        saves.append(f"v(q{array}_{c})")
        vectors.append(f"q{array}_{c}")
        if array == "v" and p.signed:
            lines.append(f"Irs_{c} vddb nrs_{c} {f(p['s_i_ref'])}")
            lines.append(f"Xmrs_{c} nrs_{c} nrs_{c} 0 0 core_nmos w=4u l=500n")
            lines.append(f"Irp_{c} prs_{c} 0 {f(p['s_i_ref'])}")
            lines.append(f"Xmrp_{c} prs_{c} prs_{c} vddb vddb core_pmos w=12u l=500n")
            lines.append(f"Xsc_{c} outv_{c} biv_{c} vref smp smpb gate2 gate2_d spulse_{c} s_{c} "
                         f"vdd {nb} nrs_{c} prs_{c} signed_converter")
            width_probe(f"ws_{c}", f"spulse_{c}", f"s_{c}")
        if converter:
            lines.append(f"Ir_{c} vddb nr_{c} {f(p['i_ref'])}")
            lines.append(f"Xmr_{c} nr_{c} nr_{c} 0 0 core_nmos w=4u l=500n")
            lines.append(f"Xcp_{c} out{array}_{c} bi{array}_{c} vref gate gate_d pulse_{c} "
                         f"cmp_{c} vdd {nb} nr_{c} charge_to_pulse")
            width_probe(f"w_{c}", f"pulse_{c}", f"pulse_{c}")

    def add_cells(tag, n_rows, col, wl, bl, stored_V):
        """One bitline's cells of array `tag`: cell (row, col) stores stored_V(row, col)."""
        for row in range(n_rows):
            name = f"X{tag}_{row}_{col}"
            lines.append(f"{name} sn{tag}_{row}_{col} {wl[row][0][col]} {wl[row][1][col]} "
                         f"{bl[col][row]} vdd wwl wbl tile_cell" + mismatch(name))
            ic.append(f"v(sn{tag}_{row}_{col})={f(stored_V(row, col))}")

    if part in ("full", "k"):
        k_cols = columns if part == "k" else list(range(C))
        t_gate = p.t_conv
        lines.append(f"VG gate 0 PULSE(0 {f(vdd)} {f(t_gate)} 50p 50p {f(p['t_max'] - 50e-12)} 1)")
        lines.append(f"VGD gate_d 0 PULSE(0 {f(vdd)} {f(t_gate + p['t_align'])} 50p 50p "
                     f"{f(p['t_max'] - 50e-12)} 1)")
        for r in range(R):
            lines.append(_pulse_source(f"Vqn_{r}", f"rwlnk_{r}", p, float(tile.q[r]) * p["t_max"]))
            lines.append(f"Eqp_{r} rwlpk_{r} mid2 rwlnk_{r} 0 -1")
        wl, bl = cell_nodes("k", R, C, k_cols)
        for c in k_cols:
            add_cells("k", R, c, wl, bl, lambda r, c: tile.k_V[c, r])
            readout("k", c, converter=True)
    shift = p.v_shift if part == "v" else 0.0
    if part in ("full", "v"):
        v_cols = columns if part == "v" else list(range(R))
        gain = (p["v_in"] - v_mid) / vdd
        t_release = p.t_vrel - shift
        lines.append(f"VRSTV rstv 0 PULSE({f(vdd)} 0 {f(t_release)} 50p 50p 1 2)")
        lines.append(f"VRSTVB rstvb 0 PULSE(0 {f(vdd)} {f(t_release)} 50p 50p 1 2)")
        if p.signed:
            t2 = p.t_vend - shift
            width2 = p["s_t_max"] + p["s_t_align"] - 50e-12
            lines += [
                f"VSMP smp 0 PULSE({f(vdd)} 0 {f(t2 - 200e-12)} 50p 50p 1 2)",
                f"VSMPB smpb 0 PULSE(0 {f(vdd)} {f(t2 - 200e-12)} 50p 50p 1 2)",
                f"VG2 gate2 0 PULSE(0 {f(vdd)} {f(t2)} 50p 50p {f(width2)} 1)",
                (f"VGD2 gate2_d 0 PULSE(0 {f(vdd)} {f(t2 + p['s_t_align'])} 50p 50p "
                 f"{f(p['s_t_max'] - 50e-12)} 1)"),
            ]
        for c in range(C):
            if part == "v":
                points = " ".join(f"{f(t)} {f(v)}" for t, v in shift_pwl(pulses[c], shift))
                lines.append(f"Vpl_{c} pulse_{c} 0 PWL({points})")
            lines.append(f"Ewn_{c} rwlnv_{c} vref pulse_{c} 0 {f(gain)}")
            lines.append(f"Ewp_{c} rwlpv_{c} vref pulse_{c} 0 {f(-gain)}")
        wl, bl = cell_nodes("v", C, R, v_cols)
        for d in v_cols:
            add_cells("v", C, d, wl, bl, lambda c, d: tile.v_V[c, d])
            readout("v", d, converter=False)
    lines += [".ic " + chunk for chunk in _chunks(ic)]
    lines += [".save " + chunk for chunk in _chunks(saves)]
    # A K-only run stops when the last HardSigmoid pulse has ended: the V stage's time is not
    # its business.
    t_stop = p.t_vend if part == "k" else p.t_end - shift
    lines.append(f".tran {f(p.max_step)} {f(t_stop)} 0 {f(p.max_step)}")
    lines.append(".end")
    return Netlist("\n".join(lines) + "\n", vectors, part, columns)
