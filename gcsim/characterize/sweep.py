"""Runs a characterisation spec: plans batched ngspice runs, executes them with caching and
failure isolation, and writes a tidy table plus a JSON sidecar with the provenance.

Batching: a dc spec whose swept parameters drive sources runs as one nested ``.dc`` per
combination of its other axes; every other point set runs as many independent testbench
instances in one netlist (``.op`` or ``.tran``). A run that fails is split in halves until
the failing points stand alone, each recorded with ngspice's own message.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gcsim import __version__
from gcsim.spice import devices
from gcsim.spice import engine
from gcsim.spice import process as processes
from gcsim.characterize.cache import ResultCache, run_key
from gcsim.core.errors import GcsimError, NgspiceUnavailable, ParameterError, SpecError
from gcsim.spice.template import Template, save_card, text_hash, vector_name
from gcsim.characterize.spec import Spec


@dataclass
class Unit:
    """One planned ngspice run over some points of the grid."""

    points: list[int]               # indexes into the sweep's grid
    dc_grid: bool                   # nested .dc (else: one instance per point)
    seed: int | None = None         # ngspice's seed (Monte Carlo with the library's mismatch)
    netlist: str = ""
    vectors: list[str] = field(default_factory=list)
    key: str = ""


@dataclass
class SweepResult:
    table: pd.DataFrame
    failures: list[dict]
    metadata: dict


class Sweep:
    """One spec's sweep. The grid is the spec's axes, inside its temperatures and Monte
    Carlo runs (the last axis varies fastest); each corner repeats the whole grid."""

    def __init__(self, spec: Spec, overrides: dict[str, float] | None = None,
                 models: str | None = None, workers: int | None = None,
                 cache: ResultCache | None = None, progress: bool | None = None,
                 executor=None):
        self.spec = spec
        # Where the runs happen (gcsim.spice.executors); None: local worker processes. The plan,
        # the netlists and their cache keys do not depend on it.
        if executor is None:
            executor = engine.DEFAULT_EXECUTOR.get()
        self.executor = executor if executor is not None and not executor.is_local else None
        self.template = Template.load(spec.netlist)
        self.fixed = self.template.check_params({**spec.parameters, **(overrides or {})})
        self.overrides = dict(overrides or {})
        for name in self.overrides:
            if name.lower() in {axis.param for axis in spec.axes}:
                raise SpecError(f"--set {name}: that parameter is swept by the spec")
        self.template.check_params({axis.param: axis.values[0] for axis in spec.axes})
        self.model_sets = self._model_sets(models)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.cache = cache if cache is not None else ResultCache()
        self.progress = progress
        self._check_extras()
        self.base_grid, self.base_labels = self._base_grid()
        self._use(self.model_sets[0])
        self._check_dc_sources()
        self.columns = [m.column for m in spec.measures]

    def _model_sets(self, selector: str | None) -> list[processes.ModelSet]:
        spec = self.spec
        base = spec.base or (spec.path.parent if spec.path else None)
        if selector:      # from the command line: relative to the current folder
            chosen, base = selector, None
        else:
            chosen = spec.models
        if spec.corners and ":" not in chosen:
            return [processes.resolve(processes.with_corner(chosen, corner), base)
                    for corner in spec.corners]
        return [processes.resolve(chosen, base)]

    def _check_extras(self) -> None:
        spec, name = self.spec, self.spec.name
        if spec.temperatures and "temp_c" not in self.template.defaults:
            raise SpecError(f"{name}: temperatures: {self.template.path.name} declares no "
                            "temp_c parameter (use .param temp_c=27 and .options temp={temp_c})")
        mc = spec.montecarlo
        if not mc:
            return
        for device in mc.devices:
            for key in ("dvth", "w", "l"):
                param = getattr(device, key)
                if param not in self.template.defaults:
                    raise SpecError(f"{name}: montecarlo.devices.{device.name}.{key}: "
                                    f"{self.template.path.name} declares no parameter "
                                    f"{param!r}")
            if device.dvth in self.template.global_params:
                raise SpecError(f"{name}: montecarlo.devices.{device.name}.dvth: {device.dvth} "
                                "is used at the top level; it must reach the device instance")
        for models in self.model_sets:
            if models.mismatch == "pdk":
                continue
            if models.mismatch == "none":
                raise SpecError(f"{name}: montecarlo: models {models.name} have no mismatch "
                                "data (give the roles a_vt_mV_um, or the library "
                                "mismatch_sections, in its role mapping)")
            if not mc.devices:
                raise SpecError(f"{name}: montecarlo.devices: required with models "
                                f"{models.name} (Pelgrom mismatch goes through the template's "
                                "dvth parameters)")
            for device in mc.devices:
                if device.role not in models.roles:
                    raise SpecError(f"{name}: montecarlo.devices.{device.name}.role: models "
                                    f"{models.name} map no role {device.role!r}")
                if not models.roles[device.role].a_vt_mV_um:
                    raise SpecError(f"{name}: montecarlo.devices.{device.name}: role "
                                    f"{device.role} of models {models.name} has no Pelgrom "
                                    "coefficient (a_vt_mV_um in its role mapping)")

    def _base_grid(self) -> tuple[list[dict[str, float]], list[dict]]:
        """Template parameters and extra row labels of every point, before mismatch."""
        spec = self.spec
        temperatures = spec.temperatures or (None,)
        runs = range(spec.montecarlo.runs) if spec.montecarlo else (None,)
        points = spec.grid()
        grid, labels = [], []
        for temperature in temperatures:
            for run in runs:
                for point in points:
                    params, label = dict(point), {}
                    if temperature is not None:
                        params["temp_c"] = temperature
                        label["temperature_C"] = temperature
                    if run is not None:
                        label["mc_run"] = run
                    grid.append(params)
                    labels.append(label)
        return grid, labels

    def _use(self, models: processes.ModelSet) -> None:
        """Select one corner's models: its hashes, and its grid with mismatch applied."""
        self.models = models
        self.model_hashes = models.file_hashes()
        self.varying = [a.param for a in self.spec.axes]
        if self.spec.temperatures:
            self.varying.append("temp_c")
        self.pdk_mc = bool(self.spec.montecarlo) and models.mismatch == "pdk"
        self.grid = [dict(p) for p in self.base_grid]
        self.labels = [dict(label) for label in self.base_labels]
        mc = self.spec.montecarlo
        if mc and not self.pdk_mc:
            self._apply_pelgrom(mc)

    def _apply_pelgrom(self, mc) -> None:
        """dvth of each declared device: A_Vt/sqrt(W*L) times a standard-normal draw that is
        a fixed function of (seed, run, device), so one run is one sample of the circuit
        across all its sweep points."""
        defaults = {**self.template.defaults, **self.fixed}
        for device in mc.devices:
            a_vt = self.models.roles[device.role].a_vt_mV_um
            self.varying.append(device.dvth)
            draws: dict[int, float] = {}
            for params, label in zip(self.grid, self.labels):
                run = label["mc_run"]
                if run not in draws:
                    draws[run] = processes.standard_normal(mc.seed, run, device.name)
                w = params.get(device.w, defaults[device.w])
                length = params.get(device.l, defaults[device.l])
                if w <= 0 or length <= 0:
                    raise ParameterError(f"montecarlo.devices.{device.name}: W and L must be "
                                         "> 0 for Pelgrom mismatch")
                dvth = draws[run] * processes.pelgrom_sigma_V(a_vt, w, length)
                params[device.dvth] = dvth
                label[f"dvth_{device.name}_V"] = dvth

    # ----------------------------------------------------------------- planning
    def _check_dc_sources(self) -> None:
        for axis in self.spec.axes:
            if not axis.dc_source:
                continue
            line = self.template.element_line(axis.dc_source)
            if line is None or not line.lower().startswith("v"):
                raise SpecError(f"{self.spec.name}: dc_source {axis.dc_source!r} is not a "
                                f"voltage source of {self.template.path.name}")
            if "{" + axis.param + "}" not in line.lower().replace(" ", ""):
                raise SpecError(f"{self.spec.name}: dc_source {axis.dc_source} does not take "
                                f"its value from {{{axis.param}}}")

    def plan(self) -> list[Unit]:
        spec = self.spec
        dc_axes = [a for a in spec.axes if a.dc_source] if spec.analysis == "dc" else []
        grid_dc = bool(dc_axes) and all(a.linear or len(a.values) == 1 for a in dc_axes)
        split_params = {p for p in self.varying if p in self.template.global_params}
        if grid_dc:
            split_params |= set(self.varying) - {a.param for a in dc_axes}
        groups: dict[tuple, list[int]] = {}
        for index, point in enumerate(self.grid):
            key = tuple(point[p] for p in sorted(split_params))
            if self.pdk_mc:    # the library draws mismatch at load: one seed per run
                key = (self.labels[index]["mc_run"],) + key
            groups.setdefault(key, []).append(index)
        units = []
        for indexes in groups.values():
            seed = self._seed(indexes[0])
            if grid_dc:
                units.append(self._build(Unit(indexes, True, seed)))
            else:
                # Batch points whose later axes agree (pulse width, say): instances of one
                # transient share its time steps, and every instance's own breakpoints force
                # small steps on all of them, so like timings together keep runs short.
                params = [a.param for a in spec.axes]
                indexes = sorted(indexes, key=lambda i: [self.grid[i][p] for p in reversed(params)])
                for start in range(0, len(indexes), spec.batch):
                    units.append(self._build(Unit(indexes[start:start + spec.batch], False,
                                                  seed)))
        return units

    def _seed(self, index: int) -> int | None:
        if not self.pdk_mc:
            return None
        return processes.run_seed(self.spec.montecarlo.seed, self.labels[index]["mc_run"])

    def _run_params(self, unit: Unit, shared: set[str]) -> dict[str, float]:
        first = self.grid[unit.points[0]]
        return {**self.fixed, **{p: first[p] for p in shared}}

    def _build(self, unit: Unit) -> Unit:
        spec = self.spec
        axis_params = list(self.varying)
        model_lines = self.models.lines(unit.seed)
        if unit.dc_grid:
            dc_axes = [a for a in spec.axes if a.dc_source]
            shared = set(axis_params) - {a.param for a in dc_axes}
            params = self._run_params(unit, shared)
            sweep = []
            for axis in reversed(dc_axes):   # ngspice's first source varies fastest
                step = (axis.values[-1] - axis.values[0]) / (len(axis.values) - 1) \
                    if len(axis.values) > 1 else 1.0
                sweep += [axis.dc_source, repr(axis.values[0]), repr(axis.values[-1]), repr(step)]
            def render(lines):
                return self.template.render(params, lines, [".dc " + " ".join(sweep)])
            unit.vectors = sorted({vector_name(m.vector) for m in spec.measures})
        else:
            shared = {p for p in axis_params if p in self.template.global_params}
            params = self._run_params(unit, shared)
            instances = [{p: self.grid[i][p] for p in axis_params if p not in shared}
                         for i in unit.points]
            if spec.analysis == "tran":
                analysis = f".tran {spec.tran_step!r} {spec.tran_stop!r}"
                if spec.tran_max_step:
                    analysis += f" 0 {spec.tran_max_step!r}"
            else:
                analysis = ".op"
            saves = [save_card(m.vector, n) for n in range(len(instances)) for m in spec.measures]
            def render(lines):
                return self.template.render(params, lines, [analysis], instances=instances,
                                            save=sorted(set(saves)))
            unit.vectors = sorted({vector_name(m.vector, n) for n in range(len(instances))
                                   for m in spec.measures})
            if spec.analysis == "tran":
                unit.vectors.append("time")
        unit.netlist = render(model_lines)
        found = devices.check_sizes(unit.netlist, self.models)
        if self.models.prebin_file:
            # Give each role a device copy with only the model bins its sizes use.
            sizes: dict[str, set] = {}
            for device in found:
                sizes.setdefault(device.role, set()).add((device.w_m, device.l_m))
            unit.netlist = render(self.models.lines(unit.seed, sizes))
        unit.key = run_key(netlist=unit.netlist, vectors=unit.vectors,
                           models=self.model_hashes, ngspice=self.ngspice,
                           ngbehavior=self.models.ngbehavior)
        return unit

    # ----------------------------------------------------------------- extraction
    def _extract(self, unit: Unit, vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Turn a run's vectors into one array per column, in unit.points order.
        Raises ValueError when the run is incomplete, which counts as a failed run."""
        spec = self.spec
        n = len(unit.points)
        out: dict[str, np.ndarray] = {}
        if unit.dc_grid:
            for m in spec.measures:
                data = vectors[vector_name(m.vector)]
                if data.shape != (n,):
                    raise ValueError(f"dc sweep returned {data.size} points, expected {n}")
                out[m.column] = data * m.scale
            return out
        if spec.analysis != "tran":
            for m in spec.measures:
                out[m.column] = np.array([vectors[vector_name(m.vector, k)][-1]
                                          for k in range(n)]) * m.scale
            return out
        time_s = vectors["time"]
        if time_s.size < 2 or time_s[-1] < spec.tran_stop * (1 - 1e-6):
            raise ValueError(f"transient stopped at {time_s[-1]:.4g} s of {spec.tran_stop:.4g} s")
        for m in spec.measures:
            rows = []
            for k in range(n):
                data = vectors[vector_name(m.vector, k)]
                if m.sample:
                    rows.append(np.interp(m.sample, time_s, data))
                elif m.at is not None:
                    rows.append(np.interp(m.at, time_s, data))
                else:
                    rows.append(data[-1])
            out[m.column] = np.array(rows, dtype=float) * m.scale
        return out

    # ----------------------------------------------------------------- execution
    def run(self) -> SweepResult:
        started = time.perf_counter()
        # Part of every cache key: the version of the ngspice that runs the netlists.
        self.ngspice = (self.executor.ngspice_version() if self.executor
                        else engine.ngspice_version())
        stats = {"runs": 0, "cache_hits": 0, "splits": 0, "planned_runs": 0}
        tables, failure_rows, hashes = [], [], {}
        bar = _progress(len(self.base_grid) * len(self.model_sets), self.spec.name,
                        self.progress)
        try:
            for models in self.model_sets:
                self._use(models)
                values, failures = self._run_corner(stats, bar)
                tables.append(self._table(values))
                hashes[models.name] = self.model_hashes
                failure_rows += [{**({"corner": models.corner} if self.spec.corners else {}),
                                  **self.labels[i], **self.grid[i], "message": failures[i]}
                                 for i in sorted(failures)]
        finally:
            bar.close()
        table = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
        metadata = self._metadata(len(self.base_grid) * len(self.model_sets), failure_rows,
                                  stats, time.perf_counter() - started, hashes)
        return SweepResult(table, failure_rows, metadata)

    def _run_corner(self, stats: dict, bar) -> tuple[dict, dict]:
        units = self.plan()
        stats["planned_runs"] += len(units)
        values: dict[int, dict[str, np.ndarray]] = {}
        failures: dict[int, str] = {}
        queue = units
        while queue:
            to_run = []
            for unit in queue:
                cached = self.cache.get(unit.key)
                if cached is not None and not self._complete(unit, cached):
                    self.cache.discard(unit.key)    # damaged or foreign: recompute it
                    cached = None
                if cached is None:
                    to_run.append(unit)
                    continue
                stats["cache_hits"] += 1
                self._record(unit, cached, values, failures)
                bar.update(len(unit.points))
            queue = []
            requests = (engine.RunRequest(u.netlist, u.vectors, self.models.ngbehavior,
                                          self.spec.timeout_s, tag=u) for u in to_run)
            runs = engine.run_many(requests, self.workers) if self.executor is None else \
                engine.run_many(requests, self.workers, executor=self.executor)
            for request, result in runs:
                unit: Unit = request.tag
                stats["runs"] += 1
                if result.kind == "unavailable":
                    raise NgspiceUnavailable(result.error)
                if result.ok:
                    try:
                        stored = self._extract(unit, result.vectors)
                    except (ValueError, KeyError, IndexError) as exc:
                        result = engine.RunResult(False, error=str(exc), kind="failed")
                    else:
                        self.cache.put(unit.key, stored)
                        self._record(unit, stored, values, failures)
                        bar.update(len(unit.points))
                        continue
                if result.kind in ("failed", "crashed") and len(unit.points) > 1:
                    stats["splits"] += 1
                    queue.extend(self._split(unit))
                    continue
                for index in unit.points:
                    failures[index] = f"{result.kind}: {result.error}"
                if result.kind == "failed":   # deterministic: remember it
                    self.cache.put(unit.key, {"failed": np.array([result.error or ""])})
                bar.update(len(unit.points))
        return values, failures

    def _split(self, unit: Unit) -> list[Unit]:
        if unit.dc_grid:
            step = self.spec.batch
            return [self._build(Unit(unit.points[s:s + step], False, unit.seed))
                    for s in range(0, len(unit.points), step)]
        half = len(unit.points) // 2
        return [self._build(Unit(unit.points[:half], False, unit.seed)),
                self._build(Unit(unit.points[half:], False, unit.seed))]

    def _complete(self, unit: Unit, stored: dict) -> bool:
        """Whether a cached entry holds a result for this unit: a failure message, or every
        column as numbers, one entry per point."""
        if "failed" in stored:
            return stored["failed"].shape == (1,)
        return all(column in stored and stored[column].dtype.kind == "f"
                   and stored[column].shape[:1] == (len(unit.points),)
                   for column in self.columns)

    def _record(self, unit, stored, values, failures) -> None:
        if "failed" in stored:
            message = str(stored["failed"][0])
            for index in unit.points:
                failures[index] = f"failed: {message}"
            return
        for position, index in enumerate(unit.points):
            values[index] = {column: stored[column][position] for column in self.columns}

    def _table(self, values: dict[int, dict[str, np.ndarray]]) -> pd.DataFrame:
        """Rows in grid order: [corner], [temperature_C], [mc_run, dvth_*_V], the axes,
        [time_s], then the measurements."""
        spec = self.spec
        order = sorted(values)
        sample = next((m.sample for m in spec.measures if m.sample), None)
        repeat = len(sample) if sample else 1
        data: dict[str, np.ndarray] = {}
        if spec.corners:
            data["corner"] = np.repeat(np.array([self.models.corner] * len(order), dtype=object),
                                       repeat)
        label_columns = list(self.labels[0]) if self.labels else []
        for column in label_columns:
            column_values = np.array([self.labels[i][column] for i in order])
            if column == "mc_run":
                column_values = column_values.astype(np.int64)
            data[column] = np.repeat(column_values, repeat)
        for axis in spec.axes:
            data[axis.column] = np.repeat(
                np.array([self.grid[i][axis.param] for i in order], dtype=float), repeat)
        if sample:
            data["time_s"] = np.tile(np.asarray(sample, dtype=float), len(order))
        for column in self.columns:
            column_values = [np.atleast_1d(values[i][column]) for i in order]
            data[column] = (np.asarray(np.concatenate(column_values), dtype=float)
                            if column_values else np.array([], dtype=float))
        return pd.DataFrame(data)

    def _metadata(self, n_points, failure_rows, stats, elapsed, hashes) -> dict:
        base = self.template.render(self.fixed, self.models.lines(), [])
        mc = self.spec.montecarlo
        names = [m.name for m in self.model_sets]
        return {
            "gcsim_version": __version__,
            "ngspice_version": self.ngspice,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "spec_name": self.spec.name,
            "spec_path": str(self.spec.path) if self.spec.path else None,
            "spec": self.spec.raw,
            "overrides": self.overrides,
            "parameters": {**self.template.defaults, **self.fixed},
            "models": names[0] if len(names) == 1 else names,
            "supply_V": self.models.supply_V,
            "model_files_sha256": hashes[names[0]] if len(names) == 1 else hashes,
            "netlist": str(self.template.path),
            "netlist_sha256": text_hash(base),
            "analysis": self.spec.analysis,
            "temperatures_C": list(self.spec.temperatures) if self.spec.temperatures else None,
            "montecarlo": None if not mc else {
                "runs": mc.runs, "seed": mc.seed,
                "mismatch": {m.name: m.mismatch for m in self.model_sets},
                "a_vt_mV_um": {d.name: self.models.roles[d.role].a_vt_mV_um
                               for d in mc.devices if d.role in self.models.roles}},
            "points": n_points,
            "failed_points": failure_rows,
            "stats": {**stats, "elapsed_s": round(elapsed, 3),
                      "workers": self.executor.threads() if self.executor else self.workers,
                      "executor": self.executor.describe() if self.executor else "local"},
            "command": " ".join(sys.argv),
        }


def _progress(total: int, name: str, enabled: bool | None):
    from tqdm import tqdm

    # disable=None: shown on a terminal, silent in pipes and CI logs.
    return tqdm(total=total, desc=name, unit="pt", disable=None if enabled is None else not enabled,
                leave=False, file=sys.stderr)


def write_outputs(result: SweepResult, output: Path, fmt: str) -> Path:
    """Write the table and its sidecar atomically: a failure leaves any old files intact."""
    output = Path(output)
    sidecar = output.with_suffix(".json")
    metadata = {**result.metadata, "table": str(output.name),
                "columns": list(result.table.columns), "rows": int(len(result.table))}
    temporaries = []
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, table_tmp = tempfile.mkstemp(dir=output.parent, suffix=".tmp")
        os.close(handle)
        temporaries.append(table_tmp)
        if fmt == "csv":
            result.table.to_csv(table_tmp, index=False)
        else:
            result.table.to_parquet(table_tmp, index=False)
        handle, meta_tmp = tempfile.mkstemp(dir=output.parent, suffix=".tmp")
        temporaries.append(meta_tmp)
        with os.fdopen(handle, "w") as stream:
            json.dump(metadata, stream, indent=2, default=_json_default)
            stream.write("\n")
        os.replace(table_tmp, output)
        os.replace(meta_tmp, sidecar)
    except OSError as exc:
        raise GcsimError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        for path in temporaries:
            if os.path.exists(path):
                os.unlink(path)
    return sidecar


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)
