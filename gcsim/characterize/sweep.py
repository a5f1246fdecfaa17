"""Runs a characterisation spec: plans batched ngspice runs (plan, render), executes them with
caching and failure isolation, and collects the table and its provenance (outputs).

A run that fails is split in halves until the failing points stand alone, each recorded with
ngspice's own message.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pandas as pd

from gcsim.core import resources
from gcsim.core.design import Design, default_design, load_design
from gcsim.core.errors import NgspiceUnavailable, SpecError
from gcsim.spice import engine
from gcsim.spice import process as processes
from gcsim.spice.template import Template
from gcsim.characterize import render
from gcsim.characterize.cache import ResultCache
from gcsim.characterize.extract import complete, extract, record
from gcsim.characterize.outputs import SweepResult, corner_table, provenance, write_outputs
from gcsim.characterize.plan import (Unit, apply_pelgrom, base_grid, check_dc_sources,
                                     check_extras, check_vectors, model_sets, plan_units,
                                     split)
from gcsim.characterize.spec import Spec

# Unit, SweepResult and write_outputs live in plan and outputs; callers import them from here.
__all__ = ["Sweep", "SweepResult", "Unit", "write_outputs"]


class Sweep:
    """One spec's sweep. The grid is the spec's axes, inside its temperatures and Monte
    Carlo runs (the last axis varies fastest); each corner repeats the whole grid."""

    def __init__(self, spec: Spec, overrides: dict[str, float] | None = None,
                 models: str | None = None, workers: int | None = None,
                 cache: ResultCache | None = None, progress: bool | None = None,
                 executor=None, design: Design | str | None = None):
        """``design``: a Design, or a shipped design's name or a design file; None: the
        models' process's default design (builtin's on builtin, none elsewhere yet)."""
        self.model_sets = model_sets(spec, models)
        self.template = Template.load(spec.netlist)
        self.design = _design_for(design, self.model_sets[0], self.template)
        # Values the spec writes in design terms ("vdd", "v_mid - 0.45") take this design's.
        spec = spec.for_design(self.design)
        self.spec = spec
        # Where the runs happen (gcsim.spice.executors); None: local worker processes. The plan,
        # the netlists and their cache keys do not depend on it.
        if executor is None:
            executor = engine.DEFAULT_EXECUTOR.get()
        self.executor = executor if executor is not None and not executor.is_local else None
        self.fixed = self.template.check_params({**spec.parameters, **(overrides or {})})
        self.overrides = dict(overrides or {})
        for name in self.overrides:
            if name.lower() in {axis.param for axis in spec.axes}:
                raise SpecError(f"--set {name}: that parameter is swept by the spec")
        self.template.check_params({axis.param: axis.values[0] for axis in spec.axes})
        check_vectors(spec, self.template)     # before any run: a typo would fail them all
        if self.design is not None:
            # The design sets every parameter the testbench declares and the spec does not
            # sweep; the spec's [parameters] and --set still override it.
            swept = {axis.param.lower() for axis in spec.axes} | {"temp_c"}
            values = {name: value for name, value in
                      self.design.template_parameters().items()
                      if name in self.template.defaults and name.lower() not in swept}
            self.fixed = self.template.check_params({**values, **spec.parameters,
                                                     **self.overrides})
        self.workers = max(1, workers or os.cpu_count() or 1)
        # Monte Carlo samples as instances of one netlist (False: one run per sample, the
        # baseline `gcsim bench sweep --montecarlo` times).
        self.sample_instances = True
        self.cache = cache if cache is not None else ResultCache()
        self.progress = progress
        check_extras(spec, self.template, self.model_sets)
        self.base_grid, self.base_labels = base_grid(spec)
        self._use(self.model_sets[0])
        check_dc_sources(spec, self.template)
        self.columns = [m.column for m in spec.measures]

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
            apply_pelgrom(mc, self.models, {**self.template.defaults, **self.fixed},
                          self.grid, self.labels, self.varying)

    # ----------------------------------------------------------------- planning
    def plan(self) -> list[Unit]:
        """The current corner's runs, built (netlist, vectors, cache key)."""
        return [self._build(unit) for unit in plan_units(self.spec, self.template, self.grid,
                                                         self.labels, self.varying,
                                                         self.pdk_mc, self.sample_instances)]

    def _build(self, unit: Unit) -> Unit:
        return render.build(unit, self.spec, self.template, self.models, self.model_hashes,
                            self.fixed, self.grid, self.varying, self.ngspice)

    def _split(self, unit: Unit) -> list[Unit]:
        return [self._build(part) for part in split(unit, self.spec.batch)]

    def _extract(self, unit: Unit, vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return extract(self.spec, unit, vectors)

    # ----------------------------------------------------------------- execution
    def run(self) -> SweepResult:
        started = time.perf_counter()
        # Part of every cache key: the version of the ngspice that runs the netlists.
        self.ngspice = (self.executor.ngspice_version() if self.executor
                        else engine.ngspice_version())
        stats = {"runs": 0, "cache_hits": 0, "splits": 0, "planned_runs": 0}
        tables, failure_rows, hashes = [], [], {}
        n_points = len(self.base_grid) * len(self.model_sets)
        bar = _progress(n_points, self.spec.name, self.progress)
        try:
            for models in self.model_sets:
                self._use(models)
                values, failures = self._run_corner(stats, bar)
                tables.append(corner_table(self.spec, self.models.corner, self.grid,
                                           self.labels, self.columns, values))
                hashes[models.name] = self.model_hashes
                failure_rows += self._failure_rows(failures)
        finally:
            bar.close()
        table = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
        metadata = provenance(
            self.spec, self.template, self.fixed, self.overrides, self.models, self.model_sets,
            hashes, self.ngspice, n_points, failure_rows, stats,
            time.perf_counter() - started,
            workers=self.executor.threads() if self.executor else self.workers,
            executor=self.executor.describe() if self.executor else "local",
            design=self.design)
        return SweepResult(table, failure_rows, metadata)

    def _failure_rows(self, failures: dict[int, str]) -> list[dict]:
        """The current corner's failed points as rows: [corner], labels, parameters, message."""
        return [{**({"corner": self.models.corner} if self.spec.corners else {}),
                 **self.labels[i], **self.grid[i], "message": failures[i]}
                for i in sorted(failures)]

    def _run_corner(self, stats: dict, bar) -> tuple[dict, dict]:
        """Every point of the current corner: from the cache, else from a run; a failed run of
        several points is split and its parts run again, until each failure stands alone."""
        queue = self.plan()
        stats["planned_runs"] += len(queue)
        values: dict[int, dict[str, np.ndarray]] = {}
        failures: dict[int, str] = {}
        while queue:
            to_run = self._take_cached(queue, stats, values, failures, bar)
            queue = []
            for request, result in self._run_units(to_run):
                stats["runs"] += 1
                queue.extend(self._settle(request.tag, result, stats, values, failures, bar))
        return values, failures

    def _take_cached(self, units: list[Unit], stats: dict, values: dict, failures: dict,
                     bar) -> list[Unit]:
        """Record the units the cache has; return the others, to run."""
        to_run = []
        for unit in units:
            cached = self.cache.get(unit.key)
            if cached is not None and not complete(unit, cached, self.spec):
                self.cache.discard(unit.key)    # damaged or foreign: recompute it
                cached = None
            if cached is None:
                to_run.append(unit)
                continue
            stats["cache_hits"] += 1
            record(unit, cached, self.columns, values, failures)
            bar.update(len(unit.points))
        return to_run

    def _run_units(self, units: list[Unit]):
        """(request, result) pairs as the runs end; each request's tag is its unit."""
        requests = (engine.RunRequest(u.netlist, u.vectors, self.models.ngbehavior,
                                      self.spec.timeout_s, tag=u) for u in units)
        if self.executor is None:
            return engine.run_many(requests, self.workers)
        return engine.run_many(requests, self.workers, executor=self.executor)

    def _settle(self, unit: Unit, result: engine.RunResult, stats: dict, values: dict,
                failures: dict, bar) -> list[Unit]:
        """Record a finished run (and cache it); return the parts to run again when a run of
        several points failed."""
        if result.kind == "unavailable":
            raise NgspiceUnavailable(result.error)
        if result.ok:
            try:
                stored = self._extract(unit, result.vectors)
            except (ValueError, KeyError, IndexError) as exc:
                result = engine.RunResult(False, error=str(exc), kind="failed")
            else:
                self.cache.put(unit.key, stored)
                record(unit, stored, self.columns, values, failures)
                bar.update(len(unit.points))
                return []
        if result.kind in ("failed", "crashed") and len(unit.points) > 1:
            stats["splits"] += 1
            return self._split(unit)
        for index in unit.points:
            failures[index] = f"{result.kind}: {result.error}"
        if result.kind == "failed":   # deterministic: remember it
            self.cache.put(unit.key, {"failed": np.array([result.error or ""])})
        bar.update(len(unit.points))
        return []


def _design_for(design: Design | str | None, models: processes.ModelSet,
                template: Template) -> Design | None:
    """The design a sweep runs on, refused in one line when it belongs to another process.
    The default design applies to gcsim's own testbenches only: a user's netlist that
    happens to declare a parameter named like a design's (v_in, vdd) keeps its own value
    unless a design is asked for."""
    if design is None:
        shipped = resources.NETLISTS.resolve()
        if not template.path.resolve().is_relative_to(shipped):
            return None
        # The process's shipped design (netlists/designs/PROCESS.toml); a user library has
        # none, and its design comes with --design.
        return default_design(models.process)
    if not isinstance(design, Design):
        design = load_design(design)
    if design.process != models.process:
        raise SpecError(f"design {design.name} is for process {design.process}, and the "
                        f"models are {models.name}: pick that process's models or design")
    return design


def _progress(total: int, name: str, enabled: bool | None):
    from tqdm import tqdm

    # disable=None: shown on a terminal, silent in pipes and CI logs.
    return tqdm(total=total, desc=name, unit="pt", disable=None if enabled is None else not enabled,
                leave=False, file=sys.stderr)
