"""Fit one table: read it (a gcsim sweep, or any CSV/Parquet with a column mapping), check its
columns, fit the kind, attach provenance, and write the JSON and its plot."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd

from gcsim.core.atomic import replacing_all
from gcsim.core.errors import GcsimError, ParameterError
from gcsim.core.files import check_regular
from gcsim.core.values import parse_number
from gcsim.fit import kinds, schema
from gcsim.fit.numerics import FitError
from gcsim.fit.plots import plot_fit


def read_table(path: str | Path, column_map: dict[str, str] | None = None) -> pd.DataFrame:
    """Load a Parquet or CSV table; `column_map` maps gcsim column -> the table's own name."""
    path = check_regular(path, "table", MAX_TABLE_BYTES)
    try:
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path)
        elif path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            raise GcsimError(f"table {path}: expected .parquet or .csv")
    except GcsimError:
        raise
    except Exception as exc:  # pyarrow and pandas raise many types for a corrupt file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GcsimError(f"table {path}: cannot read it ({first})") from None
    if column_map:
        missing = [theirs for theirs in column_map.values() if theirs not in table.columns]
        if missing:
            raise GcsimError(f"table {path}: no column {missing[0]!r} "
                             f"(has {', '.join(map(str, table.columns))})")
        table = table.rename(columns={theirs: ours for ours, theirs in column_map.items()})
    return table


def check_columns(table: pd.DataFrame, kind: kinds.Kind, source: str) -> pd.DataFrame:
    missing = [c for c in kind.columns if c not in table.columns]
    if missing:
        raise FitError(f"{source}: a {kind.name} fit needs columns {', '.join(kind.columns)}; "
                       f"missing {', '.join(missing)} (map yours with --column "
                       f"{missing[0]}=NAME)")
    used = [c for c in (*kind.columns, *kind.optional_columns) if c in table.columns]
    data = table[used].copy()
    for column in used:
        values = pd.to_numeric(data[column], errors="coerce")
        if values.isna().any():
            bad = data[column][values.isna()].iloc[0]
            raise FitError(f"{source}: column {column} holds a non-numeric or missing value "
                           f"({bad!r})")
        if not np.all(np.isfinite(values)):
            raise FitError(f"{source}: column {column} holds an infinite value")
        data[column] = values.astype(float)
    if data.empty:
        raise FitError(f"{source}: the table is empty")
    return data


# A sweep table of 10 million rows is about 1 GB of Parquet; past 4 GB a table is refused.
MAX_TABLE_BYTES = 4 * 1024**3

# Fitter keyword -> the template parameter that holds it: the bias a cell sweep ran at (the
# mid-rail the stored voltage is centred on, and the read word line's on-level).
OPERATING_POINT = {"v_mid_V": "v_mid", "read_on_V": "v_in"}


def operating_point(table_path: str | Path) -> dict[str, float]:
    """The operating point a gcsim sweep ran at, from its sidecar's parameters (the template's
    defaults with the spec's and the design's settings, swept ones left out) and, for a level
    the table sweeps, its design's; {} for a table gcsim did not make."""
    sidecar = Path(table_path).with_suffix(".json")
    try:
        record = json.loads(sidecar.read_text())
        parameters = record.get("parameters") or {}
        designed = record.get("design_operating_point") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    point = {}
    for keyword, name in OPERATING_POINT.items():
        # A parameter the sweep held fixed, else (when the table sweeps it) the design's.
        for where, value in ((f"parameters.{name}", parameters.get(name)),
                             (f"design_operating_point.{keyword}", designed.get(keyword))):
            if value is None:
                continue
            try:
                point[keyword] = parse_number(value, f"{sidecar}: {where}")
                break
            except ParameterError:
                continue
    return point


def fit_table(kind_name: str, table_path: str | Path, column_map: dict[str, str] | None = None,
              **options) -> tuple[schema.FitRecord, pd.DataFrame]:
    """Fit KIND to a table. Options the fitter needs for the operating point (v_mid_V,
    read_on_V) and that are not given come from the sweep's sidecar."""
    kind = kinds.get(kind_name)
    table = check_columns(read_table(table_path, column_map), kind, str(table_path))
    accepted = inspect.signature(kind.fitter).parameters
    needed = [name for name in OPERATING_POINT if name in accepted and name not in options]
    if needed:
        point = operating_point(table_path)
        missing = [name for name in needed if name not in point]
        if missing:
            raise FitError(f"{table_path}: a {kind_name} fit needs the operating point "
                           f"({', '.join(missing)}), and the table has no gcsim sweep sidecar "
                           "that gives it")
        options.update({name: point[name] for name in needed})
    try:
        record = kind.fitter(table, **options)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError, KeyError) as exc:
        if isinstance(exc, GcsimError):
            raise
        # Data the fitter's own checks let through (degenerate, a single group, ...).
        raise FitError(f"{table_path}: the {kind_name} fit failed: {exc}") from None
    record.provenance = schema.provenance_from_table(Path(table_path), column_map)
    if options:
        record.provenance["options"] = {k: v for k, v in options.items()
                                        if not isinstance(v, pd.DataFrame)}
    return record, table


def write_fit(record: schema.FitRecord, table: pd.DataFrame, output: Path,
              plot: Path | None = None) -> tuple[Path, Path]:
    """The JSON and its PNG (beside it unless `plot` says where), written together or not at
    all: a plot that fails leaves neither a new JSON nor a temporary behind."""
    output = Path(output)
    plot = Path(plot) if plot else output.with_suffix(".png")
    with replacing_all(output, plot, what="fit output") as (json_temporary, plot_temporary):
        schema.save(record, json_temporary)
        plot_fit(record, table, Path(plot_temporary))
    return output, plot
