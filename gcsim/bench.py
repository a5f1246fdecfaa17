"""Benchmarks of the SPICE engine: batched gcsim sweeps against one PySpice run per point."""

from __future__ import annotations

import math
import os
import time

import numpy as np

from gcsim import engine, paths, spec as spec_module
from gcsim.cache import ResultCache
from gcsim.sweep import Sweep, Unit


def _pulse_spec(points: int) -> spec_module.Spec:
    raw = spec_module.load(paths.CHARACTERIZATION / "gain_cell_pulse.toml").raw
    raw = {**raw, "axes": [dict(axis) for axis in raw["axes"]]}
    # A near-square grid of stored voltage x pulse width with at least `points` points.
    n_store = max(2, int(math.sqrt(points)))
    n_pulse = max(2, math.ceil(points / n_store))
    raw["axes"][0].update(num=n_store)
    raw["axes"][1].update(num=n_pulse)
    return spec_module.from_dict(raw, name=f"bench_pulse_{n_store}x{n_pulse}",
                                 base=paths.CHARACTERIZATION)


def bench_sweep(points: int = 1000, workers: int | None = None,
                progress: bool = True) -> dict:
    spec = _pulse_spec(points)
    sweep = Sweep(spec, workers=workers, cache=ResultCache(enabled=False), progress=progress)
    started = time.perf_counter()
    batched = sweep.run()
    batched_s = time.perf_counter() - started

    # The plain way: one netlist per point, loaded and run by one PySpice instance.
    shared = engine.new_ngspice()
    per_point = np.full(len(sweep.grid), np.nan)
    started = time.perf_counter()
    for index in range(len(sweep.grid)):
        unit = sweep._build(Unit([index], False))
        result = engine.run_in_this_process(
            engine.RunRequest(unit.netlist, unit.vectors), shared)
        if result.ok:
            per_point[index] = sweep._extract(unit, result.vectors)["charge_C"][0]
    per_point_s = time.perf_counter() - started

    table = batched.table
    batched_charge = table["charge_C"].to_numpy()
    order = [i for i in range(len(sweep.grid)) if not math.isnan(per_point[i])]
    difference = float(np.max(np.abs(batched_charge[: len(order)] - per_point[order]))) \
        if len(order) == len(batched_charge) else float("nan")
    return {
        "points": len(sweep.grid),
        "models": sweep.models.name,
        "workers": sweep.workers,
        "cores": os.cpu_count(),
        "batched_runs": batched.metadata["stats"]["runs"],
        "batched_s": round(batched_s, 3),
        "per_point_s": round(per_point_s, 3),
        "speedup": round(per_point_s / batched_s, 2),
        "max_abs_charge_diff_C": difference,
        "failed_points_batched": len(batched.failures),
    }
