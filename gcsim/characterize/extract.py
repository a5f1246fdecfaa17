"""Turns a run's ngspice vectors into measured columns, one entry per point, and checks and
hands out the stored (cached) form of those columns point by point."""

from __future__ import annotations

import numpy as np

from gcsim.spice.template import vector_name
from gcsim.characterize.plan import Unit
from gcsim.characterize.spec import Spec

# Bump when extract() changes what it makes of the same vectors: cached results, which are
# extract()'s output, are then missed rather than served stale.
EXTRACTION_VERSION = 2


def extraction_key(spec: Spec) -> dict:
    """Everything besides the netlist that decides a run's cached columns: each measure's
    vector, scale, time (`at`) and sample grid, the analysis, and this code's version."""
    return {"version": EXTRACTION_VERSION, "analysis": spec.analysis,
            "measures": [{"column": m.column, "vector": m.vector, "scale": m.scale, "at": m.at,
                          "sample": list(m.sample) if m.sample else None}
                         for m in spec.measures]}


def column_shapes(spec: Spec, points: int) -> dict[str, tuple[int, ...]]:
    """The stored shape of each column for a run of `points` points."""
    return {m.column: (points, len(m.sample)) if m.sample and spec.analysis == "tran"
            else (points,) for m in spec.measures}


def extract(spec: Spec, unit: Unit, vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn a run's vectors into one array per column, in unit.points order.
    Raises ValueError when the run is incomplete, which counts as a failed run."""
    n = len(unit.points)
    out: dict[str, np.ndarray] = {}
    if unit.instance_points:
        samples = n // unit.instance_points
        for m in spec.measures:
            rows = [vectors[vector_name(m.vector, k)] for k in range(samples)]
            if any(row.shape != (unit.instance_points,) for row in rows):
                raise ValueError(f"dc sweep returned {rows[0].size} points per instance, "
                                 f"expected {unit.instance_points}")
            out[m.column] = np.concatenate(rows) * m.scale
        return out
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


def complete(unit: Unit, stored: dict, spec: Spec) -> bool:
    """Whether a cached entry holds a result for this unit: a failure message, or every
    column as numbers in exactly its shape (one entry, or one sample row, per point)."""
    if "failed" in stored:
        return stored["failed"].shape == (1,)
    return all(column in stored and stored[column].dtype.kind == "f"
               and stored[column].shape == shape
               for column, shape in column_shapes(spec, len(unit.points)).items())


def record(unit: Unit, stored: dict, columns: list[str], values: dict[int, dict],
           failures: dict[int, str]) -> None:
    """File a stored result under its points: their values, or the run's failure message."""
    if "failed" in stored:
        message = str(stored["failed"][0])
        for index in unit.points:
            failures[index] = f"failed: {message}"
        return
    for position, index in enumerate(unit.points):
        values[index] = {column: stored[column][position] for column in columns}
