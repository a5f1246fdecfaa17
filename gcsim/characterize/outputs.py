"""What a sweep produces and how it is written: the tidy table of a corner's points, the
provenance that goes in the JSON sidecar, and writing both atomically."""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gcsim import __version__
from gcsim.core.atomic import OutputError, check_targets, replacing_all
from gcsim.core.errors import GcsimError
from gcsim.spice import process as processes
from gcsim.spice.template import Template, text_hash
from gcsim.characterize.spec import Spec


@dataclass
class SweepResult:
    table: pd.DataFrame
    failures: list[dict]
    metadata: dict


def corner_table(spec: Spec, corner: str | None, grid: list[dict[str, float]],
                 labels: list[dict], columns: list[str],
                 values: dict[int, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Rows in grid order: [corner], [temperature_C], [mc_run, dvth_*_V], the axes,
    [time_s], then the measurements."""
    order = sorted(values)
    sample = next((m.sample for m in spec.measures if m.sample), None)
    repeat = len(sample) if sample else 1
    data: dict[str, np.ndarray] = {}
    if spec.corners:
        data["corner"] = np.repeat(np.array([corner] * len(order), dtype=object), repeat)
    label_columns = list(labels[0]) if labels else []
    for column in label_columns:
        column_values = np.array([labels[i][column] for i in order])
        if column == "mc_run":
            column_values = column_values.astype(np.int64)
        data[column] = np.repeat(column_values, repeat)
    for axis in spec.axes:
        data[axis.column] = np.repeat(
            np.array([grid[i][axis.param] for i in order], dtype=float), repeat)
    if sample:
        data["time_s"] = np.tile(np.asarray(sample, dtype=float), len(order))
    for column in columns:
        column_values = [np.atleast_1d(values[i][column]) for i in order]
        data[column] = (np.asarray(np.concatenate(column_values), dtype=float)
                        if column_values else np.array([], dtype=float))
    return pd.DataFrame(data)


def provenance(spec: Spec, template: Template, fixed: dict[str, float], overrides: dict,
               models: processes.ModelSet, model_sets: list[processes.ModelSet],
               hashes: dict[str, dict], ngspice: str, n_points: int, failure_rows: list[dict],
               stats: dict, elapsed: float, workers: int, executor: str,
               design=None) -> dict:
    """The sidecar's record of how the table was made. ``models``: the corner in use (the
    last one run); ``hashes``: the model files' hashes of each corner, by models name;
    ``design``: the gcsim.core.design.Design whose values the run took (None: the
    template's defaults)."""
    base = template.render(fixed, models.lines(), [])
    mc = spec.montecarlo
    swept = {axis.param for axis in spec.axes} | ({"temp_c"} if spec.temperatures else set()) \
        | ({d.dvth for d in mc.devices} if mc else set())
    names = [m.name for m in model_sets]
    return {
        "gcsim_version": __version__,
        "ngspice_version": ngspice,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "spec_name": spec.name,
        "spec_path": str(spec.path) if spec.path else None,
        "spec": spec.raw,
        "overrides": overrides,
        # The values every point ran at: a swept parameter's template default never ran.
        "parameters": {name: value for name, value in {**template.defaults, **fixed}.items()
                       if name not in swept},
        "models": names[0] if len(names) == 1 else names,
        "design": design.name if design is not None else None,
        "design_sha256": design.sha256 if design is not None else None,
        # The design's levels, for a fit whose table sweeps them (the I-V table sweeps v_in).
        "design_operating_point": None if design is None else {
            "v_mid_V": design.operating.mid_rail_V, "read_on_V": design.operating.read_on_n_V},
        "supply_V": models.supply_V,
        "model_files_sha256": hashes[names[0]] if len(names) == 1 else hashes,
        "netlist": str(template.path),
        "netlist_sha256": text_hash(base),
        "analysis": spec.analysis,
        "temperatures_C": list(spec.temperatures) if spec.temperatures else None,
        "montecarlo": None if not mc else {
            "runs": mc.runs, "seed": mc.seed,
            "mismatch": {m.name: m.mismatch for m in model_sets},
            "a_vt_mV_um": {d.name: models.roles[d.role].a_vt_mV_um
                           for d in mc.devices if d.role in models.roles}},
        "points": n_points,
        "failed_points": failure_rows,
        "stats": {**stats, "elapsed_s": round(elapsed, 3), "workers": workers,
                  "executor": executor},
        "command": " ".join(sys.argv),
    }


def sidecar_of(output: Path) -> Path:
    """The JSON sidecar beside a table: its name with .json."""
    return Path(output).with_suffix(".json")


def check_outputs(output: Path) -> tuple[Path, Path]:
    """The table and its sidecar, refused in one line before a sweep runs when they could not
    be written: a table named .json (its sidecar would be the same file), or a target that
    exists and is not a regular file (a FIFO, a device, a symlink, a folder)."""
    output = Path(output)
    sidecar = sidecar_of(output)
    if output.suffix.lower() == ".json":
        raise OutputError(f"output {output}: a table named .json would be overwritten by its "
                          "JSON sidecar; name it .parquet or .csv")
    check_targets([output, sidecar], "output")
    return output, sidecar


def write_outputs(result: SweepResult, output: Path, fmt: str) -> Path:
    """Write the table and its sidecar together (core.atomic): a failure or an interruption
    leaves any old files intact and no temporary behind. Returns the sidecar."""
    output, sidecar = check_outputs(output)
    metadata = {**result.metadata, "table": str(output.name),
                "columns": list(result.table.columns), "rows": int(len(result.table))}
    try:
        with replacing_all(output, sidecar, what="output") as (table_tmp, meta_tmp):
            if fmt == "csv":
                result.table.to_csv(table_tmp, index=False)
            else:
                result.table.to_parquet(table_tmp, index=False)
            with open(meta_tmp, "w") as stream:
                json.dump(metadata, stream, indent=2, default=_json_default)
                stream.write("\n")
    except OSError as exc:
        raise GcsimError(f"cannot write {output}: {exc.strerror or exc}") from None
    return sidecar


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)
