"""The fit file: one JSON per fitted model, with schema version, kind, parameters with units,
valid input ranges, metrics and provenance. Reading one validates it; writing is atomic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gcsim import __version__
from gcsim.core import resources
from gcsim.core.errors import GcsimError

SCHEMA_VERSION = 1
FORMAT_TAG = "gcsim-fit"

# What each kind's file must hold.
REQUIRED_PARAMETERS: dict[str, tuple[str, ...]] = {
    "nonlinearity": ("coefficients", "exponents", "order", "v_mid", "read_on_level"),
    "charge_per_pulse": ("current_coefficients", "edge_charge_coefficients", "edge_time",
                         "coefficients", "order", "v_mid", "read_on_level"),
    "decay": ("time_constant", "asymptote", "law_time_constant", "law_asymptote",
              "law_voltage_scale", "nominal_temperature"),
    "sense_amp": ("gain", "offset", "linear_range_low", "linear_range_high", "saturation_low",
                  "saturation_high", "saturation_charge_low", "saturation_charge_high"),
    "charge_to_pulse": ("slope", "offset", "t_max", "saturation_charge"),
    "signed_converter": ("full_scale", "slope", "t_max", "levels"),
    "mismatch": ("current_sigma_rel", "stored_voltage_shift_sigma"),
    "write": ("write_time", "tolerance"),
    "cell_conductance": ("on_coefficients", "off_coefficients", "v_mid"),
    "readout_loading": ("offset", "charge_coefficient", "current_coefficient", "k_window",
                        "k_pulse_start", "v_window", "v_pulse_start"),
}


class FitFileError(GcsimError):
    """A fit file is missing, corrupt, foreign, or from a newer gcsim."""


class RangeError(GcsimError):
    """A model was evaluated outside the input range its fit is valid for."""


@dataclass
class FitRecord:
    """A fitted model as stored: `parameters` maps name -> {"value": ..., "unit": ...}."""

    kind: str
    parameters: dict
    valid_range: dict[str, list[float]]
    metrics: dict
    provenance: dict
    description: str = ""
    extra: dict = field(default_factory=dict)   # tables and per-curve detail, free form

    def value(self, name: str):
        return self.parameters[name]["value"]

    def to_json(self) -> dict:
        return {
            "format": FORMAT_TAG,
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "description": self.description,
            "parameters": self.parameters,
            "valid_range": self.valid_range,
            "metrics": self.metrics,
            "provenance": self.provenance,
            "detail": self.extra,
        }


def param(value, unit: str, note: str | None = None) -> dict:
    entry = {"value": _plain(value), "unit": unit}
    if note:
        entry["note"] = note
    return entry


def _plain(value):
    """numpy scalars/arrays -> JSON-native floats and lists."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def save(record: FitRecord, path: str | Path) -> Path:
    """Write atomically: a failure leaves any previous file intact."""
    path = Path(path)
    text = json.dumps(_plain(record.to_json()), indent=2, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise FitFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load(path: str | Path, kind: str | None = None) -> FitRecord:
    """Read and validate a fit file; raises FitFileError with a one-line reason."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FitFileError(f"fit file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FitFileError(f"fit file {path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise FitFileError(f"fit file {path}: not valid JSON ({exc.msg} at line {exc.lineno})"
                           ) from None
    where = f"fit file {path}"
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_TAG:
        raise FitFileError(f"{where}: not a gcsim fit file (no \"format\": \"{FORMAT_TAG}\")")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FitFileError(f"{where}: bad schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise FitFileError(f"{where}: schema version {version} is newer than this gcsim "
                           f"understands ({SCHEMA_VERSION}); upgrade gcsim")
    found_kind = raw.get("kind")
    if found_kind not in REQUIRED_PARAMETERS:
        raise FitFileError(f"{where}: unknown kind {found_kind!r} "
                           f"(known: {', '.join(REQUIRED_PARAMETERS)})")
    if kind is not None and found_kind != kind:
        raise FitFileError(f"{where}: holds a {found_kind!r} model, expected {kind!r}")
    for key, expected in (("parameters", dict), ("valid_range", dict), ("metrics", dict),
                          ("provenance", dict)):
        if not isinstance(raw.get(key), expected):
            raise FitFileError(f"{where}: missing or malformed {key!r}")
    parameters = raw["parameters"]
    for name in REQUIRED_PARAMETERS[found_kind]:
        entry = parameters.get(name)
        if not isinstance(entry, dict) or "value" not in entry or "unit" not in entry:
            raise FitFileError(f"{where}: parameter {name!r} missing (or without value/unit)")
        if not _finite(entry["value"]):
            raise FitFileError(f"{where}: parameter {name!r} is not a finite number or list")
    for name, bounds in raw["valid_range"].items():
        if (not isinstance(bounds, list) or len(bounds) != 2 or not _finite(bounds)
                or bounds[0] > bounds[1]):
            raise FitFileError(f"{where}: valid_range {name!r} must be [low, high]")
    return FitRecord(kind=found_kind, parameters=parameters, valid_range=raw["valid_range"],
                     metrics=raw["metrics"], provenance=raw["provenance"],
                     description=str(raw.get("description", "")),
                     extra=raw.get("detail") or {})


def _finite(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, list):
        return bool(value) and all(_finite(v) for v in value)
    return False


def check_range(name: str, values, bounds, clamp: bool, tolerance: float = 1e-9):
    """Return `values` (clamped when asked); raise RangeError when outside and not clamping."""
    values = np.asarray(values, dtype=np.float64)
    low, high = bounds
    if clamp:
        return np.clip(values, low, high)
    slack = tolerance * max(1.0, abs(low), abs(high))
    if values.size and (np.nanmin(values) < low - slack or np.nanmax(values) > high + slack):
        raise RangeError(f"{name} spans [{np.nanmin(values):.4g}, {np.nanmax(values):.4g}], "
                         f"outside the fit's valid range [{low:.4g}, {high:.4g}] "
                         "(pass clamp=True to clamp explicitly)")
    return values


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def relative(path: str | Path) -> str:
    """Repo-relative path when inside the repo, so committed fits do not name a checkout."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(resources.ROOT))
    except ValueError:
        return str(path)


def provenance_from_table(table_path: Path, column_map: dict[str, str] | None = None) -> dict:
    """Provenance of a fit: the table's hash, and when gcsim made it, its sweep sidecar."""
    table_path = Path(table_path)
    out = {
        "source_table": relative(table_path),
        "source_sha256": file_sha256(table_path),
        "gcsim_version": __version__,
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    sidecar = table_path.with_suffix(".json")
    meta = None
    if sidecar.is_file() and not column_map:
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            meta = None
    if isinstance(meta, dict) and "spec_name" in meta:
        out.update({
            "origin": "gcsim sweep",
            "spec": meta.get("spec_name"),
            "spec_path": relative(meta["spec_path"]) if meta.get("spec_path") else None,
            "models": meta.get("models"),
            "netlist": relative(meta["netlist"]) if meta.get("netlist") else None,
            "netlist_sha256": meta.get("netlist_sha256"),
            "model_files_sha256": {relative(k): v for k, v in
                                   (meta.get("model_files_sha256") or {}).items()},
            "ngspice_version": meta.get("ngspice_version"),
            "sweep_gcsim_version": meta.get("gcsim_version"),
            "sweep_date": meta.get("date"),
            "overrides": meta.get("overrides") or {},
        })
    else:
        out["origin"] = "external table"
        if column_map:
            out["column_map"] = dict(column_map)
    return out
