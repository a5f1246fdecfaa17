"""Benchmarks of the SPICE engine: batched gcsim sweeps against one PySpice run per point."""

from __future__ import annotations

import math
import os
import time

import numpy as np

from gcsim.spice import engine
from gcsim.spice import process as processes
from gcsim.core import resources
from gcsim.characterize import spec as spec_module
from gcsim.characterize.cache import ResultCache
from gcsim.characterize.sweep import Sweep, Unit

def _pulse_spec(points: int, models: processes.ModelSet, batch: int | None,
                workers: int = 1, grid: tuple[int, int] | None = None) -> spec_module.Spec:
    raw = spec_module.load(resources.CHARACTERIZATION / "gain_cell_pulse.toml").raw
    raw = {**raw, "axes": [dict(axis) for axis in raw["axes"]],
           "parameters": dict(raw.get("parameters", {})),
           "analysis": dict(raw["analysis"])}
    # A near-square grid of stored voltage x pulse width with at least `points` points.
    n_store = max(2, int(math.sqrt(points)))
    n_pulse = max(2, math.ceil(points / n_store))
    if grid is not None:    # exactly these (stored voltages, pulse widths)
        n_store, n_pulse = grid
    raw["axes"][0].update(num=n_store)
    raw["axes"][1].update(num=n_pulse)
    # Levels and sizes come from the process's design, as in any sweep of the shipped specs.
    if batch == 0:
        # As few library loads as the workers allow, with at most 200 points per run: the
        # per-instance cost is linear up to there (measured on sky130: about 38 ms of CPU
        # per point at 25-200 points per run, against 4.2 s per load), and larger runs gather
        # more shared time points.
        n, workers = n_store * n_pulse, max(1, workers)
        batch = math.ceil(n / (workers * math.ceil(n / (workers * 200))))
    if batch:
        raw["analysis"]["batch"] = batch
    return spec_module.from_dict(raw, name=f"bench_pulse_{n_store}x{n_pulse}",
                                 base=resources.CHARACTERIZATION)


def bench_sweep(points: int = 1000, workers: int | None = None, progress: bool = True,
                models: str = "builtin", sample: int | None = None,
                batch: int | None = None) -> dict:
    """Time the pulse sweep batched by gcsim, then one PySpice run per point.

    ``sample``: time the per-point way on this many points spread over the grid and
    report it per point (with a whole PDK loaded per run, a point costs seconds);
    None runs every point. ``batch``: points per batched ngspice run (default: the
    spec's 160 on builtin; for other libraries, whose load takes seconds, few loads per
    worker, at most 200 points per run)."""
    model_set = processes.resolve(models)
    workers = max(1, workers or os.cpu_count() or 1)
    if batch is None and model_set.process != "builtin":
        batch = 0
    spec = _pulse_spec(points, model_set, batch, workers)
    sweep = Sweep(spec, models=models, workers=workers, cache=ResultCache(enabled=False),
                  progress=progress)
    batched, batched_s = _timed_run(sweep)

    # The plain way: one netlist per point, loaded and run by one PySpice instance.
    n = len(sweep.grid)
    indexes = list(range(n)) if not sample or sample >= n else \
        sorted({int(round(i)) for i in np.linspace(0, n - 1, sample)})
    units = [sweep._build(Unit([index], False)) for index in indexes]
    results, timed_s = engine.run_in_one_worker(
        [engine.RunRequest(u.netlist, u.vectors, model_set.ngbehavior) for u in units])
    per_point = {index: sweep._extract(unit, result.vectors)["charge_C"][0]
                 for index, unit, result in zip(indexes, units, results) if result.ok}
    per_point_each_s = timed_s / len(indexes)
    per_point_s = per_point_each_s * n

    table = batched.table
    batched_charge = table["charge_C"].to_numpy()
    complete = len(batched_charge) == n and len(per_point) == len(indexes)
    difference = float(max(abs(batched_charge[i] - per_point[i]) for i in indexes)) \
        if complete else float("nan")
    return {
        "points": n,
        "models": sweep.models.name,
        "workers": sweep.workers,
        "cores": os.cpu_count(),
        "batch": spec.batch,
        "batched_runs": batched.metadata["stats"]["runs"],
        "batched_s": _sig(batched_s),
        "batched_points_per_s": round(n / batched_s, 2),
        "per_point_sampled": len(indexes),
        "per_point_each_s": _sig(per_point_each_s),
        "per_point_s": _sig(per_point_s),
        "per_point_extrapolated": len(indexes) < n,
        "per_point_points_per_s": round(1 / per_point_each_s, 3),
        "speedup": round(per_point_s / batched_s, 2),
        "max_abs_charge_diff_C": difference,
        "failed_points_batched": len(batched.failures),
        "design": sweep.design.name if sweep.design is not None else None,
    }


def bench_montecarlo(models: str = "builtin", runs: int = 100, workers: int | None = None,
                     full_library_samples: int = 3) -> dict:
    """Time the Monte Carlo spec (gain_cell_mismatch) as batched sample instances against
    one ngspice run per sample, in this run, on the same design; and, for a library gcsim
    loads trimmed (sky130), a few samples with the whole library loaded, as before.

    The two ways draw different samples on a PDK (each instance draws its own offsets), so
    they are compared as distributions: the per-sample read current at the top and bottom
    of the stored range, by a two-sample Kolmogorov-Smirnov test."""
    from scipy import stats

    from gcsim.spice import process as process_module

    model_set = processes.resolve(models)
    workers = max(1, workers or os.cpu_count() or 1)
    raw = spec_module.load(resources.CHARACTERIZATION / "gain_cell_mismatch.toml").raw
    raw = {**raw, "montecarlo": {**raw["montecarlo"], "runs": runs}}
    spec = spec_module.from_dict(raw, name=f"bench_montecarlo_{runs}",
                                 base=resources.CHARACTERIZATION)

    def sweep(instances: bool) -> Sweep:
        chosen = Sweep(spec, models=models, workers=workers,
                       cache=ResultCache(enabled=False), progress=False)
        chosen.sample_instances = instances
        return chosen

    batched, batched_s = _timed_run(sweep(True))
    per_sample, per_sample_s = _timed_run(sweep(False))
    report = {
        "models": model_set.name, "design": batched.metadata.get("design"), "samples": runs,
        "points": len(batched.table), "workers": workers, "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "batched_runs": batched.metadata["stats"]["runs"], "batched_s": _sig(batched_s),
        "per_sample_runs": per_sample.metadata["stats"]["runs"],
        "per_sample_s": _sig(per_sample_s),
        "speedup": round(per_sample_s / batched_s, 2),
    }
    # Compared at the ends of the stored range, where the current is largest.
    tables = {"batched": batched.table, "per_sample": per_sample.table}
    for name, at in (("top", "max"), ("bottom", "min")):
        values = {}
        for way, table in tables.items():
            level = getattr(table["stored_voltage_V"], at)()
            values[way] = table[table["stored_voltage_V"] == level]["i_out_A"].to_numpy()
        test = stats.ks_2samp(values["batched"], values["per_sample"])
        report[f"current_at_{name}"] = {
            way: {"mean_A": float(v.mean()), "sigma_A": float(v.std(ddof=1))}
            for way, v in values.items()}
        report[f"current_at_{name}"]["ks_pvalue"] = float(test.pvalue)
        report[f"current_at_{name}"]["identical"] = bool(
            np.array_equal(values["batched"], values["per_sample"]))
    if model_set.prebin_file and full_library_samples:
        # The whole library parsed per run, as every sky130 run did before trimming.
        few = {**raw, "montecarlo": {**raw["montecarlo"], "runs": full_library_samples}}
        small = spec_module.from_dict(few, name="bench_montecarlo_full_library",
                                      base=resources.CHARACTERIZATION)
        saved = process_module.PREBIN
        process_module.PREBIN = False
        try:
            full = Sweep(small, models=models, workers=workers,
                         cache=ResultCache(enabled=False), progress=False)
            full.sample_instances = False
            _, full_s = _timed_run(full)
        finally:
            process_module.PREBIN = saved
        each = full_s / full_library_samples
        report.update({"full_library_samples": full_library_samples,
                       "full_library_per_sample_s": _sig(each),
                       "full_library_extrapolated_s": _sig(each * runs),
                       "speedup_vs_full_library": round(each * runs / batched_s, 2)})
    return report


def _timed_run(sweep):
    """A sweep's result and its wall time in seconds."""
    started = time.perf_counter()
    result = sweep.run()
    return result, time.perf_counter() - started


def _sig(seconds: float, digits: int = 4) -> float:
    """Rounded to significant figures: a fixed number of decimals loses a short time."""
    return float(f"{seconds:.{digits}g}")


def bench_sweep_dask(points: int = 1000, models: str = "builtin", batch: int | None = None,
                     scheduler: str | None = None, jobs: int | None = None,
                     progress: bool = False, repeat: int = 3) -> dict:
    """Time the pulse sweep on Dask with 1 and with 2 workers of one cluster, in this run,
    ``repeat`` times each, interleaved (1, 2, 1, 2, ...) so a change in the machine's load
    hits both alike; then on the local executor as a reference. Without ``scheduler`` a
    LocalCluster of 2 single-threaded workers on loopback is started (and stopped). Every
    table must be identical."""
    from gcsim.spice import executors

    model_set = processes.resolve(models)
    if batch is None:
        # 16 runs per grid (as _pulse_spec sizes it): two workers share them evenly.
        n_store = max(2, int(math.sqrt(points)))
        batch = max(1, math.ceil(n_store * max(2, math.ceil(points / n_store)) / 16))
    spec = _pulse_spec(points, model_set, batch, 2)
    runner = executors.DaskExecutor(scheduler) if scheduler else \
        executors.DaskExecutor(local_workers=2)
    timings: dict[int, list[float]] = {1: [], 2: []}
    tables, runs = [], 0
    with runner:
        addresses = runner.worker_addresses()
        if len(addresses) < 2:
            raise executors.ExecutorError(f"the Dask cluster at {runner.address} has "
                                          f"{len(addresses)} worker; the benchmark needs 2")
        threads = runner.client.nthreads()
        for _ in range(repeat):
            for count in (1, 2):
                runner.restrict_to = addresses[:count]
                sweep = Sweep(spec, models=models, cache=ResultCache(enabled=False),
                              progress=progress, executor=runner)
                result, seconds = _timed_run(sweep)
                timings[count].append(seconds)
                tables.append(result.table)
                runs = result.metadata["stats"]["runs"]
        runner.restrict_to = None
    local = Sweep(spec, models=models, workers=jobs, cache=ResultCache(enabled=False),
                  progress=progress)
    local_result, local_s = _timed_run(local)
    n = len(local.grid)
    identical = all(table.equals(local_result.table) for table in tables)
    median = {count: float(np.median(values)) for count, values in timings.items()}
    return {
        "points": n,
        "models": local.models.name,
        "batch": spec.batch,
        "runs": runs,
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "scheduler": scheduler or "LocalCluster (started by the benchmark)",
        "workers": {address: threads.get(address, 0) for address in addresses[:2]},
        "repeat": repeat,
        "dask_1_worker_s": [round(v, 3) for v in timings[1]],
        "dask_2_workers_s": [round(v, 3) for v in timings[2]],
        "dask_1_worker_points_per_s": round(n / median[1], 2),
        "dask_2_workers_points_per_s": round(n / median[2], 2),
        "ratio_2_over_1": round(median[1] / median[2], 3),
        "local_jobs": local.workers,
        "local_s": round(local_s, 3),
        "local_points_per_s": round(n / local_s, 2),
        "tables_identical": bool(identical),
        "design": local.design.name if local.design is not None else None,
    }
