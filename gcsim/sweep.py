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

from gcsim import __version__, engine, models as models_module
from gcsim.cache import ResultCache, run_key
from gcsim.errors import GcsimError, NgspiceUnavailable, SpecError
from gcsim.netlist import Template, save_card, text_hash, vector_name
from gcsim.spec import Spec


@dataclass
class Unit:
    """One planned ngspice run over some points of the grid."""

    points: list[int]               # indexes into the spec's grid
    dc_grid: bool                   # nested .dc (else: one instance per point)
    netlist: str = ""
    vectors: list[str] = field(default_factory=list)
    key: str = ""


@dataclass
class SweepResult:
    table: pd.DataFrame
    failures: list[dict]
    metadata: dict


class Sweep:
    def __init__(self, spec: Spec, overrides: dict[str, float] | None = None,
                 models: str | None = None, workers: int | None = None,
                 cache: ResultCache | None = None, progress: bool | None = None):
        self.spec = spec
        self.template = Template.load(spec.netlist)
        self.fixed = self.template.check_params({**spec.parameters, **(overrides or {})})
        self.overrides = dict(overrides or {})
        for name in self.overrides:
            if name.lower() in {axis.param for axis in spec.axes}:
                raise SpecError(f"--set {name}: that parameter is swept by the spec")
        self.template.check_params({axis.param: axis.values[0] for axis in spec.axes})
        self.models = models_module.resolve(models or spec.models)
        self.model_hashes = self.models.file_hashes()
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.cache = cache if cache is not None else ResultCache()
        self.progress = progress
        self.grid = spec.grid()
        self._check_dc_sources()
        self.columns = [m.column for m in spec.measures]

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
        split_params = {a.param for a in spec.axes if a.param in self.template.global_params}
        if grid_dc:
            split_params |= {a.param for a in spec.axes if not a.dc_source}
        groups: dict[tuple, list[int]] = {}
        for index, point in enumerate(self.grid):
            groups.setdefault(tuple(point[p] for p in sorted(split_params)), []).append(index)
        units = []
        for indexes in groups.values():
            if grid_dc:
                units.append(self._build(Unit(indexes, True)))
            else:
                # Batch points whose later axes agree (pulse width, say): instances of one
                # transient share its time steps, and every instance's own breakpoints force
                # small steps on all of them, so like timings together keep runs short.
                params = [a.param for a in spec.axes]
                indexes = sorted(indexes, key=lambda i: [self.grid[i][p] for p in reversed(params)])
                for start in range(0, len(indexes), spec.batch):
                    units.append(self._build(Unit(indexes[start:start + spec.batch], False)))
        return units

    def _run_params(self, unit: Unit, shared: set[str]) -> dict[str, float]:
        first = self.grid[unit.points[0]]
        return {**self.fixed, **{p: first[p] for p in shared}}

    def _build(self, unit: Unit) -> Unit:
        spec = self.spec
        axis_params = [a.param for a in spec.axes]
        if unit.dc_grid:
            dc_axes = [a for a in spec.axes if a.dc_source]
            shared = set(axis_params) - {a.param for a in dc_axes}
            params = self._run_params(unit, shared)
            sweep = []
            for axis in reversed(dc_axes):   # ngspice's first source varies fastest
                step = (axis.values[-1] - axis.values[0]) / (len(axis.values) - 1) \
                    if len(axis.values) > 1 else 1.0
                sweep += [axis.dc_source, repr(axis.values[0]), repr(axis.values[-1]), repr(step)]
            unit.netlist = self.template.render(params, self.models.lines(),
                                                [".dc " + " ".join(sweep)])
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
            unit.netlist = self.template.render(params, self.models.lines(), [analysis],
                                                instances=instances, save=sorted(set(saves)))
            unit.vectors = sorted({vector_name(m.vector, n) for n in range(len(instances))
                                   for m in spec.measures})
            if spec.analysis == "tran":
                unit.vectors.append("time")
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
        self.ngspice = engine.ngspice_version()
        units = self.plan()
        n_points = len(self.grid)
        values: dict[int, dict[str, np.ndarray]] = {}
        failures: dict[int, str] = {}
        stats = {"runs": 0, "cache_hits": 0, "splits": 0, "planned_runs": len(units)}
        bar = _progress(n_points, self.spec.name, self.progress)
        try:
            queue = units
            while queue:
                to_run = []
                for unit in queue:
                    cached = self.cache.get(unit.key)
                    if cached is None:
                        to_run.append(unit)
                        continue
                    stats["cache_hits"] += 1
                    self._record(unit, cached, values, failures)
                    bar.update(len(unit.points))
                queue = []
                requests = (engine.RunRequest(u.netlist, u.vectors, self.models.ngbehavior,
                                              self.spec.timeout_s, tag=u) for u in to_run)
                for request, result in engine.run_many(requests, self.workers):
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
        finally:
            bar.close()
        table = self._table(values)
        failure_rows = [{**self.grid[i], "message": failures[i]} for i in sorted(failures)]
        metadata = self._metadata(n_points, failure_rows, stats, time.perf_counter() - started)
        return SweepResult(table, failure_rows, metadata)

    def _split(self, unit: Unit) -> list[Unit]:
        if unit.dc_grid:
            step = self.spec.batch
            return [self._build(Unit(unit.points[s:s + step], False))
                    for s in range(0, len(unit.points), step)]
        half = len(unit.points) // 2
        return [self._build(Unit(unit.points[:half], False)),
                self._build(Unit(unit.points[half:], False))]

    def _record(self, unit, stored, values, failures) -> None:
        if "failed" in stored:
            message = str(stored["failed"][0])
            for index in unit.points:
                failures[index] = f"failed: {message}"
            return
        for position, index in enumerate(unit.points):
            values[index] = {column: stored[column][position] for column in self.columns}

    def _table(self, values: dict[int, dict[str, np.ndarray]]) -> pd.DataFrame:
        spec = self.spec
        order = sorted(values)
        sample = next((m.sample for m in spec.measures if m.sample), None)
        repeat = len(sample) if sample else 1
        data: dict[str, np.ndarray] = {}
        for axis in spec.axes:
            data[axis.column] = np.repeat([self.grid[i][axis.param] for i in order], repeat)
        if sample:
            data["time_s"] = np.tile(np.asarray(sample), len(order))
        for column in self.columns:
            column_values = [np.atleast_1d(values[i][column]) for i in order]
            data[column] = (np.concatenate(column_values) if column_values
                            else np.array([], dtype=float))
        return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in data.items()})

    def _metadata(self, n_points, failure_rows, stats, elapsed) -> dict:
        base = self.template.render(self.fixed, self.models.lines(), [])
        return {
            "gcsim_version": __version__,
            "ngspice_version": self.ngspice,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "spec_name": self.spec.name,
            "spec_path": str(self.spec.path) if self.spec.path else None,
            "spec": self.spec.raw,
            "overrides": self.overrides,
            "parameters": {**self.template.defaults, **self.fixed},
            "models": self.models.name,
            "model_files_sha256": self.model_hashes,
            "netlist": str(self.template.path),
            "netlist_sha256": text_hash(base),
            "analysis": self.spec.analysis,
            "points": n_points,
            "failed_points": failure_rows,
            "stats": {**stats, "elapsed_s": round(elapsed, 3), "workers": self.workers},
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
