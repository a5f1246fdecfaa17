"""Declarative characterisation specs (TOML): schema, validation and the grid they describe.

Every key carries a description, so a malformed spec gets an error that names the key and
says what was expected, and the reference in the README comes from the same table.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gcsim.core import resources
from gcsim.core.errors import ParameterError, SpecError
from gcsim.spice.process import OPTIONAL_ROLES, ROLES
from gcsim.core.values import check_name, parse_number, shown

TOP_KEYS = {
    "description": "What the characterisation measures (free text).",
    "netlist": "Template file, relative to the spec's folder or to netlists/.",
    "models": "Device models: 'builtin' (default), 'builtin:CORNER', 'sky130:CORNER' (tt, ff, "
              "ss, sf, fs) or 'path/to/lib.spice:SECTION' (with lib.roles.toml beside it).",
    "corners": "List of corners, e.g. ['tt', 'ss', 'ff']: the sweep runs at each (models then "
               "names no corner); rows carry a corner column.",
    "temperatures": "List of temperatures, degrees C: sets the template's temp_c parameter "
                    "(its .options temp={temp_c}); rows carry a temperature_C column.",
    "montecarlo": "Table: Monte Carlo mismatch (runs, seed, devices); rows carry mc_run.",
    "analysis": "Table: the ngspice analysis (type = dc | op | tran, and its settings).",
    "parameters": "Table: fixed template parameters, NAME = number or SPICE string ('15n').",
    "axes": "Array of tables: the swept parameters; the grid is their cartesian product.",
    "measure": "Array of tables: what to record at each point, one column each.",
}
ANALYSIS_KEYS = {
    "type": "dc (nested .dc over source-bound axes), op, or tran.",
    "step": "tran: print step, seconds.",
    "stop": "tran: stop time, seconds.",
    "max_step": "tran: largest internal time step, seconds (optional).",
    "batch": "Largest number of points in one ngspice run (default 200).",
    "timeout_s": "Time limit of one ngspice run, seconds (default 600).",
}
AXIS_KEYS = {
    "param": "Template parameter swept by this axis.",
    "column": "Table column for it, with its unit (e.g. stored_voltage_V).",
    "values": "Explicit list of values (alternative to start/stop/num).",
    "start": "First value.",
    "stop": "Last value (included).",
    "num": "Number of values, at least 1.",
    "scale": "lin (default) or log spacing between start and stop.",
    "dc_source": "dc: the voltage source whose value is {param}; swept by a nested .dc.",
}
MEASURE_KEYS = {
    "column": "Table column, with its unit (e.g. i_out_A).",
    "vector": "v(NODE) or i(VSOURCE) of the testbench.",
    "scale": "Factor applied to the vector (default 1), e.g. 1e-12 for a 1 pF integrator.",
    "at": "tran: 'end' (default) or a time in seconds at which to read the vector.",
    "sample": "tran: a table {start, stop, num}; records the waveform at these times, one row "
              "per time, with a time_s column.",
}
MONTECARLO_KEYS = {
    "runs": "Number of Monte Carlo runs, at least 1; each is one sample of the circuit.",
    "seed": "Integer seed, >= 0: the same seed gives bit-identical tables.",
    "devices": "Table of tables, one per device: [montecarlo.devices.NAME] with role, dvth, "
               "w, l. Needed for Pelgrom mismatch (builtin, or libraries with a_vt_mV_um).",
}
DEVICE_KEYS = {
    "role": "Device role: read_nmos, read_pmos, write_nmos, core_nmos or core_pmos.",
    "dvth": "Template parameter that shifts this device's threshold (volts).",
    "w": "Template parameter holding this device's width (metres).",
    "l": "Template parameter holding this device's length (metres).",
}
_COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")     # matched whole (fullmatch)
# One axis may hold at most this many values: its values are built when the spec loads.
MAX_AXIS_VALUES = 1_000_000
# Coldest temperature a spec may ask for, degrees C (absolute zero).
ABSOLUTE_ZERO_C = -273.15
# A sweep of more points than this could take hours (about 5 min per 100,000 transient points
# on builtin models and 2 cores, hours on a PDK): `gcsim sweep` asks for --yes.
LARGE_SWEEP_POINTS = 1_000_000
# More points than this is refused outright: the grid and its netlists are built in memory
# (measured: 0.55 kB a point for the grid alone).
MAX_SWEEP_POINTS = 10_000_000


def _where(spec_name: str, key: str) -> str:
    return f"{spec_name}: {key}"


def _check_keys(table: Any, allowed: dict[str, str], where: str) -> dict:
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a table")
    for key in table:
        if key not in allowed:
            label = key if re.fullmatch(r"[A-Za-z0-9_]{1,100}", key) else shown(key)
            here = f"{where}.{label}" if ": " in where else f"{where}: {label}"
            raise SpecError(f"{here}: unknown key (allowed: {', '.join(allowed)})")
    return table


def _number(value: Any, where: str) -> float:
    try:
        return parse_number(value, where)
    except ParameterError as exc:
        raise SpecError(str(exc)) from None


def _count(value: Any, where: str, largest: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}: expected an integer >= 1, got {shown(value)}")
    if largest is not None and value > largest:
        raise SpecError(f"{where}: {value} is more than the {largest:,} values one axis "
                        "may have")
    return value


@dataclass(frozen=True)
class Axis:
    param: str
    column: str
    values: tuple[float, ...]
    dc_source: str | None = None
    linear: bool = False     # evenly spaced start..stop, so a .dc can sweep it exactly


@dataclass(frozen=True)
class Measure:
    column: str
    vector: str
    scale: float = 1.0
    at: float | None = None          # None: end of transient (or the point itself for dc/op)
    sample: tuple[float, ...] | None = None


@dataclass(frozen=True)
class MonteCarloDevice:
    name: str
    role: str
    dvth: str
    w: str
    l: str


@dataclass(frozen=True)
class MonteCarlo:
    runs: int
    seed: int
    devices: tuple[MonteCarloDevice, ...] = ()


@dataclass
class Spec:
    name: str
    path: Path | None
    netlist: Path
    models: str
    analysis: str
    tran_step: float | None
    tran_stop: float | None
    tran_max_step: float | None
    batch: int
    timeout_s: float
    parameters: dict[str, float]
    axes: list[Axis]
    measures: list[Measure]
    description: str = ""
    raw: dict = field(default_factory=dict)
    corners: tuple[str, ...] | None = None
    temperatures: tuple[float, ...] | None = None
    montecarlo: MonteCarlo | None = None
    base: Path | None = None     # the spec's folder: relative paths start here

    @property
    def n_points(self) -> int:
        return math.prod(len(axis.values) for axis in self.axes)

    def total_points(self, models: str | None = None) -> int:
        """Points the sweep will run: the axes' grid at every temperature, Monte Carlo run
        and corner (corners apply unless ``models`` names one). Counted, never built."""
        chosen = models or self.models
        corners = len(self.corners) if self.corners and ":" not in chosen else 1
        return (self.n_points * len(self.temperatures or (None,)) * corners
                * (self.montecarlo.runs if self.montecarlo else 1))

    def grid(self) -> list[dict[str, float]]:
        """All points, as {param: value}; the last axis varies fastest."""
        names = [axis.param for axis in self.axes]
        return [dict(zip(names, combo))
                for combo in itertools.product(*(axis.values for axis in self.axes))]


def check_size(spec: Spec, models: str | None = None, confirmed: bool = False) -> int:
    """The sweep's point count; raise SpecError if it is too large to build, or so large
    that it could take hours and the user has not confirmed it (--yes)."""
    points = spec.total_points(models)
    if points > MAX_SWEEP_POINTS:
        raise SpecError(f"{spec.name}: {points:,} points is more than one sweep may have "
                        f"({MAX_SWEEP_POINTS:,}): split it into several specs")
    if points > LARGE_SWEEP_POINTS and not confirmed:
        raise SpecError(f"{spec.name}: {points:,} points (more than {LARGE_SWEEP_POINTS:,}) "
                        "could take hours; add --yes to run it anyway")
    return points


def load(path: str | Path) -> Spec:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise SpecError(f"spec {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"spec {path.name}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SpecError(f"spec {path}: {exc.strerror}") from None
    return from_dict(raw, name=path.name, base=path.resolve().parent, path=path.resolve())


def _resolve_netlist(value: Any, base: Path | None, name: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{name}: netlist: expected a file name")
    candidates = [Path(value)] if Path(value).is_absolute() else (
        ([base / value] if base else []) + [resources.NETLISTS / value])
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise SpecError(f"{name}: netlist: {value!r} not found (looked in "
                    f"{', '.join(str(c.parent) for c in candidates)})")


def _axis(raw: Any, where: str, analysis: str) -> Axis:
    table = _check_keys(raw, AXIS_KEYS, where)
    for key in ("param", "column"):
        if key not in table:
            raise SpecError(f"{where}.{key}: required")
    try:
        param = check_name(table["param"], f"{where}.param").lower()
    except ParameterError as exc:
        raise SpecError(str(exc)) from None
    column = table["column"]
    if not isinstance(column, str) or not _COLUMN.fullmatch(column):
        raise SpecError(f"{where}.column: expected an identifier such as stored_voltage_V")
    linear = False
    if "values" in table:
        if any(key in table for key in ("start", "stop", "num", "scale")):
            raise SpecError(f"{where}: give either values or start/stop/num, not both")
        values_raw = table["values"]
        if not isinstance(values_raw, list) or not values_raw:
            raise SpecError(f"{where}.values: expected a non-empty list")
        _count(len(values_raw), f"{where}.values", MAX_AXIS_VALUES)
        values = tuple(_number(v, f"{where}.values[{i}]") for i, v in enumerate(values_raw))
    else:
        for key in ("start", "stop", "num"):
            if key not in table:
                raise SpecError(f"{where}.{key}: required (or give values = [...])")
        start = _number(table["start"], f"{where}.start")
        stop = _number(table["stop"], f"{where}.stop")
        num = _count(table["num"], f"{where}.num", MAX_AXIS_VALUES)
        if num > 1 and start == stop:
            raise SpecError(f"{where}: start = stop = {start:g} with num = {num}: the range is "
                            "empty (give num = 1 for one value)")
        scale = table.get("scale", "lin")
        if scale == "lin":
            values = tuple(float(v) for v in np.linspace(start, stop, num))
            linear = num > 1 and stop != start
        elif scale == "log":
            if start <= 0 or stop <= 0:
                raise SpecError(f"{where}: log scale needs start and stop > 0")
            values = tuple(float(v) for v in np.geomspace(start, stop, num))
        else:
            raise SpecError(f"{where}.scale: expected 'lin' or 'log', got {scale!r}")
    if len(set(values)) != len(values):
        raise SpecError(f"{where}: values repeat")
    source = table.get("dc_source")
    if source is not None:
        if analysis != "dc":
            raise SpecError(f"{where}.dc_source: only for analysis.type = 'dc'")
        try:
            source = check_name(source, f"{where}.dc_source")
        except ParameterError as exc:
            raise SpecError(str(exc)) from None
    return Axis(param, column, values, source, linear)


def _measure(raw: Any, where: str, analysis: str) -> Measure:
    from gcsim.spice.template import parse_vector

    table = _check_keys(raw, MEASURE_KEYS, where)
    for key in ("column", "vector"):
        if key not in table:
            raise SpecError(f"{where}.{key}: required")
    column = table["column"]
    if not isinstance(column, str) or not _COLUMN.fullmatch(column):
        raise SpecError(f"{where}.column: expected an identifier such as i_out_A")
    vector = table["vector"]
    if not isinstance(vector, str):
        raise SpecError(f"{where}.vector: expected a string such as 'i(VBL)'")
    parse_vector(vector)
    scale = _number(table.get("scale", 1), f"{where}.scale")
    at = None
    sample = None
    if analysis != "tran" and ("at" in table or "sample" in table):
        raise SpecError(f"{where}: 'at' and 'sample' are for analysis.type = 'tran'")
    if "at" in table and table["at"] != "end":
        at = _number(table["at"], f"{where}.at")
    if "sample" in table:
        if "at" in table:
            raise SpecError(f"{where}: give 'at' or 'sample', not both")
        sample_table = _check_keys(table["sample"], {"start": "", "stop": "", "num": ""},
                                   f"{where}.sample")
        try:
            start = _number(sample_table["start"], f"{where}.sample.start")
            stop = _number(sample_table["stop"], f"{where}.sample.stop")
            num = _count(sample_table["num"], f"{where}.sample.num", MAX_AXIS_VALUES)
        except KeyError as exc:
            raise SpecError(f"{where}.sample.{exc.args[0]}: required") from None
        sample = tuple(float(t) for t in np.linspace(start, stop, num))
    return Measure(column, vector, scale, at, sample)


def _name(value: Any, where: str) -> str:
    try:
        return check_name(value, where).lower()
    except ParameterError as exc:
        raise SpecError(str(exc)) from None


def _montecarlo(raw: Any, where: str) -> MonteCarlo:
    table = _check_keys(raw, MONTECARLO_KEYS, where)
    for key in ("runs", "seed"):
        if key not in table:
            raise SpecError(f"{where}.{key}: required")
    runs = _count(table["runs"], f"{where}.runs")
    seed = table["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"{where}.seed: expected an integer >= 0, got {seed!r}")
    devices_raw = table.get("devices", {})
    if not isinstance(devices_raw, dict):
        raise SpecError(f"{where}.devices: expected tables [montecarlo.devices.NAME]")
    devices = []
    for name, entry in devices_raw.items():
        here = f"{where}.devices.{name}"
        _name(name, here)
        device = _check_keys(entry, DEVICE_KEYS, here)
        for key in DEVICE_KEYS:
            if key not in device:
                raise SpecError(f"{here}.{key}: required")
        if device["role"] not in ROLES + OPTIONAL_ROLES:
            raise SpecError(f"{here}.role: {device['role']!r} is not a device role "
                            f"({', '.join(ROLES + OPTIONAL_ROLES)})")
        devices.append(MonteCarloDevice(name.lower(), device["role"],
                                        _name(device["dvth"], f"{here}.dvth"),
                                        _name(device["w"], f"{here}.w"),
                                        _name(device["l"], f"{here}.l")))
    dvths = [d.dvth for d in devices]
    if len(set(dvths)) != len(dvths):
        raise SpecError(f"{where}.devices: two devices share one dvth parameter")
    return MonteCarlo(runs, seed, tuple(devices))


def _corners(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: expected a non-empty list such as ['tt', 'ss']")
    corners = []
    for i, corner in enumerate(value):
        if not isinstance(corner, str) or not re.fullmatch(r"[A-Za-z0-9_]+", corner):
            raise SpecError(f"{where}[{i}]: {shown(corner)} is not a corner name")
        corners.append(corner)
    if len(set(corners)) != len(corners):
        raise SpecError(f"{where}: corners repeat")
    return tuple(corners)


def from_dict(raw: dict, name: str = "spec", base: Path | None = None,
              path: Path | None = None) -> Spec:
    _check_keys(raw, TOP_KEYS, name)
    if "netlist" not in raw:
        raise SpecError(f"{name}: netlist: required")
    netlist = _resolve_netlist(raw["netlist"], base, name)
    models = raw.get("models", "builtin")
    if not isinstance(models, str):
        raise SpecError(f"{name}: models: expected a string such as 'builtin'")
    analysis_table = _check_keys(raw.get("analysis", {}), ANALYSIS_KEYS, f"{name}: analysis")
    analysis = analysis_table.get("type")
    if analysis not in ("dc", "op", "tran"):
        raise SpecError(f"{name}: analysis.type: expected 'dc', 'op' or 'tran', got {analysis!r}")
    step = stop = max_step = None
    if analysis == "tran":
        for key in ("step", "stop"):
            if key not in analysis_table:
                raise SpecError(f"{name}: analysis.{key}: required for a transient")
        step = _number(analysis_table["step"], f"{name}: analysis.step")
        stop = _number(analysis_table["stop"], f"{name}: analysis.stop")
        if not 0 < step <= stop:
            raise SpecError(f"{name}: analysis: need 0 < step <= stop")
        if "max_step" in analysis_table:
            max_step = _number(analysis_table["max_step"], f"{name}: analysis.max_step")
            if max_step <= 0:
                raise SpecError(f"{name}: analysis.max_step: must be > 0")
    batch = _count(analysis_table.get("batch", 200), f"{name}: analysis.batch")
    timeout = _number(analysis_table.get("timeout_s", 600), f"{name}: analysis.timeout_s")
    if timeout <= 0:
        raise SpecError(f"{name}: analysis.timeout_s: must be > 0")

    parameters_raw = raw.get("parameters", {})
    if not isinstance(parameters_raw, dict):
        raise SpecError(f"{name}: parameters: expected a table")
    parameters = {}
    for key, value in parameters_raw.items():
        try:
            parameters[check_name(key, f"{name}: parameters").lower()] = \
                parse_number(value, f"{name}: parameters.{key}")
        except ParameterError as exc:
            raise SpecError(str(exc)) from None

    axes_raw = raw.get("axes", [])
    if not isinstance(axes_raw, list):
        raise SpecError(f"{name}: axes: expected an array of tables ([[axes]])")
    axes = [_axis(entry, f"{name}: axes[{i}]", analysis) for i, entry in enumerate(axes_raw)]
    measures_raw = raw.get("measure", [])
    if not isinstance(measures_raw, list) or not measures_raw:
        raise SpecError(f"{name}: measure: at least one [[measure]] table is required")
    measures = [_measure(entry, f"{name}: measure[{i}]", analysis)
                for i, entry in enumerate(measures_raw)]
    for i, m in enumerate(measures):
        times = ([m.at] if m.at is not None else []) + list(m.sample or ())
        if times and not 0 <= min(times) <= max(times) <= stop:
            raise SpecError(f"{name}: measure[{i}]: times must lie in the transient, 0 to "
                            f"analysis.stop = {stop:g} s")

    columns = [axis.column for axis in axes] + [m.column for m in measures]
    if any(m.sample for m in measures):
        columns.append("time_s")
        if len({m.sample for m in measures}) != 1 or not all(m.sample for m in measures):
            raise SpecError(f"{name}: measure: all measurements must share one 'sample' grid")
    duplicates = {c for c in columns if columns.count(c) > 1}
    if duplicates:
        raise SpecError(f"{name}: column names repeat: {sorted(duplicates)}")
    params = [axis.param for axis in axes]
    if len(set(params)) != len(params):
        raise SpecError(f"{name}: axes: a parameter is swept twice")
    clash = set(params) & set(parameters)
    if clash:
        raise SpecError(f"{name}: {sorted(clash)} both fixed in [parameters] and swept")
    dc_axes = [axis for axis in axes if axis.dc_source]
    if len(dc_axes) > 2:
        raise SpecError(f"{name}: axes: ngspice nests at most two .dc sources")
    corners = _corners(raw["corners"], f"{name}: corners") if "corners" in raw else None
    if corners and ":" in models:
        raise SpecError(f"{name}: corners: models {models!r} names a corner already; give "
                        "models without one (e.g. 'sky130')")
    temperatures = None
    if "temperatures" in raw:
        values = raw["temperatures"]
        if not isinstance(values, list) or not values:
            raise SpecError(f"{name}: temperatures: expected a non-empty list, e.g. [27, 85]")
        temperatures = tuple(_number(v, f"{name}: temperatures[{i}]")
                             for i, v in enumerate(values))
        if len(set(temperatures)) != len(temperatures):
            raise SpecError(f"{name}: temperatures: values repeat")
        if min(temperatures) < ABSOLUTE_ZERO_C:
            raise SpecError(f"{name}: temperatures: {min(temperatures):g} °C is below absolute "
                            "zero")
        if "temp_c" in params or "temp_c" in parameters:
            raise SpecError(f"{name}: temperatures: temp_c is also fixed or swept")
    montecarlo = _montecarlo(raw["montecarlo"], f"{name}: montecarlo") \
        if "montecarlo" in raw else None
    if montecarlo:
        taken = set(params) | set(parameters)
        clash = sorted({d.dvth for d in montecarlo.devices} & taken)
        if clash:
            raise SpecError(f"{name}: montecarlo: {clash} also fixed or swept")
    reserved = ({"corner"} if corners else set()) | (
        {"temperature_C"} if temperatures else set()) | (
        {"mc_run"} | {f"dvth_{d.name}_V" for d in montecarlo.devices} if montecarlo else set())
    taken_columns = sorted(reserved & set(columns))
    if taken_columns:
        raise SpecError(f"{name}: columns {taken_columns} are gcsim's own")
    description = raw.get("description", "")
    return Spec(name, path, netlist, models, analysis, step, stop, max_step, batch, timeout,
                parameters, axes, measures, str(description), raw, corners, temperatures,
                montecarlo, base)
