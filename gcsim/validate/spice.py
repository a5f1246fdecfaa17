"""Run a tile in ngspice and extract its stages.

Two ways, which give the same numbers (to ngspice's integration tolerance; see tests):

* `single`: the whole tile in one netlist (`tile.build(part='full')`);
* `split`:  stage 1 runs each K column in its own ngspice process; the converters' pulses come
  back and drive, as clean PWL trapezoids (`waveforms.clean_pulse`), stage 2: each V column in
  its own process. Columns share only ideal sources (supplies, references, query pulses, and in
  stage 2 the recorded pulses), so a column's circuit is the same whichever run it is in.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

import numpy as np

from gcsim.spice import engine
from gcsim.spice import process as processes
from gcsim.core.errors import GcsimError
from gcsim.validate import tile as tile_module
from gcsim.validate.tile import PROBE_C, PROBE_GM, Tile
from gcsim.validate.timing import TileParams
from gcsim.validate.waveforms import clean_pulse


@dataclass
class SpiceStages:
    S_C: np.ndarray       # (C,) K column charges
    phi_s: np.ndarray     # (C,) converter pulse widths
    A_C: np.ndarray       # (R,) V column charges
    out: np.ndarray | None = None   # (R,) signed converter: sign x width / t_max
    runs: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0    # CPU time of the ngspice worker processes
    mode: str = "split"
    netlist_lines: int = 0
    notes: list[str] = field(default_factory=list)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _groups(items: list[int], n: int) -> list[list[int]]:
    n = max(1, min(n, len(items)))
    return [list(chunk) for chunk in np.array_split(np.array(items), n) if len(chunk)]


def _check(result: engine.RunResult, what: str, t_end: float) -> dict[str, np.ndarray]:
    if not result.ok:
        raise GcsimError(f"ngspice failed on {what}: {result.error or result.kind}")
    t = result.vectors["time"]
    if t.size < 2 or t[-1] < t_end * (1 - 1e-6):
        raise GcsimError(f"ngspice stopped {what} at {t[-1]:.4g} s of {t_end:.4g} s: "
                         + " | ".join(result.messages[-3:]))
    return result.vectors


def _width(vectors, c, prefix="w") -> float:
    return float(vectors[f"{prefix}_{c}"][-1]) * PROBE_C / PROBE_GM


def _signed(vectors, d, params: TileParams) -> float:
    sign = 1.0 if vectors[f"s_{d}"][-1] > params["vdd"] / 2 else -1.0
    return sign * _width(vectors, d, "ws") / params["s_t_max"]


def _charge(vectors, name, start: float, stop: float) -> float:
    """Charge through a column's probe while its integrator integrates (reset released at
    `start` to `stop`): what the readout holds. Before the release the integrator is shorted
    and its virtual ground (about 1 mV off mid-rail) draws a little current from idle cells;
    the reset throws that charge away, so it is not counted."""
    t, q = vectors["time"], vectors[name]
    return float(np.interp(stop, t, q) - np.interp(start, t, q)) * PROBE_C


def _windows(params: TileParams, shift: float) -> tuple[tuple[float, float], tuple[float, float]]:
    settle = 50e-12   # the reset switch's edge
    k = (params.t_krel + settle, params.t_conv)
    v = (params.t_vrel + settle - shift, params.t_vend - shift)
    return k, v


def run_tile(tile: Tile, params: TileParams, models: processes.ModelSet, jobs: int = 2,
             split: bool = True, groups: int | None = None, timeout_s: float = 900.0
             ) -> SpiceStages:
    """Simulate a tile; `groups` column groups per stage (default: one column per ngspice run).

    One column per run is the fastest split: ngspice's cost grows faster than the circuit
    (measured on a 64-row K column: 1.2 s for one column, 9.7 s for four in one netlist),
    because every column's converter adds its own breakpoints and comparator edges to the
    shared timestep, and the sparse matrix grows."""
    started = time.perf_counter()
    cpu_start = _children_cpu()
    R, C = tile.rows, tile.cols
    S = np.full(C, np.nan)
    phi = np.full(C, np.nan)
    A = np.full(R, np.nan)
    out = np.full(R, np.nan) if params.signed else None
    runs = 0
    lines = 0
    if not split or not params.splittable:
        k_window, v_window = _windows(params, 0.0)
        netlist = tile_module.build(tile, params, models, "full")
        request = engine.RunRequest(netlist.text, netlist.vectors, models.ngbehavior, timeout_s)
        for _, result in engine.run_many([request], 1):
            vectors = _check(result, "the tile", params.t_end)
        for c in range(C):
            S[c] = _charge(vectors, f"qk_{c}", *k_window)
            phi[c] = _width(vectors, c)
        for d in range(R):
            A[d] = _charge(vectors, f"qv_{d}", *v_window)
            if out is not None:
                out[d] = _signed(vectors, d, params)
        return SpiceStages(S, phi, A, out, 1, time.perf_counter() - started,
                           _children_cpu() - cpu_start, "single",
                           len(netlist.text.splitlines()))
    k_window, v_window = _windows(params, params.v_shift)
    # Stage 1: K columns, their readouts and converters.
    requests = []
    for cols in _groups(list(range(C)), groups or C):
        netlist = tile_module.build(tile, params, models, "k", cols)
        lines += len(netlist.text.splitlines())
        requests.append(engine.RunRequest(netlist.text, netlist.vectors, models.ngbehavior,
                                          timeout_s, tag=cols))
    pulses: dict[int, list[tuple[float, float]]] = {}
    for request, result in engine.run_many(requests, jobs):
        vectors = _check(result, f"K columns {request.tag[0]}..{request.tag[-1]}", params.t_vend)
        runs += 1
        for c in request.tag:
            S[c] = _charge(vectors, f"qk_{c}", *k_window)
            phi[c] = _width(vectors, c)
            pulses[c] = clean_pulse(vectors["time"], vectors[f"pulse_{c}"], params["vdd"],
                                    phi[c])
    # Stage 2: V columns driven by the recorded pulses.
    requests = []
    for cols in _groups(list(range(R)), groups or R):
        netlist = tile_module.build(tile, params, models, "v", cols, pulses)
        lines += len(netlist.text.splitlines())
        requests.append(engine.RunRequest(netlist.text, netlist.vectors, models.ngbehavior,
                                          timeout_s, tag=cols))
    for request, result in engine.run_many(requests, jobs):
        vectors = _check(result, f"V columns {request.tag[0]}..{request.tag[-1]}",
                         params.t_end - params.v_shift)
        runs += 1
        for d in request.tag:
            A[d] = _charge(vectors, f"qv_{d}", *v_window)
            if out is not None:
                out[d] = _signed(vectors, d, params)
    return SpiceStages(S, phi, A, out, runs, time.perf_counter() - started,
                       _children_cpu() - cpu_start, "split", lines)
