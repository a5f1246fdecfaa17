"""Benchmark of the array simulator against the matrix-product floor and NumPy softmax attention,
all measured in the same run (interleaved repeats, best time of each).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from gcsim.simulate.attention import SimulationConfig, prepare_inputs, simulate_attention
from gcsim.simulate.memory import check_memory, estimate_peak_bytes
from gcsim.hw import (
    PAPER_OPERATING_POINT,
    OperatingPoint,
    fitted_model_from_paper_coefficients,
    default_fits_dir,
    load_fitted_models,
    paper_model,
)


def random_inputs(batch: int, heads: int, tokens: int, dim: int, seed: int,
                  operating_point: OperatingPoint = PAPER_OPERATING_POINT):
    """Q in [0, 1], K and V over the operating point's DAC range (published: [0, 0.9] V):
    uniform over the physical ranges."""
    rng = np.random.default_rng(seed)
    shape = (batch, heads, tokens, dim)
    low, high = operating_point.stored_min_V, operating_point.stored_max_V
    q = rng.random(shape)
    k = rng.random(shape) * (high - low) + low
    v = rng.random(shape) * (high - low) + low
    return q, k, v


def _floor_operands(q, k, v, window: int, seed: int, mid_rail_V: float):
    """float32 operands of the products every polynomial-cell simulator must do at these shapes."""
    rng = np.random.default_rng(seed + 1)
    tokens = q.shape[-2]
    pulses = rng.random(q.shape[:-1] + (tokens,), dtype=np.float32)
    age = np.arange(tokens)[:, None] - np.arange(tokens)[None, :]
    pulses *= ((age >= 0) & (age < window)).astype(np.float32)
    keys_t = np.ascontiguousarray(np.swapaxes(k - mid_rail_V, -1, -2), dtype=np.float32)
    return q.astype(np.float32), keys_t, pulses, (v - mid_rail_V).astype(np.float32)


def floor_products(queries, keys_t, pulses, values, powers: int, threads: int | None = None
                   ) -> None:
    """One Q.K^T and one phi.V product per polynomial power, full (tokens x tokens) size, with
    the heads spread over threads as the simulator spreads them (see `per_head`)."""
    def one_head(b: int, h: int) -> None:
        head_floor_products(queries[b, h], keys_t[b, h], pulses[b, h], values[b, h], powers)

    per_head(one_head, queries.shape[0], queries.shape[1], threads)


def head_floor_products(queries, keys_t, pulses, values, powers: int) -> None:
    """One head's floor: a Q.K^T and a phi.V product per polynomial power (2-D operands)."""
    for _ in range(powers):
        np.matmul(queries, keys_t)
        np.matmul(pulses, values)


def per_head(work, batch: int, heads: int, threads: int | None = None) -> None:
    """Runs `work(b, h)` for every head as the simulator does: one head per thread, each on a
    single BLAS thread, when there is more than one head and core. So floor and simulator
    share one way of using the cores, and a busy machine slows both alike (BLAS's own
    threads, spinning while the other core is taken, slow a large product far more)."""
    pairs = [(b, h) for b in range(batch) for h in range(heads)]
    workers = min(len(pairs), threads or os.cpu_count() or 1)
    if workers == 1:
        # One head: BLAS may use every core on its large products, unless held to one thread.
        with threadpool_limits(limits=threads, user_api="blas"):
            for b, h in pairs:
                work(b, h)
        return
    with threadpool_limits(limits=1, user_api="blas"), \
            ThreadPoolExecutor(max_workers=workers) as pool:
        for done in [pool.submit(work, b, h) for b, h in pairs]:
            done.result()


def softmax_attention(queries, keys_t, values, window: int, threads: int | None = None
                      ) -> np.ndarray:
    """Plain dense float32 causal sliding-window softmax attention in NumPy, one head per
    thread (see `per_head`)."""
    tokens = queries.shape[-2]
    age = np.arange(tokens)[:, None] - np.arange(tokens)[None, :]
    outside = ~((age >= 0) & (age < window))
    out = np.empty(queries.shape[:-1] + values.shape[-1:], dtype=values.dtype)

    def one_head(b: int, h: int) -> None:
        scores = queries[b, h] @ keys_t[b, h]
        scores *= np.float32(1.0 / math.sqrt(queries.shape[-1]))
        scores[outside] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        np.matmul(scores, values[b, h], out=out[b, h])

    per_head(one_head, queries.shape[0], queries.shape[1], threads)
    return out


def estimate_bench_bytes(batch: int, heads: int, tokens: int, dim: int, window: int,
                         include_float32: bool = True) -> int:
    """Estimated peak bytes of `run_bench` at these shapes: the inputs and their DAC copies,
    the floor's float32 operands, whose pulse matrix is (tokens x tokens) per head, and the
    largest of the floor's product, softmax's dense scores and one simulation."""
    n = batch * heads * tokens * dim
    dense = batch * heads * tokens * tokens * 4          # a float32 (tokens x tokens) per head
    square = tokens * tokens
    held = 6 * n * 8 + 3 * n * 4 + dense                 # inputs, DAC copies, floor operands
    building = dense + 8 * square + 3 * square + 4 * square   # ages, masks, float32 mask
    # softmax: the scores and their scaled copy, the ages, the masks, and the indices of the
    # masked entries (boolean-mask assignment over a batch of matrices)
    softmax = 2 * dense + 8 * square + 4 * square + 16 * square
    simulation = max(estimate_peak_bytes(SimulationConfig(window=window, keep_intermediates=False,
                                                          dtype=dtype), (batch, heads, tokens,
                                                                         dim), inputs=False)
                     for dtype in (("float64", "float32") if include_float32 else ("float64",)))
    return held + max(building, dense, softmax, simulation)


def check_bench_memory(batch: int, heads: int, tokens: int, dim: int, window: int,
                       confirmed: bool = False) -> None:
    """Refuse, in one line, a benchmark the machine cannot hold, unless `confirmed`."""
    check_memory(estimate_bench_bytes(batch, heads, tokens, dim, window),
                 f"bench simulate --batch {batch} --heads {heads} --tokens {tokens} --dim "
                 f"{dim} --window {window}", confirmed)


def run_bench(
    batch: int = 1,
    heads: int = 12,
    tokens: int = 1024,
    dim: int = 64,
    window: int = 1024,
    repeats: int = 5,
    seed: int = 0,
    fits_dir: str | Path | None = None,
    include_float32: bool = True,
    threads: int | None = None,
) -> dict:
    """Times the paper and fitted modes, the floor and softmax; returns seconds and ratios.
    With one thread, also the CPU seconds of each (process time), whose ratios a busy
    machine disturbs less than the wall clock's."""
    fits_dir = fits_dir or default_fits_dir()
    fitted = load_fitted_models(fits_dir) if fits_dir else fitted_model_from_paper_coefficients()
    # The inputs span the fitted model's DAC range (its bundle's design; published without).
    point = fitted.operating_point
    q, k, v = random_inputs(batch, heads, tokens, dim, seed, point)
    qd, kd, vd = prepare_inputs(q, k, v, SimulationConfig(), point)
    powers = fitted.cell.degree + 1
    cases = {
        "paper": (paper_model(), "float64"),
        "fitted": (fitted, "float64"),
    }
    if include_float32:
        cases["fitted_float32"] = (fitted, "float32")
    if fitted.loading is not None:
        # The readout-loading correction's own cost: the same fits with an ideal readout.
        cases["fitted_ideal_readout"] = (
            dataclasses.replace(fitted, loading=None, label=f"{fitted.label}, ideal readout"),
            "float64")
    queries, keys_t, pulses, values = _floor_operands(qd, kd, vd, window, seed, point.mid_rail_V)

    runners = {
        "floor": lambda: floor_products(queries, keys_t, pulses, values, powers, threads),
        "softmax": lambda: softmax_attention(queries, keys_t, values, window, threads),
    }
    for name, (model, dtype) in cases.items():
        config = SimulationConfig(window=window, keep_intermediates=False, dtype=dtype,
                                  threads=threads)
        runners[name] = (
            lambda model=model, config=config: simulate_attention(
                q, k, v, model.name, model=model, config=config
            )
        )
    best = {name: math.inf for name in runners}
    cpu = {name: math.inf for name in runners}
    for run in runners.values():  # warm-up: allocations, BLAS thread start
        run()
    for _ in range(repeats):
        for name, run in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    single = threads == 1 or (os.cpu_count() or 1) == 1

    result = {
        "shape": {"batch": batch, "heads": heads, "tokens": tokens, "dim": dim, "window": window},
        "repeats": repeats,
        "threads": threads or min(batch * heads, os.cpu_count() or 1),
        "load_average": _load_average(),
        "floor_s": best["floor"],
        "floor_products": f"{2 * powers} float32 matmuls per head ({powers} powers x 2 products)",
        "softmax_s": best["softmax"],
        "softmax": "dense float32 NumPy softmax attention, causal sliding window",
    }
    for name, (model, dtype) in cases.items():
        result[name] = {
            "label": model.label,
            "dtype": dtype,
            "time_s": best[name],
            "ratio_to_floor": best[name] / best["floor"],
            "ratio_to_softmax": best[name] / best["softmax"],
        }
        if single:
            result[name]["cpu_s"] = cpu[name]
            result[name]["cpu_ratio_to_floor"] = cpu[name] / cpu["floor"]
    if single:
        result["floor_cpu_s"] = cpu["floor"]
    return result


def _load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them ('n/a' where unknown)."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def format_bench(result: dict) -> str:
    shape = result["shape"]
    lines = [
        "gcsim bench simulate: B={batch} H={heads} T={tokens} D={dim} W={window}".format(**shape),
        f"  floor   {result['floor_s'] * 1e3:9.1f} ms  ({result['floor_products']})",
        f"  softmax {result['softmax_s'] * 1e3:9.1f} ms  ({result['softmax']})",
    ]
    for name in ("paper", "fitted", "fitted_float32", "fitted_ideal_readout"):
        if name in result:
            entry = result[name]
            cpu = (f"  CPU {entry['cpu_ratio_to_floor']:5.2f}x" if "cpu_ratio_to_floor" in entry
                   else "")
            lines.append(
                f"  {name:<20} {entry['time_s'] * 1e3:9.1f} ms"
                f"  {entry['ratio_to_floor']:5.2f}x floor{cpu}"
                f"  {entry['ratio_to_softmax']:5.2f}x softmax  [{entry['dtype']}; {entry['label']}]"
            )
    lines.append(f"  best of {result['repeats']} interleaved repeats, {result['threads']} "
                 f"thread(s), one head per thread, all entries; load average "
                 f"{result['load_average']}")
    return "\n".join(lines)
