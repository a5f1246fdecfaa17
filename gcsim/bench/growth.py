"""How cost grows with size (`gcsim bench growth`): a tile validation's SPICE side against its
rows, the array simulator against tokens and window, a sweep's throughput against points per
ngspice run; each against a baseline timed in the same run, with the machine's load average.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterable, Iterator

import numpy as np

from gcsim.spice import engine
from gcsim.spice.executors import LocalExecutor
from gcsim.spice import process as processes

# ngspice's own accounting (`rusage all`) under the names the reports use.
ACCOUNTING = {
    "equations": "Circuit Equations",
    "nonzeros": "Circuit total non-zeroes",
    "fill_ins": "Circuit fill-in non-zeroes",
    "timepoints": "Transient timepoints",
    "iterations": "Total iterations",
    "transient_iterations": "Transient iterations",
    "analysis_s": "Total analysis time (seconds)",
    "transient_s": "Transient analysis time",
    # "Matrix load time": evaluating every device model and stamping the matrix.
    "device_eval_s": "Matrix load time",
    "transient_device_s": "Transient load time",
    "reorder_s": "Matrix reorder time",
    "factor_s": "Matrix factor time",
    "solve_s": "Matrix solve time",
    "parse_s": "Netlist parsing time",
    "expand_s": "Subckt and Param expansion time",
}


# ------------------------------------------------------------------------------- common
def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine() -> dict:
    return {"cores": os.cpu_count(), "load_average": load_average()}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _sig(value: float, digits: int = 4) -> float:
    """Rounded to significant figures: a fixed number of decimals loses a short time."""
    return float(f"{value:.{digits}g}") if value and math.isfinite(value) else value


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


class RunRecorder(LocalExecutor):
    """The local executor, with ngspice's accounting switched on, keeping each run's result:
    `calls[i]` are the results of the i-th `run_many` call (a tile's K stage, then its V
    stage)."""

    is_local = False     # so that engine.run_many hands the runs to this object

    def __init__(self, workers: int = 1):
        self.workers = workers
        self.calls: list[list[engine.RunResult]] = []

    def threads(self) -> int:
        return self.workers

    def run_many(self, requests: Iterable[engine.RunRequest], workers: int = 1
                 ) -> Iterator[tuple[engine.RunRequest, engine.RunResult]]:
        results: list[engine.RunResult] = []
        self.calls.append(results)
        counted = (dataclasses.replace(request, accounting=True) for request in requests)
        for request, result in engine.run_many(counted, workers, executor=LocalExecutor()):
            results.append(result)
            yield request, result


def run_summary(results: list[engine.RunResult]) -> dict:
    """Medians over runs: wall and CPU seconds in the worker, the circuit load's wall
    seconds, and ngspice's accounting (ACCOUNTING), with `sparse_s` (reorder + factor +
    solve) and `op_s` (the analysis before the transient: the operating point)."""
    ok = [r for r in results if r.ok]
    if not ok:
        return {"runs": 0}

    def median(values) -> float:
        values = [v for v in values if v is not None and math.isfinite(v)]
        return _sig(statistics.median(values)) if values else float("nan")

    summary = {"runs": len(ok), "wall_s": median(r.elapsed_s for r in ok),
               "cpu_s": median(r.cpu_s for r in ok), "load_s": median(r.load_s for r in ok)}
    for name, key in ACCOUNTING.items():
        summary[name] = median(r.accounting.get(key) for r in ok)
    summary["sparse_s"] = median(
        sum(r.accounting.get(k, 0.0) for k in ("Matrix reorder time", "Matrix factor time",
                                                "Matrix solve time")) for r in ok)
    summary["op_s"] = median(
        r.accounting.get("Total analysis time (seconds)", math.nan)
        - r.accounting.get("Transient analysis time", math.nan) for r in ok)
    # ngspice times itself by the clock, so a busy machine stretches its figures (they can
    # exceed the run's CPU time); their shares of the analysis hold better.
    parts = {"device_share": ("Matrix load time",),
             "sparse_share": ("Matrix reorder time", "Matrix factor time", "Matrix solve time")}
    for name, keys in parts.items():
        summary[name] = median(_share(r, keys) for r in ok)
    summary["op_share"] = median(
        1.0 - r.accounting.get("Transient analysis time", math.nan) /
        r.accounting["Total analysis time (seconds)"]
        if r.accounting.get("Total analysis time (seconds)") else math.nan for r in ok)
    # The same parts in CPU seconds: each clock figure times the run's CPU / wall (the share
    # of the run's time it had a core), so a busy machine does not inflate them.
    for name, keys in (("device_cpu_s", ("Matrix load time",)),
                       ("sparse_cpu_s", ("Matrix reorder time", "Matrix factor time",
                                         "Matrix solve time"))):
        summary[name] = median(sum(r.accounting.get(k, 0.0) for k in keys) * _on_core(r)
                               for r in ok)
    # Device evaluation per circuit equation per transient iteration: flat while the work
    # per device stays the same; it rises when the devices' data outgrow the caches.
    summary["device_ns_per_equation_iteration"] = median(
        r.accounting.get("Transient load time", math.nan) * _on_core(r) * 1e9
        / (r.accounting.get("Circuit Equations", math.nan)
           * r.accounting.get("Transient iterations", math.nan))
        if r.accounting.get("Transient iterations") else math.nan for r in ok)
    summary["op_cpu_s"] = median(
        (r.accounting.get("Total analysis time (seconds)", math.nan)
         - r.accounting.get("Transient analysis time", math.nan)) * _on_core(r) for r in ok)
    return summary


def _on_core(result: engine.RunResult) -> float:
    return min(1.0, result.cpu_s / result.elapsed_s) if result.elapsed_s > 0 else math.nan


def _share(result: engine.RunResult, keys: tuple[str, ...]) -> float:
    total = result.accounting.get("Total analysis time (seconds)")
    if not total:
        return math.nan
    return sum(result.accounting.get(key, 0.0) for key in keys) / total


_ANALYSES = (".tran", ".dc", ".op", ".ac", ".noise", ".ic", ".nodeset", ".save", ".print",
             ".plot", ".meas", ".four", ".probe", ".width")


def empty_netlist(text: str) -> str:
    """The netlist with its model library, parameters and subcircuit definitions but no
    instance and no analysis, plus a 1 V source on 1 kohm and a 2 ns transient: a run of it
    is the fixed cost every run pays (the process, ngspice's start, the library load)."""
    lines = text.splitlines()
    kept = [lines[0]]
    depth, dropping, control = 0, False, False
    for line in lines[1:]:
        low = line.strip().lower()
        if control:
            control = not low.startswith(".endc")
            continue
        if low.startswith(".control"):
            control = True
            continue
        if low.startswith("+"):     # a continuation goes with its card
            if not dropping:
                kept.append(line)
            continue
        dropping = False
        if low.startswith(".subckt"):
            depth += 1
        elif low.startswith(".ends"):
            depth = max(0, depth - 1)
        elif low.startswith(".end"):
            continue
        elif depth == 0 and (low[:1].isalpha() or low.startswith(_ANALYSES)):
            dropping = True
            continue
        kept.append(line)
    kept += ["v_gcsim_empty n_gcsim_empty 0 1", "r_gcsim_empty n_gcsim_empty 0 1k",
             ".tran 1n 2n", ".end"]
    return "\n".join(kept) + "\n"


def fixed_cost_runs(netlist: str, models: processes.ModelSet, count: int,
                    jobs: int) -> tuple[list[engine.RunResult], float]:
    """`count` runs of `empty_netlist(netlist)`, `jobs` at a time (as the real runs go), and
    the CPU seconds of their whole worker processes (fork to exit), as the tile's and the
    sweep's CPU totals count them."""
    from gcsim.spice.executors import LocalExecutor

    request = engine.RunRequest(empty_netlist(netlist), ["time"], models.ngbehavior,
                                accounting=True)
    cpu = _children_cpu_s()
    results = [result for _, result in
               engine.run_many([request] * count, jobs, executor=LocalExecutor())]
    cpu = _children_cpu_s() - cpu
    failed = [r for r in results if not r.ok]
    if failed:
        from gcsim.core.errors import GcsimError
        raise GcsimError(f"the empty run (library only) failed: {failed[0].error}")
    return results, cpu


def _fixed_summary(results: list[engine.RunResult], process_cpu_s: float) -> dict:
    summary = run_summary(results)
    summary["process_cpu_s"] = _sig(process_cpu_s / max(1, len(results)))
    return summary


def _slope(xs, ys) -> float:
    """Log-log slope between the last two points: the local growth exponent."""
    if len(xs) < 2 or min(ys[-2:]) <= 0:
        return float("nan")
    return round(math.log(ys[-1] / ys[-2]) / math.log(xs[-1] / xs[-2]), 2)


def _slopes(xs, ys) -> list[float | None]:
    """Log-log slope from each point to the next (None for the first)."""
    out: list[float | None] = [None]
    for i in range(1, len(xs)):
        out.append(_slope(xs[i - 1:i + 1], ys[i - 1:i + 1]))
    return out


# ----------------------------------------------------------------- tile validation (SPICE)
def bench_validate(models: list[str], rows: list[int], cols: int = 64, repeats: int = 1,
                   jobs: int | None = None, seed: int = 0, fixed_runs: int | None = None,
                   progress: bool = True) -> dict:
    """Time the SPICE side of a tile validation (split runs, as `gcsim validate tile` runs
    them) for each number of rows at `cols` columns, on each of `models`; the smallest tile
    is the baseline. Repeats are interleaved over the sizes and the best wall and CPU kept;
    per-run figures are medians over every run of every repeat. Before each repeat,
    `fixed_runs` runs of the tile's empty netlist time the fixed cost of a run."""
    from gcsim.core.design import default_design
    from gcsim.validate.scenarios import scenario_inputs
    from gcsim.validate.spice import run_tile
    from gcsim.validate.tile import Tile, build
    from gcsim.validate.timing import TileParams

    jobs = max(1, jobs or os.cpu_count() or 1)
    fixed_runs = fixed_runs or 2 * jobs
    rows = sorted(rows)
    started = time.perf_counter()
    report = {"bench": "validate", "cols": cols, "rows": rows, "repeats": repeats,
              "jobs": jobs, "seed": seed, "machine_before": machine(), "models": []}
    for name in models:
        model_set = processes.resolve(name)
        design = default_design(model_set.process)
        params = TileParams.defaults(signed=True, design=design)
        low, high = params.stored_range
        tiles = {r: Tile(*scenario_inputs("random", r, cols, seed, high, low, **params.levels))
                 for r in rows}
        first = build(tiles[rows[0]], params, model_set, "k", [0]).text
        best = {r: {"wall_s": math.inf, "cpu_s": math.inf} for r in rows}
        per_run = {r: {"k": [], "v": []} for r in rows}
        fixed: list[engine.RunResult] = []
        fixed_cpu = 0.0
        spice_runs = {}
        for repeat in range(repeats):
            results, cpu = fixed_cost_runs(first, model_set, fixed_runs, jobs)
            fixed += results
            fixed_cpu += cpu
            for r in rows:
                recorder = RunRecorder(jobs)
                with recorder:
                    token = engine.DEFAULT_EXECUTOR.set(recorder)
                    try:
                        stages = run_tile(tiles[r], params, model_set, jobs=jobs)
                    finally:
                        engine.DEFAULT_EXECUTOR.reset(token)
                spice_runs[r] = stages.runs
                if stages.elapsed_s < best[r]["wall_s"]:   # the best repeat, all of it
                    best[r] = {"wall_s": stages.elapsed_s, "cpu_s": stages.cpu_s}
                    per_run[r] = {"k": recorder.calls[0],
                                  "v": recorder.calls[1] if len(recorder.calls) > 1 else []}
                _say(progress, f"  {model_set.name} {r}x{cols} (repeat {repeat + 1}/{repeats}): "
                               f"{stages.elapsed_s:.1f} s wall, ngspice CPU {stages.cpu_s:.1f} s "
                               f"in {stages.runs} runs; load average {load_average()}")
        base = rows[0]
        sizes = []
        for r in rows:
            k_run, v_run = run_summary(per_run[r]["k"]), run_summary(per_run[r]["v"])
            sizes.append({
                "rows": r, "cols": cols, "cells": 2 * r * cols, "runs": spice_runs[r],
                "wall_s": _sig(best[r]["wall_s"]), "cpu_s": _sig(best[r]["cpu_s"]),
                "size_ratio": round(r / base, 3),
                "wall_ratio": round(best[r]["wall_s"] / best[base]["wall_s"], 3),
                "cpu_ratio": round(best[r]["cpu_s"] / best[base]["cpu_s"], 3),
                "cpu_per_cell_s": _sig(best[r]["cpu_s"] / (2 * r * cols)),
                "k_run": k_run, "v_run": v_run})
        fixed_summary = _fixed_summary(fixed, fixed_cpu)
        cpus = [s["cpu_s"] for s in sizes]
        k_cpu = [s["k_run"]["cpu_s"] for s in sizes]
        report["models"].append({
            "models": model_set.name, "design": design.name if design else None,
            "fixed": fixed_summary, "sizes": sizes,
            "slopes": {"cpu": _slopes(rows, cpus), "k_run_cpu": _slopes(rows, k_cpu)},
            "fixed_share_of_cpu_at_baseline": round(
                fixed_summary["process_cpu_s"] * sizes[0]["runs"] / sizes[0]["cpu_s"], 3)})
    report["machine_after"] = machine()
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    return report


def format_validate(report: dict) -> str:
    lines = [f"gcsim bench growth validate: SPICE side of a tile validation, rows x "
             f"{report['cols']} columns, split runs on {report['jobs']} jobs, best of "
             f"{report['repeats']}"]
    for entry in report["models"]:
        fixed = entry["fixed"]
        lines.append(f"{entry['models']} (design {entry['design']}): fixed cost of a run (its "
                     f"library, no instance) {fixed['wall_s']:.3g} s wall, "
                     f"{fixed['process_cpu_s']:.3g} s CPU ({fixed['cpu_s']:.3g} s in ngspice), "
                     f"{fixed['runs']} runs; x runs at {entry['sizes'][0]['rows']} rows: "
                     f"{entry['fixed_share_of_cpu_at_baseline']:.0%} of its CPU")
        lines.append("  rows  runs    wall s  x base   CPU s  x base  size x | per K column run: "
                     "CPU s   eqs device sparse   OP  ns/eq/it | per V run: CPU s   eqs")
        for s in entry["sizes"]:
            k, v = s["k_run"], s["v_run"]
            lines.append(
                f"  {s['rows']:4d} {s['runs']:5d} {s['wall_s']:9.1f} {s['wall_ratio']:7.2f} "
                f"{s['cpu_s']:7.1f} {s['cpu_ratio']:7.2f} {s['size_ratio']:7.2f} |"
                f"{k['cpu_s']:22.3f} {k['equations']:5.0f} {k['device_share']:6.0%} "
                f"{k['sparse_share']:6.0%} {k['op_share']:4.0%} "
                f"{k['device_ns_per_equation_iteration']:9.0f} | {v['cpu_s']:14.3f} "
                f"{v['equations']:5.0f}")
        lines.append("  device, sparse, OP: shares of ngspice's analysis time (its accounting): "
                     "evaluating the devices (the OP's included), the sparse solver, the "
                     "initial operating point; ns/eq/it: the transient's device evaluation, "
                     "CPU ns per circuit equation per iteration")
    lines.append(_load_line(report))
    return "\n".join(lines)


def _load_line(report: dict) -> str:
    before = report["machine_before"]
    after = report["machine_after"]
    return (f"  {before['cores']} cores; load average before {before['load_average']}, after "
            f"{after['load_average']}; {report['elapsed_s']:.0f} s in all")


# ------------------------------------------------------------------------- simulator
def _banded_floor_operands(tokens: int, window: int, dim: int, block: int, array: int,
                           seed: int):
    """float32 operands of the banded floor: Q (T, D), K^T (D, T), V (T, D) and one block's
    pulses (block x the widest key span a block reaches)."""
    rng = np.random.default_rng(seed + 1)
    span = min(tokens, (-(-(block + window - 1) // array) + 1) * array)
    queries = rng.random((tokens, dim), dtype=np.float32)
    keys_t = rng.random((dim, tokens), dtype=np.float32)
    values = rng.random((tokens, dim), dtype=np.float32)
    pulses = rng.random((block, span), dtype=np.float32)
    return queries, keys_t, values, pulses


def banded_floor(queries, keys_t, values, pulses, window: int, block: int, array: int,
                 powers: int) -> None:
    """`gcsim.bench.simulate.head_floor_products` on each block of queries against the keys its
    windows reach (the simulator's own blocks, keys aligned to arrays): the products a
    blocked polynomial-cell simulator cannot avoid, at a sliding window's cost, not T x T."""
    from gcsim.bench.simulate import head_floor_products

    tokens = queries.shape[0]
    for t0 in range(0, tokens, block):
        t1 = min(tokens, t0 + block)
        k0 = (max(0, t0 - window + 1) // array) * array
        k1 = min(tokens, k0 + -(-(t1 - k0) // array) * array)
        head_floor_products(queries[t0:t1], keys_t[:, k0:k1], pulses[:t1 - t0, :k1 - k0],
                            values[k0:k1], powers)


def estimate_simulate_bytes(tokens: int, window: int, heads: int, dim: int, powers: int,
                            block: int = 128, array: int = 64) -> int:
    """Estimated peak bytes of one shape of `bench_simulate`: the float64 inputs, the floor's
    float32 operands and the larger of the simulator's runs (gcsim.simulate.memory)."""
    from gcsim.simulate.attention import SimulationConfig
    from gcsim.simulate.memory import estimate_peak_bytes

    span = min(tokens, (-(-(block + window - 1) // array) + 1) * array)
    floor = 3 * tokens * dim * 4 + block * span * 4
    config = SimulationConfig(window=window, keep_intermediates=False, dtype="float64")
    simulation = estimate_peak_bytes(config, (1, heads, tokens, dim), powers=powers,
                                     inputs=True)
    return floor + simulation


def _blas_threads(threads: int | None):
    """A context that holds the BLAS libraries to `threads` threads (threadpoolctl, when
    installed), and what it did, for the report."""
    import contextlib

    if threads is None:
        return contextlib.nullcontext(), "unchanged"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext(), "unchanged (threadpoolctl is not installed)"
    return threadpool_limits(limits=threads, user_api="blas"), threads


def bench_simulate(tokens: list[int], windows: list[int], modes: list[str],
                   window: int = 1024, at_tokens: int = 16384, heads: int = 1, dim: int = 64,
                   repeats: int = 3, budget_s: float = 20.0, fits_dir=None, seed: int = 0,
                   threads: int | None = 1, confirmed: bool = False,
                   progress: bool = True) -> dict:
    """Time the simulator against T at window `window`, and against W at `at_tokens`
    tokens, in each of `modes`, with the banded float32 floor at each shape as its baseline.
    Each shape's cases (floor, then each mode) are interleaved `repeats` times and the best
    wall time and the best CPU time (user + system, with the system part) kept; a case stops repeating once it has spent
    `budget_s` (it runs at least once). `threads`: BLAS threads (None: the library's own)."""
    from gcsim.bench.simulate import random_inputs
    from gcsim.hw import default_fits_dir, load_fitted_models, paper_model
    from gcsim.simulate.attention import SimulationConfig, simulate_attention
    from gcsim.simulate.memory import check_memory

    fitted = load_fitted_models(fits_dir or default_fits_dir())
    models = {"paper": paper_model(), "fitted": fitted}
    powers = max(fitted.cell.degree, models["paper"].cell.degree) + 1
    config = SimulationConfig()
    block, array = config.block_queries, config.array_size
    shapes = sorted({(t, window) for t in tokens} | {(at_tokens, w) for w in windows})
    largest = max(estimate_simulate_bytes(t, w, heads, dim, powers, block, array)
                  for t, w in shapes)
    check_memory(largest, "bench growth simulate at its largest shape (--tokens "
                 f"{max(tokens)} --window {window}, --windows {max(windows)} at "
                 f"{at_tokens} tokens)", confirmed)
    limit, blas = _blas_threads(threads)
    started = time.perf_counter()
    report = {"bench": "simulate", "heads": heads, "dim": dim, "batch": 1,
              "window": window, "at_tokens": at_tokens, "tokens": sorted(tokens),
              "windows": sorted(windows), "modes": modes, "repeats": repeats,
              "budget_s": budget_s, "fitted": fitted.label, "blas_threads": blas,
              "floor": f"float32: {2 * powers} matmuls ({powers} powers x 2 products) per "
                       f"block of {block} queries against the keys its windows reach",
              "dtype": "float64", "machine_before": machine()}

    def cases(t: int, w: int) -> dict:
        q, k, v = random_inputs(1, heads, t, dim, seed, fitted.operating_point)
        operands = _banded_floor_operands(t, w, dim, block, array, seed)
        runners = {"floor": lambda: [banded_floor(*operands, w, block, array, powers)
                                     for _ in range(heads)]}
        for mode in modes:
            # The window may read keys older than the decay fit covers: the timing does not
            # depend on it, so the fit extrapolates there.
            # The simulator's own threads match the floor's BLAS threads.
            mode_config = SimulationConfig(window=w, keep_intermediates=False,
                                           dtype="float64", extrapolate=True, threads=threads)
            runners[mode] = (lambda model=models[mode], c=mode_config:
                             simulate_attention(q, k, v, model.name, model=model, config=c))
        return runners

    measured = {}
    with limit:
        # Warm-up at the smallest shape: allocations, BLAS threads, the models' lazy tables.
        for run in cases(*shapes[0]).values():
            run()
        for t, w in shapes:
            runners = cases(t, w)
            wall = {name: math.inf for name in runners}
            cpu = {name: math.inf for name in runners}
            system = {name: math.nan for name in runners}
            spent = {name: 0.0 for name in runners}
            counts = {name: 0 for name in runners}
            for repeat in range(repeats):
                for name, run in runners.items():
                    if repeat and spent[name] >= budget_s:
                        continue
                    begin, begin_cpu, before = time.perf_counter(), time.process_time(), \
                        os.times()
                    run()
                    elapsed, used = time.perf_counter() - begin, time.process_time() - begin_cpu
                    wall[name] = min(wall[name], elapsed)
                    if used < cpu[name]:
                        # The kernel's part (page faults of fresh arrays, mostly), to the
                        # clock tick (10 ms) os.times counts in.
                        cpu[name], system[name] = used, os.times().system - before.system
                    spent[name] += elapsed
                    counts[name] += 1
            del runners
            point = {"tokens": t, "window": w, "repeats": counts}
            for name in ["floor"] + modes:
                point[f"{name}_s"] = _sig(wall[name])
                point[f"{name}_cpu_s"] = _sig(cpu[name])
                point[f"{name}_system_s"] = _sig(system[name])
            for mode in modes:
                point[f"{mode}_over_floor"] = round(wall[mode] / wall["floor"], 3)
                point[f"{mode}_cpu_over_floor"] = round(cpu[mode] / cpu["floor"], 3)
            measured[(t, w)] = point
            _say(progress, f"  T={t} W={w}: " + ", ".join(
                f"{name} {wall[name]:.3g} s (CPU {cpu[name]:.3g} s)"
                for name in ["floor"] + modes) + f"; load average {load_average()}")
    report["against_tokens"] = _series([measured[(t, window)] for t in sorted(tokens)],
                                       "tokens", modes)
    report["against_window"] = _series([measured[(at_tokens, w)] for w in sorted(windows)],
                                       "window", modes)
    report["machine_after"] = machine()
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    return report


def _series(points: list[dict], axis: str, modes: list[str]) -> list[dict]:
    """Each point with its ratios to the series' first (the in-run growth baseline)."""
    base = points[0]
    out = []
    for point in points:
        entry = dict(point)
        entry["size_ratio"] = round(point[axis] / base[axis], 3)
        for name in ["floor"] + modes:
            entry[f"{name}_growth"] = round(point[f"{name}_s"] / base[f"{name}_s"], 3)
            entry[f"{name}_cpu_growth"] = round(point[f"{name}_cpu_s"] /
                                                base[f"{name}_cpu_s"], 3)
        out.append(entry)
    xs = [p[axis] for p in points]
    for name in ["floor"] + modes:
        for entry, slope in zip(out, _slopes(xs, [p[f"{name}_cpu_s"] for p in points])):
            entry[f"{name}_cpu_slope"] = slope
    return out


def format_simulate(report: dict) -> str:
    modes = report["modes"]
    lines = [f"gcsim bench growth simulate: B=1 H={report['heads']} D={report['dim']}, "
             f"{report['dtype']}, BLAS threads {report['blas_threads']}; best of up to "
             f"{report['repeats']} interleaved repeats ({report['budget_s']:g} s per case)",
             f"  floor = {report['floor']}",
             "  x base: CPU time against the series' first shape; x floor: CPU time against "
             "the floor's at the same shape"]
    for key, axis, label in (("against_tokens", "tokens", f"W = {report['window']}"),
                             ("against_window", "window", f"T = {report['at_tokens']}")):
        lines.append(f"against {axis}, {label}:")
        head = f"  {axis:>7}  size x | floor: wall s   CPU s  x base"
        for mode in modes:
            head += f" | {mode}: wall s   CPU s (kernel) x base x floor"
        lines.append(head)
        for p in report[key]:
            row = (f"  {p[axis]:7d} {p['size_ratio']:7.2f} | {p['floor_s']:13.4f} "
                   f"{p['floor_cpu_s']:7.4f} {p['floor_cpu_growth']:7.2f}")
            for mode in modes:
                row += (f" | {p[f'{mode}_s']:{len(mode) + 8}.3f} {p[f'{mode}_cpu_s']:7.3f} "
                        f"{p[f'{mode}_system_s']:8.2f} {p[f'{mode}_cpu_growth']:6.2f} "
                        f"{p[f'{mode}_cpu_over_floor']:7.2f}")
            lines.append(row)
    lines.append(_load_line(report))
    return "\n".join(lines)


# ------------------------------------------------------------------------- sweeps
def bench_sweep(batches: list[int], models: list[str], grid: tuple[int, int] = (16, 32),
                repeats: int = 1, jobs: int | None = None, progress: bool = True) -> dict:
    """Time the gain-cell pulse sweep (`grid` stored voltages x pulse widths) at each batch
    (points per ngspice run), on each of `models`; one point per run (batch 1, or the
    smallest given) is the baseline. Repeats are interleaved over the batches; each batch
    reports its best repeat (least wall time), with its CPU and its runs' medians. The fixed
    cost of a run is timed on the one-point netlist emptied of its
    instances."""
    from gcsim.bench.sweep import _pulse_spec
    from gcsim.characterize.cache import ResultCache
    from gcsim.characterize.sweep import Sweep, Unit

    jobs = max(1, jobs or os.cpu_count() or 1)
    batches = sorted(batches)
    points = grid[0] * grid[1]
    started = time.perf_counter()
    report = {"bench": "sweep", "points": points, "grid": list(grid), "batches": batches,
              "repeats": repeats, "jobs": jobs, "machine_before": machine(), "models": []}
    for name in models:
        model_set = processes.resolve(name)
        best = {b: {"wall_s": math.inf, "cpu_s": math.inf} for b in batches}
        per_run = {b: [] for b in batches}
        runs = {}
        fixed: list[engine.RunResult] = []
        fixed_cpu = 0.0
        design = None
        for repeat in range(repeats):
            for batch in batches:
                spec = _pulse_spec(points, model_set, batch, jobs, grid=grid)
                recorder = RunRecorder(jobs)
                token = engine.DEFAULT_EXECUTOR.set(recorder)
                try:
                    sweep = Sweep(spec, models=name, workers=jobs,
                                  cache=ResultCache(enabled=False), progress=False)
                    cpu = _children_cpu_s()
                    begin = time.perf_counter()
                    result = sweep.run()
                    wall = time.perf_counter() - begin
                    cpu = _children_cpu_s() - cpu
                finally:
                    engine.DEFAULT_EXECUTOR.reset(token)
                if result.failures:
                    from gcsim.core.errors import GcsimError
                    raise GcsimError(f"the pulse sweep at batch {batch} had "
                                     f"{len(result.failures)} failed points")
                design = result.metadata.get("design") or design
                runs[batch] = result.metadata["stats"]["runs"]
                if wall < best[batch]["wall_s"]:   # the best repeat, all of it
                    best[batch] = {"wall_s": wall, "cpu_s": cpu}
                    per_run[batch] = [r for call in recorder.calls for r in call]
                if batch == batches[0]:
                    one = sweep._build(Unit([0], False)).netlist
                    results, cpu = fixed_cost_runs(one, model_set, 2 * jobs, jobs)
                    fixed += results
                    fixed_cpu += cpu
                _say(progress, f"  {model_set.name} batch {batch} (repeat {repeat + 1}/"
                               f"{repeats}): {points / wall:.1f} points/s in {runs[batch]} runs "
                               f"({wall:.1f} s); load average {load_average()}")
        base = batches[0]
        rows = []
        for batch in batches:
            wall, cpu = best[batch]["wall_s"], best[batch]["cpu_s"]
            rows.append({
                "batch": batch, "runs": runs[batch], "wall_s": _sig(wall), "cpu_s": _sig(cpu),
                "points_per_s": _sig(points / wall),
                "throughput_ratio": round(best[base]["wall_s"] / wall, 3),
                "cpu_per_point_s": _sig(cpu / points),
                "run": run_summary(per_run[batch])})
        report["models"].append({"models": model_set.name,
                                 "design": design.get("name") if isinstance(design, dict)
                                 else design,
                                 "fixed": _fixed_summary(fixed, fixed_cpu), "batches": rows,
                                 "slopes": {"run_cpu": _slopes(
                                     batches, [r["run"]["cpu_s"] for r in rows])}})
    report["machine_after"] = machine()
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    return report


def format_sweep(report: dict) -> str:
    lines = [f"gcsim bench growth sweep: gain-cell pulse sweep, {report['points']} points "
             f"({report['grid'][0]} stored voltages x {report['grid'][1]} pulse widths), "
             f"{report['jobs']} jobs, best of {report['repeats']}"]
    for entry in report["models"]:
        fixed = entry["fixed"]
        lines.append(f"{entry['models']}: fixed cost of a run (its library, no instance) "
                     f"{fixed['wall_s']:.3g} s wall, {fixed['process_cpu_s']:.3g} s CPU "
                     f"({fixed['cpu_s']:.3g} s in ngspice)")
        lines.append("  batch  runs  points/s  x base   CPU s  CPU/point ms | per run: CPU s  "
                     "  eqs timepoints device sparse   OP  ns/eq/it")
        for row in entry["batches"]:
            run = row["run"]
            lines.append(
                f"  {row['batch']:5d} {row['runs']:5d} {row['points_per_s']:9.1f} "
                f"{row['throughput_ratio']:7.2f} {row['cpu_s']:7.1f} "
                f"{row['cpu_per_point_s'] * 1e3:12.2f} | {run['cpu_s']:14.3f} "
                f"{run['equations']:5.0f} {run['timepoints']:10.0f} "
                f"{run['device_share']:6.0%} {run['sparse_share']:6.0%} "
                f"{run['op_share']:4.0%} {run['device_ns_per_equation_iteration']:9.0f}")
    lines.append(_load_line(report))
    return "\n".join(lines)


# ------------------------------------------------------------------------- plots
def _reference(ax, xs, at: tuple[float, float], exponent: int, label: str) -> None:
    """A grey line of slope `exponent` through the point `at`, over the data's x range and
    clipped to its y range: where a curve leaves it, it bends."""
    limits = ax.get_ylim()
    x0, y0 = at
    span = np.array([min(xs), max(xs)], dtype=float)
    ax.plot(span, y0 * (span / x0) ** exponent, color="0.6", lw=1,
            ls=":" if exponent == 2 else "--", label=label)
    ax.set_ylim(limits)


def _ticks(ax, xs) -> None:
    """Ticks at the measured sizes."""
    ax.set_xticks(list(xs))
    ax.xaxis.set_major_formatter(_plain())
    ax.xaxis.set_minor_locator(_null_locator())
    ax.gcsim_ticks = True


def _plain():
    from matplotlib import ticker
    return ticker.FuncFormatter(lambda v, _: f"{v:g}")


def _null_locator():
    from matplotlib import ticker
    return ticker.NullLocator()


def _figure(panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.6), squeeze=False)
    for ax in axes[0]:    # log-log from the start: the references read the data's limits
        ax.set_xscale("log")
        ax.set_yscale("log")
    return plt, figure, axes[0]


def _finish_plot(plt, figure, axes, title: str, report: dict, path) -> str:
    from matplotlib import ticker

    for ax in axes:
        axes_to_tick = [ax.yaxis] if getattr(ax, "gcsim_ticks", False) else [ax.xaxis, ax.yaxis]
        for axis in axes_to_tick:
            axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(_plain())
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    load = report["machine_before"]["load_average"]
    figure.suptitle(f"{title}\n{report['machine_before']['cores']} cores, load average "
                    f"{load[0] if load else '?'} before, "
                    f"{(report['machine_after']['load_average'] or ['?'])[0]} after",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)


def plot_validate(report: dict, path) -> str:
    plt, figure, (total, column) = _figure(2)
    for i, entry in enumerate(report["models"]):
        color = f"C{i}"
        rows = [s["rows"] for s in entry["sizes"]]
        total.plot(rows, [s["wall_s"] for s in entry["sizes"]], "o-", color=color,
                   label=f"{entry['models']}: wall")
        total.plot(rows, [s["cpu_s"] for s in entry["sizes"]], "s--", color=color,
                   label=f"{entry['models']}: ngspice CPU")
        runs = [s["runs"] for s in entry["sizes"]]
        total.plot(rows, [n * entry["fixed"]["process_cpu_s"] for n in runs], "x:", color=color,
                   label=f"{entry['models']}: runs x fixed cost")
        eqs = [s["k_run"]["equations"] for s in entry["sizes"]]
        for key, marker, label in (("cpu_s", "o-", "CPU"), ("device_cpu_s", "^--",
                                                          "device evaluation"),
                                   ("sparse_cpu_s", "v--", "sparse solver"),
                                   ("op_cpu_s", "d:", "operating point")):
            column.plot(eqs, [s["k_run"][key] for s in entry["sizes"]], marker, color=color,
                        label=f"{entry['models']}: {label}", alpha=1 if key == "cpu_s" else 0.7)
        column.axhline(entry["fixed"]["process_cpu_s"], color=color, lw=0.8, alpha=0.6)
    first = report["models"][0]
    rows = [s["rows"] for s in first["sizes"]]
    _reference(total, rows, (rows[-1], first["sizes"][-1]["cpu_s"]), 1, "O(rows)")
    # The references start at the first model's smallest column run.
    eqs = [s["k_run"]["equations"] for s in first["sizes"]]
    at = (eqs[0], first["sizes"][0]["k_run"]["cpu_s"])
    _reference(column, eqs, at, 1, "O(n)")
    _reference(column, eqs, at, 2, "O(n²)")
    values = [s["k_run"][key] for m in report["models"] for s in m["sizes"]
              for key in ("cpu_s", "device_cpu_s", "sparse_cpu_s", "op_cpu_s")]
    values = [v for v in values if v and v > 0]
    column.set_ylim(min(values) / 2, max(values) * 2)
    _ticks(total, rows)
    total.set_xlabel(f"tile rows (x {report['cols']} columns)")
    total.set_ylabel("seconds")
    total.set_title("SPICE side of the tile validation", fontsize=9)
    column.set_xlabel("circuit equations of one K column run")
    column.set_ylabel("CPU seconds per run (median); lines: fixed cost")
    column.set_title("one K column run, from ngspice's accounting", fontsize=9)
    return _finish_plot(plt, figure, [total, column], "gcsim bench growth validate", report,
                        path)


def plot_simulate(report: dict, path) -> str:
    plt, figure, axes = _figure(2)
    names = ["floor"] + report["modes"]
    for ax, key, axis, label in ((axes[0], "against_tokens", "tokens",
                                  f"tokens T (W = {report['window']})"),
                                 (axes[1], "against_window", "window",
                                  f"window W (T = {report['at_tokens']})")):
        points = report[key]
        xs = [p[axis] for p in points]
        for i, name in enumerate(names):
            ax.plot(xs, [p[f"{name}_cpu_s"] for p in points],
                    "o-" if name != "floor" else "s--", color=f"C{i}", label=f"{name}: CPU")
            ax.plot(xs, [p[f"{name}_s"] for p in points], ".:", color=f"C{i}", alpha=0.5,
                    label=f"{name}: wall")
        middle = points[len(points) // 2]
        at = (middle[axis], middle["floor_cpu_s"])
        _reference(ax, xs, at, 1, f"O({axis})")
        if axis == "tokens":
            _reference(ax, xs, at, 2, "O(T²)")
        _ticks(ax, xs)
        ax.set_xlabel(label)
        ax.set_ylabel(f"seconds (best; BLAS threads {report['blas_threads']})")
    return _finish_plot(plt, figure, list(axes), f"gcsim bench growth simulate (H="
                        f"{report['heads']}, D={report['dim']})", report, path)


def plot_sweep(report: dict, path) -> str:
    plt, figure, (rate, per_run) = _figure(2)
    for i, entry in enumerate(report["models"]):
        color = f"C{i}"
        batches = [r["batch"] for r in entry["batches"]]
        rate.plot(batches, [r["points_per_s"] for r in entry["batches"]], "o-", color=color,
                  label=entry["models"])
        per_run.plot(batches, [r["run"]["cpu_s"] for r in entry["batches"]], "o-",
                     color=color, label=f"{entry['models']}: CPU per run")
        per_run.plot(batches, [r["run"]["device_cpu_s"] for r in entry["batches"]], "^--",
                     color=color, label=f"{entry['models']}: device evaluation", alpha=0.7)
        per_run.axhline(entry["fixed"]["process_cpu_s"], color=color, lw=0.8, alpha=0.6)
    first = report["models"][0]["batches"]
    batches = [r["batch"] for r in first]
    # After every model is drawn: a reference keeps the y limits it finds, so one drawn
    # earlier would leave a later model's points off the panel.
    _reference(rate, batches, (batches[0], first[0]["points_per_s"]), 1, "O(batch)")
    middle = first[len(first) // 2]
    _reference(per_run, batches, (middle["batch"], middle["run"]["cpu_s"]), 1, "O(batch)")
    _reference(per_run, batches, (middle["batch"], middle["run"]["cpu_s"]), 2, "O(batch²)")
    _ticks(rate, batches)
    _ticks(per_run, batches)
    rate.set_xlabel("points per ngspice run (batch)")
    rate.set_ylabel(f"points per second ({report['jobs']} jobs)")
    per_run.set_xlabel("points per ngspice run (batch)")
    per_run.set_ylabel("CPU seconds per run (median); lines: fixed cost")
    return _finish_plot(plt, figure, [rate, per_run], f"gcsim bench growth sweep "
                        f"({report['points']}-point pulse sweep)", report, path)
