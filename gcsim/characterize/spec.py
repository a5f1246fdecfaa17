"""Declarative characterisation specs (TOML): schema, validation and the grid they describe.

The file format is declared as pydantic models (``SpecFile`` and the tables inside it,
``SPEC_SCHEMA`` for the docs and the JSON Schema): every key carries a description, so a
malformed spec gets one line that names the file and the key, and the reference comes from
the same declarations. ``from_dict`` turns the validated model into the ``Spec`` dataclass
the rest of gcsim uses.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import (BeforeValidator, Field, PrivateAttr, WithJsonSchema, field_validator,
                      model_validator)

from gcsim.core import resources
from gcsim.core.design import Design, default_design, process_of
from gcsim.core.errors import GcsimError, ParameterError, SpecError
from gcsim.core.files import read_text
from gcsim.core.tables import FileTable, TableError, validated
from gcsim.spice.process import OPTIONAL_ROLES, ROLES
from gcsim.core.terms import evaluate, is_expression
from gcsim.core.values import MAX_NAME, check_name, parse_number, shown

_COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")     # matched whole (fullmatch)
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"           # what check_name accepts
_CORNER = re.compile(r"[A-Za-z0-9_]+")             # matched whole (fullmatch)
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
# Longest time limit of one ngspice run, s (a week).
MAX_TIMEOUT_S = 604_800

# ------------------------------------------------------------------------- value types
# Each check raises ValueError with the reason only: the schema error adds file and key.
_HERE = "<value>"


def _bare(exc: ParameterError) -> str:
    """A ParameterError's reason without the location it was raised for."""
    return str(exc).removeprefix(f"{_HERE}: ")


def _spice_number(value: Any) -> Any:
    try:
        return parse_number(value, _HERE)
    except ParameterError as exc:
        raise ValueError(_bare(exc)) from None


def _identifier(value: Any) -> Any:
    try:
        return check_name(value, _HERE)
    except ParameterError as exc:
        raise ValueError(_bare(exc)) from None


def _count(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected an integer >= 1, got {shown(value)}")
    return value


def _axis_count(value: Any) -> Any:
    if _count(value) > MAX_AXIS_VALUES:
        raise ValueError(f"{value} is more than the {MAX_AXIS_VALUES:,} values one axis "
                         "may have")
    return value


def _time_or_end(value: Any) -> Any:
    return value if value == "end" else _spice_number(value)


def _corner(value: Any) -> Any:
    if not isinstance(value, str) or not _CORNER.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a corner name")
    return value


_NUMBER_OR_TEXT = {"anyOf": [{"type": "number"},
                             {"type": "string", "description": "a number with an optional "
                                                               "SPICE suffix, e.g. '15n'; in "
                                                               "[parameters], axes and a "
                                                               "measure's 'at' also an "
                                                               "expression of design terms, "
                                                               "e.g. 'v_mid - 0.45'"}]}
# A finite number, written as a TOML number or a SPICE string ('15n', '1.2f', '3meg').
SpiceNumber = Annotated[float, BeforeValidator(_spice_number), WithJsonSchema(_NUMBER_OR_TEXT)]
# A template parameter, source or device name: a plain identifier SPICE cannot misread.
Identifier = Annotated[str, Field(pattern=_IDENTIFIER, max_length=MAX_NAME),
                       BeforeValidator(_identifier)]
Count = Annotated[int, Field(ge=1), BeforeValidator(_count)]
AxisCount = Annotated[int, Field(ge=1, le=MAX_AXIS_VALUES), BeforeValidator(_axis_count)]
Corner = Annotated[str, Field(pattern=f"^{_CORNER.pattern}$"), BeforeValidator(_corner)]
TimeOrEnd = Annotated[float | Literal["end"] | None, BeforeValidator(_time_or_end),
                      WithJsonSchema(_NUMBER_OR_TEXT)]
RoleName = Literal[ROLES + OPTIONAL_ROLES]
_SECONDS = {"unit": "s"}


def _column_check(value: Any, example: str) -> Any:
    if not isinstance(value, str) or not _COLUMN.fullmatch(value):
        raise ValueError(f"expected an identifier such as {example}")
    return value


def _non_empty_list(value: Any, message: str) -> Any:
    if not isinstance(value, list) or not value:
        raise ValueError(message)
    return value


# ------------------------------------------------------------------------- the file format

class AnalysisSection(FileTable):
    """The ngspice analysis run at every point, and how points are batched into runs."""

    required_hints: ClassVar[dict[str, str]] = {"type": "required ('dc', 'op' or 'tran')"}

    type: Literal["dc", "op", "tran"] = Field(
        description="dc (nested .dc over source-bound axes), op, or tran.")
    step: SpiceNumber | None = Field(None, description="tran: print step (required).",
                                     json_schema_extra=_SECONDS)
    stop: SpiceNumber | None = Field(None, description="tran: stop time (required).",
                                     json_schema_extra=_SECONDS)
    max_step: SpiceNumber | None = Field(
        None, description="tran: largest internal time step (optional).",
        json_schema_extra=_SECONDS)
    batch: Count = Field(200, description="Largest number of points in one ngspice run.")
    timeout_s: SpiceNumber = Field(600.0, description="Time limit of one ngspice run, > 0.",
                                   json_schema_extra=_SECONDS)

    @field_validator("timeout_s")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be > 0")
        if value > MAX_TIMEOUT_S:
            # Past this it is a typing error, and past ~1e9 s the worker's timers overflow.
            raise ValueError(f"{value:g} s is more than a week ({MAX_TIMEOUT_S:,} s), the "
                             "longest one ngspice run may take")
        return value

    @model_validator(mode="after")
    def _transient(self) -> AnalysisSection:
        if self.type != "tran":
            return self
        for key in ("step", "stop"):
            if getattr(self, key) is None:
                raise TableError("required for a transient", key)
        if not 0 < self.step <= self.stop:
            raise TableError("need 0 < step <= stop")
        if self.max_step is not None and self.max_step <= 0:
            raise TableError("must be > 0", "max_step")
        return self


class AxisEntry(FileTable):
    """One swept template parameter: its values listed, or start/stop/num spaced. The sweep's
    grid is the cartesian product of all axes."""

    param: Identifier = Field(description="Template parameter swept by this axis.")
    column: str = Field(description="Table column for it, with its unit (e.g. "
                                    "stored_voltage_V).", pattern=f"^{_COLUMN.pattern}$")
    values: list[SpiceNumber] | None = Field(
        None, description="Explicit list of values (alternative to start/stop/num).",
        max_length=MAX_AXIS_VALUES)
    start: SpiceNumber | None = Field(None, description="First value.")
    stop: SpiceNumber | None = Field(None, description="Last value (included).")
    num: AxisCount | None = Field(None, description="Number of values, at least 1.")
    scale: Literal["lin", "log"] = Field("lin", description="lin or log spacing between start "
                                                            "and stop.")
    dc_source: Identifier | None = Field(
        None, description="dc: the voltage source whose value is {param}; swept by a nested "
                          ".dc.")
    _values: tuple[float, ...] = PrivateAttr(())
    _linear: bool = PrivateAttr(False)

    @field_validator("column", mode="before")
    @classmethod
    def _column(cls, value: Any) -> Any:
        return _column_check(value, "stored_voltage_V")

    @field_validator("values", mode="before")
    @classmethod
    def _value_list(cls, value: Any) -> Any:
        _non_empty_list(value, "expected a non-empty list")
        _axis_count(len(value))
        return value

    @model_validator(mode="after")
    def _build_values(self) -> AxisEntry:
        if self.values is not None:
            if self.model_fields_set & {"start", "stop", "num", "scale"}:
                raise TableError("give either values or start/stop/num, not both")
            values, linear = tuple(self.values), False
        else:
            for key in ("start", "stop", "num"):
                if getattr(self, key) is None:
                    raise TableError("required (or give values = [...])", key)
            start, stop, num = self.start, self.stop, self.num
            if num > 1 and start == stop:
                raise TableError(f"start = stop = {start:g} with num = {num}: the range is "
                                 "empty (give num = 1 for one value)")
            if self.scale == "lin":
                values = tuple(float(v) for v in np.linspace(start, stop, num))
                linear = num > 1 and stop != start
            else:
                if start <= 0 or stop <= 0:
                    raise TableError("log scale needs start and stop > 0")
                values, linear = tuple(float(v) for v in np.geomspace(start, stop, num)), False
        if len(set(values)) != len(values):
            raise TableError("values repeat")
        self._values, self._linear = values, linear
        return self

    def to_axis(self) -> Axis:
        return Axis(self.param.lower(), self.column, self._values, self.dc_source,
                    self._linear)


class SampleGrid(FileTable):
    """Times at which a transient measurement is read: num evenly spaced, start to stop."""

    start: SpiceNumber = Field(description="First time.", json_schema_extra=_SECONDS)
    stop: SpiceNumber = Field(description="Last time (included).", json_schema_extra=_SECONDS)
    num: AxisCount = Field(description="Number of times, at least 1.")

    @property
    def times(self) -> tuple[float, ...]:
        return tuple(float(t) for t in np.linspace(self.start, self.stop, self.num))


class MeasureEntry(FileTable):
    """One quantity recorded at every point: a node voltage or a source current, as one
    table column."""

    column: str = Field(description="Table column, with its unit (e.g. i_out_A).",
                        pattern=f"^{_COLUMN.pattern}$")
    vector: str = Field(description="v(NODE) or i(VSOURCE) of the testbench.")
    scale: SpiceNumber = Field(1.0, description="Factor applied to the vector, e.g. 1e-12 for "
                                                "a 1 pF integrator.")
    at: TimeOrEnd = Field(None, description="tran: 'end' (default) or the time at which to "
                                            "read the vector.", json_schema_extra=_SECONDS)
    sample: SampleGrid | None = Field(
        None, description="tran: a table {start, stop, num}; records the waveform at these "
                          "times, one row per time, with a time_s column.")

    @field_validator("column", mode="before")
    @classmethod
    def _column(cls, value: Any) -> Any:
        return _column_check(value, "i_out_A")

    @field_validator("vector", mode="before")
    @classmethod
    def _vector(cls, value: Any) -> Any:
        from gcsim.spice.template import parse_vector

        if not isinstance(value, str):
            raise ValueError("expected a string such as 'i(VBL)'")
        try:
            parse_vector(value)
        except SpecError:
            raise ValueError(f"{shown(value)} is not a measure vector: expected v(NODE) or "
                             "i(VSOURCE)") from None
        return value

    @model_validator(mode="after")
    def _one_time_choice(self) -> MeasureEntry:
        if {"at", "sample"} <= self.model_fields_set:
            raise TableError("give 'at' or 'sample', not both")
        return self

    @property
    def times(self) -> list[float]:
        """Every time this measurement reads, seconds (none: the end of the transient)."""
        at = [self.at] if isinstance(self.at, float) else []
        return at + list(self.sample.times if self.sample else ())

    def to_measure(self) -> Measure:
        return Measure(self.column, self.vector, self.scale,
                       self.at if isinstance(self.at, float) else None,
                       self.sample.times if self.sample else None)


class DeviceEntry(FileTable):
    """A device whose threshold Monte Carlo shifts: its role (for its Pelgrom coefficient)
    and the template parameters that hold its threshold shift and size."""

    role: RoleName = Field(description="Device role: read_nmos, read_pmos, write_nmos, core_nmos "
                                   "or core_pmos.")
    dvth: Identifier = Field(description="Template parameter that shifts this device's "
                                         "threshold (it holds volts).")
    w: Identifier = Field(description="Template parameter holding this device's width (it "
                                      "holds metres).")
    l: Identifier = Field(description="Template parameter holding this device's length (it "
                                      "holds metres).")

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: Any) -> Any:
        if value not in ROLES + OPTIONAL_ROLES:
            raise ValueError(f"{shown(value)} is not a device role "
                             f"({', '.join(ROLES + OPTIONAL_ROLES)})")
        return value


class MonteCarloSection(FileTable):
    """Monte Carlo mismatch: every point runs once per sample of the circuit; rows carry an
    mc_run column and each device's drawn threshold shift."""

    runs: Count = Field(description="Number of Monte Carlo runs, at least 1; each is one "
                                    "sample of the circuit.")
    seed: int = Field(description="Integer seed, >= 0: the same seed gives bit-identical "
                                  "tables.", ge=0)
    devices: dict[str, DeviceEntry] = Field(
        default_factory=dict,
        description="Table of tables, one per device: [montecarlo.devices.NAME] with role, "
                    "dvth, w, l. Needed for Pelgrom mismatch (builtin, or libraries with "
                    "a_vt_mV_um).")

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"expected an integer >= 0, got {shown(value)}")
        return value

    @field_validator("devices", mode="before")
    @classmethod
    def _device_names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected tables [montecarlo.devices.NAME]")
        for name in value:
            try:
                check_name(name, _HERE)
            except ParameterError as exc:
                raise TableError(_bare(exc), name) from None
        return value

    @model_validator(mode="after")
    def _distinct_shifts(self) -> MonteCarloSection:
        dvths = [device.dvth.lower() for device in self.devices.values()]
        if len(set(dvths)) != len(dvths):
            raise TableError("two devices share one dvth parameter", "devices")
        return self

    def to_montecarlo(self) -> MonteCarlo:
        return MonteCarlo(self.runs, self.seed, tuple(
            MonteCarloDevice(name.lower(), d.role, d.dvth.lower(), d.w.lower(), d.l.lower())
            for name, d in self.devices.items()))


class SpecFile(FileTable):
    """A characterisation spec: a netlist template, the analysis, fixed parameters, the swept
    axes and the quantities measured at every point of their grid; optionally over corners,
    temperatures and Monte Carlo runs."""

    required_hints: ClassVar[dict[str, str]] = {
        "analysis": "required ([analysis] with type = 'dc', 'op' or 'tran')",
        "measure": "at least one [[measure]] table is required"}

    description: str = Field("", description="What the characterisation measures (free "
                                             "text).")
    netlist: str = Field(description="Template file, relative to the spec's folder or to "
                                     "netlists/.", min_length=1)
    models: str = Field(
        "builtin", description="Device models: 'builtin' (default), 'builtin:CORNER', "
                               "'sky130:CORNER' (tt, ff, ss, sf, fs) or "
                               "'path/to/lib.spice:SECTION' (with lib.roles.toml beside it).")
    corners: list[Corner] | None = Field(
        None, description="List of corners, e.g. ['tt', 'ss', 'ff']: the sweep runs at each "
                          "(models then names no corner); rows carry a corner column.",
        min_length=1)
    temperatures: list[SpiceNumber] | None = Field(
        None, description="List of temperatures: sets the template's temp_c parameter (its "
                          ".options temp={temp_c}); rows carry a temperature_C column.",
        min_length=1, json_schema_extra={"unit": "°C"})
    montecarlo: MonteCarloSection | None = Field(
        None, description="Table: Monte Carlo mismatch (runs, seed, devices); rows carry "
                          "mc_run.")
    analysis: AnalysisSection = Field(
        description="Table: the ngspice analysis (type = dc | op | tran, and its settings).")
    parameters: dict[str, SpiceNumber] = Field(
        default_factory=dict,
        description="Table: fixed template parameters, NAME = number or SPICE string ('15n').")
    axes: list[AxisEntry] = Field(
        default_factory=list,
        description="Array of tables: the swept parameters; the grid is their cartesian "
                    "product.")
    measure: list[MeasureEntry] = Field(
        description="Array of tables: what to record at each point, one column each.",
        min_length=1)

    @field_validator("netlist", mode="before")
    @classmethod
    def _file_name(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            raise ValueError("expected a file name")
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _selector(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("expected a string such as 'builtin'")
        return value

    @field_validator("corners", mode="before")
    @classmethod
    def _corner_list(cls, value: Any) -> Any:
        return _non_empty_list(value, "expected a non-empty list such as ['tt', 'ss']")

    @field_validator("corners")
    @classmethod
    def _distinct_corners(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("corners repeat")
        return value

    @field_validator("temperatures", mode="before")
    @classmethod
    def _temperature_list(cls, value: Any) -> Any:
        return _non_empty_list(value, "expected a non-empty list, e.g. [27, 85]")

    @field_validator("temperatures")
    @classmethod
    def _physical_temperatures(cls, value: list[float]) -> list[float]:
        if len(set(value)) != len(value):
            raise ValueError("values repeat")
        if min(value) < ABSOLUTE_ZERO_C:
            raise ValueError(f"{min(value):g} °C is below absolute zero")
        return value

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameter_names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected a table")
        for name in value:
            _identifier(name)
        return value

    @field_validator("axes", mode="before")
    @classmethod
    def _axis_list(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("expected an array of tables ([[axes]])")
        return value

    @field_validator("measure", mode="before")
    @classmethod
    def _measure_list(cls, value: Any) -> Any:
        return _non_empty_list(value, "at least one [[measure]] table is required")

    @model_validator(mode="after")
    def _consistent(self) -> SpecFile:
        """The rules that tie tables together (the analysis type, shared names, columns)."""
        kind = self.analysis.type
        for i, axis in enumerate(self.axes):
            if axis.dc_source is not None and kind != "dc":
                raise TableError("only for analysis.type = 'dc'", "axes", i, "dc_source")
        for i, measure in enumerate(self.measure):
            if kind != "tran" and {"at", "sample"} & measure.model_fields_set:
                raise TableError("'at' and 'sample' are for analysis.type = 'tran'",
                                 "measure", i)
            times = measure.times
            if times and not 0 <= min(times) <= max(times) <= self.analysis.stop:
                raise TableError("times must lie in the transient, 0 to analysis.stop = "
                                 f"{self.analysis.stop:g} s", "measure", i)
        columns = [axis.column for axis in self.axes] + [m.column for m in self.measure]
        grids = [m.sample for m in self.measure]
        if any(grids):
            columns.append("time_s")
            if len({g.times if g else None for g in grids}) != 1:
                raise TableError("all measurements must share one 'sample' grid", "measure")
        duplicates = {c for c in columns if columns.count(c) > 1}
        if duplicates:
            raise TableError(f"column names repeat: {sorted(duplicates)}")
        params = [axis.param.lower() for axis in self.axes]
        fixed = {name.lower() for name in self.parameters}
        if len(set(params)) != len(params):
            raise TableError("a parameter is swept twice", "axes")
        clash = set(params) & fixed
        if clash:
            raise TableError(f"{sorted(clash)} both fixed in [parameters] and swept")
        if len([axis for axis in self.axes if axis.dc_source]) > 2:
            raise TableError("ngspice nests at most two .dc sources", "axes")
        if self.corners and ":" in self.models:
            raise TableError(f"models {self.models!r} names a corner already; give models "
                             "without one (e.g. 'sky130')", "corners")
        if self.temperatures and "temp_c" in set(params) | fixed:
            raise TableError("temp_c is also fixed or swept", "temperatures")
        reserved = ({"corner"} if self.corners else set()) | (
            {"temperature_C"} if self.temperatures else set())
        if self.montecarlo:
            devices = self.montecarlo.devices
            clash = sorted({d.dvth.lower() for d in devices.values()} & (set(params) | fixed))
            if clash:
                raise TableError(f"{clash} also fixed or swept", "montecarlo")
            reserved |= {"mc_run"} | {f"dvth_{name.lower()}_V" for name in devices}
        taken = sorted(reserved & set(columns))
        if taken:
            raise TableError(f"columns {taken} are gcsim's own")
        return self


SPEC_SCHEMA = SpecFile


def _key_descriptions(model: type[FileTable]) -> dict[str, str]:
    return {name: info.description or "" for name, info in model.model_fields.items()}


# Key -> description of each table (docs/guide/specs.md lists the same keys).
TOP_KEYS = _key_descriptions(SpecFile)
ANALYSIS_KEYS = _key_descriptions(AnalysisSection)
AXIS_KEYS = _key_descriptions(AxisEntry)
MEASURE_KEYS = _key_descriptions(MeasureEntry)
MONTECARLO_KEYS = _key_descriptions(MonteCarloSection)
DEVICE_KEYS = _key_descriptions(DeviceEntry)


# ------------------------------------------------------------------------- the validated spec

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
    # The design whose values the spec's design-term expressions took (None: no expression,
    # or the spec's process's default design).
    design_name: str | None = None

    @property
    def uses_design_terms(self) -> bool:
        return bool(_expressions(self.raw))

    def for_design(self, design: Design | None) -> Spec:
        """This spec with its design-term values taken from ``design``."""
        if not self.uses_design_terms:
            return self
        return from_dict(self.raw, self.name, self.base, self.path, design)

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


def load(path: str | Path, design: Design | None = None) -> Spec:
    """Read and check a spec. Values written in design terms (``stop = "vdd"``) take
    ``design``'s values; without one, those of the spec's process's default design
    (``Spec.for_design`` resolves them again for another design)."""
    path = Path(path)
    try:
        # A spec that lists a million values is about 10 MB of TOML; 64 MB is the limit.
        raw = tomllib.loads(read_text(path, "spec", 64 * 1024 * 1024))
    except GcsimError as exc:   # missing, not a regular file (/dev/zero, a FIFO), too large
        raise SpecError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"spec {path.name}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SpecError(f"spec {path}: {exc.strerror}") from None
    return from_dict(raw, name=path.name, base=path.resolve().parent, path=path.resolve(),
                     design=design)


def _resolve_netlist(value: str, base: Path | None, name: str) -> Path:
    candidates = [Path(value)] if Path(value).is_absolute() else (
        ([base / value] if base else []) + [resources.NETLISTS / value])
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise SpecError(f"{name}: netlist: {value!r} not found (looked in "
                    f"{', '.join(str(c.parent) for c in candidates)})")


# Where a spec may write a value in design terms, as paths into the raw TOML ("*": every key
# or index of a table or list).
_TERM_PATHS = (("parameters", "*"), ("analysis", "step"), ("analysis", "stop"),
               ("analysis", "max_step"), ("axes", "*", "start"), ("axes", "*", "stop"),
               ("axes", "*", "values", "*"), ("measure", "*", "at"),
               ("measure", "*", "sample", "start"), ("measure", "*", "sample", "stop"))


def _walk(node: Any, path: tuple, where: tuple = ()):
    """(location, value) of every value under ``path`` in ``node``; parts that are missing or
    of another type are skipped (the schema refuses them)."""
    if not path:
        yield where, node
        return
    head, rest = path[0], path[1:]
    if head == "*":
        items = (node.items() if isinstance(node, dict) else
                 enumerate(node) if isinstance(node, list) else ())
    else:
        items = [(head, node[head])] if isinstance(node, dict) and head in node else []
    for key, child in items:
        yield from _walk(child, rest, where + (key,))


def _location(where: tuple) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _expressions(raw: dict) -> list[tuple[tuple, str]]:
    """(path, text) of every value written as an expression of design terms."""
    return [(where, value) for path in _TERM_PATHS for where, value in _walk(raw, path)
            if is_expression(value) and value != "end"]


def _design_for_spec(raw: dict) -> Design | None:
    """The default design of the process the spec's own ``models`` names."""
    models = raw.get("models", "builtin")
    return default_design(process_of(models)) if isinstance(models, str) else None


def resolve_terms(raw: dict, design: Design | None, name: str) -> dict:
    """``raw`` with every design-term expression replaced by its value under ``design``
    (default: the spec's process's default design)."""
    expressions = _expressions(raw)
    if not expressions:
        return raw
    if design is None:
        design = _design_for_spec(raw)
    if design is None:
        where, text = expressions[0]
        raise SpecError(f"{name}: {_location(where)}: {text!r} is written in design terms, "
                        "and this sweep has no design: give one with --design")
    terms = design.terms()
    resolved = copy.deepcopy(raw)
    for where, text in expressions:
        try:
            value = evaluate(text, terms, _location(where))
        except ParameterError as exc:
            raise SpecError(f"{name}: {exc}") from None
        node = resolved
        for part in where[:-1]:
            node = node[part]
        node[where[-1]] = value
    return resolved


def from_dict(raw: dict, name: str = "spec", base: Path | None = None,
              path: Path | None = None, design: Design | None = None) -> Spec:
    """Validate a parsed spec (``raw``, as read from TOML) against ``SpecFile`` and build the
    ``Spec``; raise SpecError, one line naming ``name`` and the key. Values in design terms
    take ``design``'s values (default: the spec's process's default design)."""
    file: SpecFile = validated(SpecFile, resolve_terms(raw, design, name), name)
    netlist = _resolve_netlist(file.netlist, base, name)
    analysis = file.analysis
    transient = analysis.type == "tran"
    return Spec(
        name, path, netlist, file.models, analysis.type,
        analysis.step if transient else None, analysis.stop if transient else None,
        analysis.max_step if transient else None, analysis.batch, analysis.timeout_s,
        {key.lower(): value for key, value in file.parameters.items()},
        [axis.to_axis() for axis in file.axes], [m.to_measure() for m in file.measure],
        file.description, raw, tuple(file.corners) if file.corners else None,
        tuple(file.temperatures) if file.temperatures else None,
        file.montecarlo.to_montecarlo() if file.montecarlo else None, base,
        design.name if design is not None and _expressions(raw) else None)
