"""The fit file: one JSON per fitted model, with schema version, kind, parameters with units,
valid input ranges, metrics and provenance. Reading one validates it; writing is atomic.

The format is declared, not checked by hand: `FitFile` (pydantic) holds the structure every
fit file shares, and `KIND_PARAMETERS` what each kind's parameters must be (unit, shape,
required or not). `load` validates against both and returns the `FitRecord` the rest of gcsim
uses; `save` validates first, so gcsim never writes a file it would refuse to read back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError,
                      ValidationInfo, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from gcsim import __version__
from gcsim.core import resources
from gcsim.core.atomic import OutputError, write_text_atomically
from gcsim.core.errors import GcsimError
from gcsim.core.files import read_text

# A fit file is a few kB; ten MB is far beyond any real one.
MAX_FIT_FILE_BYTES = 10 * 1024 * 1024
from gcsim.fit.basis import polynomial_basis

SCHEMA_VERSION = 1
FORMAT_TAG = "gcsim-fit"


class FitFileError(GcsimError):
    """A fit file is missing, corrupt, foreign, or from a newer gcsim."""


class RangeError(GcsimError):
    """A model was evaluated outside the input range its fit is valid for."""


# --- what each kind's parameters must be ------------------------------------------------------

# The shapes a parameter's value can have.
NUMBER = "number"          # one finite number
INTEGER = "integer"        # one integer (a JSON integer, not 3.0)
VECTOR = "list"            # a flat, non-empty list of finite numbers
PAIRS = "pairs"            # a non-empty list of [i, j] integer pairs (polynomial exponents)


@dataclass(frozen=True)
class ParameterSpec:
    """What one parameter of a kind must be. Units are SI, written as the fitters write them
    ("1" for a plain number); a file whose unit differs is refused rather than converted."""

    unit: str
    description: str
    shape: str = NUMBER
    required: bool = False
    minimum: int | None = None     # for INTEGER parameters


def _p(unit: str, description: str, shape: str = NUMBER, minimum: int | None = None
       ) -> ParameterSpec:
    return ParameterSpec(unit, description, shape, False, minimum)


def _r(unit: str, description: str, shape: str = NUMBER, minimum: int | None = None
       ) -> ParameterSpec:
    return ParameterSpec(unit, description, shape, True, minimum)


# kind -> parameter name -> spec, read off the fitters (gcsim/fit/{cell,decay,periphery,
# mismatch,loading}.py) and write_parameter_bundle. Required parameters come first, in the
# order a missing one is reported. A parameter not listed here is accepted (any unit) as long
# as its value is finite: newer fitters may add optional parameters within a schema version.
KIND_PARAMETERS: dict[str, dict[str, ParameterSpec]] = {
    "nonlinearity": {
        "coefficients": _r("A", "C_ij of I = sum C_ij (V_store - v_mid)^i V_in^j, both in "
                           "volts, in the published triangular order", VECTOR),
        "exponents": _r("1", "the (i, j) of each coefficient: the triangular basis of `order`",
                        PAIRS),
        "order": _r("1", "polynomial degree n (i + j <= n)", INTEGER, minimum=0),
        "v_mid": _r("V", "mid-rail the stored voltage is centred on"),
        "read_on_level": _r("V", "V_in during a read pulse"),
        "power_coefficients_at_read_on": _p("A", "a_i of I = sum a_i x^i at the on-level",
                                            VECTOR),
    },
    "charge_per_pulse": {
        "current_coefficients": _r("A", "I(x) = sum_i c_i x^i, x = V_store - v_mid in volts",
                                   VECTOR),
        "edge_charge_coefficients": _r("C", "edge charge e(x) = sum_i e_i x^i", VECTOR),
        "edge_time": _r("s", "e(x) ~ edge_time * I(x): the edges as extra pulse width"),
        "coefficients": _r("A", "I(x) in the published triangular basis at the on-level",
                           VECTOR),
        "order": _r("1", "degree of I(x) and of the published basis", INTEGER, minimum=0),
        "v_mid": _r("V", "mid-rail the stored voltage is centred on"),
        "read_on_level": _r("V", "V_in during a read pulse"),
        "exponents": _p("1", "the (i, j) of each coefficient, when written", PAIRS),
        "current_at_range_ends": _p("A", "I(x) at the lowest and highest stored voltage",
                                    VECTOR),
        "energy_per_read_fixed": _p("J", "energy of a read pulse's edges"),
        "energy_per_read_power": _p("W", "read energy per second of pulse width"),
        "energy_per_read_full": _p("J", "one full-width read pulse"),
    },
    "decay": {
        "time_constant": _r("s", "exponential the array simulator uses (matched over ages "
                            "<= age_max)"),
        "asymptote": _r("V", "voltage the exponential decays towards"),
        "law_time_constant": _r("s", "time constant of the sinh leakage law"),
        "law_asymptote": _r("V", "asymptote of the sinh leakage law"),
        "law_voltage_scale": _r("V", "voltage scale of the sinh leakage law"),
        "nominal_temperature": _r("degC", "temperature the simulator's numbers are at"),
        "age_max": _p("s", "oldest age the exponential was matched over"),
        "asymptote_levels": _p("V", "written levels the per-level asymptote is fitted at",
                               VECTOR),
        "asymptote_by_level": _p("V", "asymptote of each written level (linear in between); "
                                 "replaces `asymptote` in the simulator", VECTOR),
        "activation_energy": _p("eV", "from ln(tau) against 1/kT"),
    },
    "sense_amp": {
        "gain": _r("V/C", "d v_out / d charge in the linear range"),
        "offset": _r("V", "output at zero input charge"),
        "linear_range_low": _r("C", "lowest charge of the linear range"),
        "linear_range_high": _r("C", "highest charge of the linear range"),
        "saturation_low": _r("V", "lower output rail"),
        "saturation_high": _r("V", "upper output rail"),
        "saturation_charge_low": _r("C", "charge at which the output reaches the lower rail"),
        "saturation_charge_high": _r("C", "charge at which the output reaches the upper rail "
                                     "(negative: no saturation)"),
        "linearity_tolerance": _p("1", "relative deviation that ends the linear range"),
        "bitline_excursion_linear_range_max": _p("V", "largest bitline excursion in the "
                                                 "linear range"),
        "bitline_excursion_max": _p("V", "largest bitline excursion"),
        "energy_per_integration": _p("J", "one column integration"),
        "energy_per_integration_max": _p("J", "largest energy of one integration"),
        "energy_per_sunk_charge": _p("J/C", "extra energy per coulomb the column sinks"),
        "energy_per_sourced_charge": _p("J/C", "extra energy per coulomb the column sources"),
        "energy_window": _p("s", "how long energy_J integrates"),
        "idle_power": _p("W", "supply power at rest, outside the energy window"),
        "reference_power": _p("W", "bias/reference supply power, shared by an array"),
        "charge_gain": _p("1", "charge-domain readout gain (hand-written bundles)"),
        "charge_offset": _p("C", "charge-domain readout offset (hand-written bundles)"),
    },
    "charge_to_pulse": {
        "slope": _r("s/C", "pulse width per unit charge"),
        "offset": _r("C", "charge at which the pulse starts"),
        "t_max": _r("s", "largest pulse width T_max"),
        "saturation_charge": _r("C", "S_sat: charge at which the width reaches T_max"),
        "threshold": _p("C", "no pulse below this charge"),
        "comparator_delay": _p("s", "comparator delay"),
        "energy_per_conversion": _p("J", "one conversion"),
        "energy_per_conversion_max": _p("J", "largest energy of one conversion"),
        "energy_window": _p("s", "how long energy_J integrates"),
        "idle_power": _p("W", "supply power at rest, outside the energy window"),
        "reference_power": _p("W", "bias/reference supply power, shared by an array"),
    },
    "signed_converter": {
        "full_scale": _r("C", "charge that maps to an output of +-1"),
        "slope": _r("s/C", "pulse width per unit charge"),
        "t_max": _r("s", "output window"),
        "levels": _r("1", "output quantisation levels", INTEGER, minimum=2),
        "pulse_offset": _p("s", "pulse width at zero charge"),
        "charge_offset": _p("C", "input charge that reads as zero (the readout's offset)"),
        "count_full_scale": _p("1", "count that means +-1"),
        "energy_per_conversion": _p("J", "one signed conversion and count"),
        "energy_window": _p("s", "how long energy_J integrates"),
        "idle_power": _p("W", "supply power at rest, outside the energy window"),
        "reference_power": _p("W", "bias/reference supply power, shared by an array"),
    },
    "mismatch": {
        "current_sigma_rel": _r("1", "relative spread of the cell current gain"),
        "stored_voltage_shift_sigma": _r("V", "spread of the equivalent stored-voltage shift"),
        "gain_shift_correlation": _p("1", "correlation of the gain and the shift across the "
                                          "samples (0 when absent)"),
        "current_sigma_max": _p("A", "largest spread of the cell current"),
        "runs": _p("1", "Monte Carlo runs the spread comes from", INTEGER, minimum=2),
        "readout_offset_sigma": _p("V", "spread of the readout offset"),
    },
    "write": {
        "write_time": _r("s", "shortest write pulse that lands every target within tolerance"),
        "tolerance": _r("V", "largest accepted write error"),
        "write_error_max": _p("V", "largest write error at write_time"),
        "array_write_time": _p("s", "the write pulse the array writes with (the design's)"),
        "target_levels": _p("V", "target levels the landing error is known at", VECTOR),
        "level_error": _p("V", "stored minus target at each target level, at "
                               "array_write_time", VECTOR),
        "energy_per_write": _p("J", "one cell write"),
        "energy_per_write_max": _p("J", "largest energy of one write"),
    },
    "read_disturb": {
        "disturb_levels": _r("V", "stored levels the shift is known at", VECTOR),
        "disturb_per_read": _r("V", "stored-voltage shift per read at each level (mean over "
                               "the non-zero pulse widths)", VECTOR),
        "disturb_per_read_max": _p("V", "largest shift per read at any level and width"),
        "width_spread_max": _p("V", "largest change of a level's shift over the widths"),
    },
    "cell_conductance": {
        "on_coefficients": _r("S", "g = sum c_i x^i, x = V_store - v_mid, during a read pulse",
                              VECTOR),
        "off_coefficients": _r("S", "the same at rest (read port at mid-rail)", VECTOR),
        "v_mid": _r("V", "mid-rail the stored voltage is centred on"),
        "order": _p("1", "polynomial degree of both conductances", INTEGER, minimum=0),
        "read_on_level": _p("V", "read port voltage during a pulse"),
        "read_off_level": _p("V", "read port voltage at rest"),
    },
    "readout_loading": {
        "offset": _r("V", "virtual-ground offset from mid-rail"),
        "charge_coefficient": _r("V/C", "virtual-ground deviation per integrated charge"),
        "current_coefficient": _r("V/A", "virtual-ground deviation per input current"),
        "k_window": _r("s", "K readout: integration window"),
        "k_pulse_start": _r("s", "K readout: query pulses start this far into it"),
        "v_window": _r("s", "V readout: integration window"),
        "v_pulse_start": _r("s", "V readout: pulses start this far into it"),
    },
}

# What each kind's file must hold (kept under its old name: the CLI and kinds read it).
REQUIRED_PARAMETERS: dict[str, tuple[str, ...]] = {
    kind: tuple(name for name, spec in specs.items() if spec.required)
    for kind, specs in KIND_PARAMETERS.items()
}


# --- the file's structure -----------------------------------------------------------------------

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Number = Union[StrictInt, FiniteFloat]          # JSON true/false, "1.0" and NaN are not numbers
NumberList = Annotated[list[Number], Field(min_length=1)]
NumberTable = Annotated[list[NumberList], Field(min_length=1)]
KindName = Literal[tuple(KIND_PARAMETERS)]      # type: ignore[valid-type]

# The error type the validators below raise, with the one-line reason as its message.
_REASON = "gcsim_fit_file"


def _refuse(reason: str) -> PydanticCustomError:
    return PydanticCustomError(_REASON, "{reason}", {"reason": reason})


class Parameter(BaseModel):
    """One fitted parameter: its value and the SI unit it is in."""

    model_config = ConfigDict(extra="forbid")

    value: Union[Number, NumberList, NumberTable] = Field(
        description="a finite number, or a non-empty list of them, or a non-empty list of "
                    "such lists (e.g. polynomial exponents); the shape each kind's parameter "
                    "must have is declared in gcsim.fit.schema.KIND_PARAMETERS")
    unit: StrictStr = Field(
        description="SI unit of the value, as gcsim writes it ('1' for a plain number); must "
                    "be the unit declared for the kind's parameter")
    note: StrictStr | None = Field(None, description="free text: how the value was obtained")


class Provenance(BaseModel):
    """Where a fit came from. Keys beyond these are kept as they are."""

    model_config = ConfigDict(extra="allow")

    origin: str | None = Field(None, description="'gcsim sweep', 'external table', or what a "
                                                 "hand-written bundle says about itself")
    source_table: str | None = Field(None, description="the sweep table the fit was made on "
                                                       "(repository-relative when inside it)")
    source_sha256: str | None = Field(None, description="SHA-256 of that table")
    gcsim_version: str | None = Field(None, description="gcsim version that made the fit")
    date: str | None = Field(None, description="when the fit was made (ISO 8601, UTC)")
    spec: str | None = Field(None, description="characterisation spec the sweep ran")
    spec_path: str | None = Field(None, description="path of that spec")
    models: str | list[str] | None = Field(
        None, description="device models the sweep ran on, e.g. 'builtin:tt' or 'sky130:ss'; "
                          "a bundle's fits must all agree")
    design: str | None = Field(None, description="design whose values the sweep's netlist "
                                                 "took (netlists/designs/NAME.toml or a file); "
                                                 "null: the netlist's own defaults")
    design_sha256: str | None = Field(None, description="SHA-256 of that design file")
    netlist: str | None = Field(None, description="netlist template the sweep ran")
    netlist_sha256: str | None = Field(None, description="SHA-256 of the rendered netlist")
    model_files_sha256: dict[str, Any] | None = Field(
        None, description="SHA-256 of each device-model file the sweep read")
    ngspice_version: str | None = Field(None, description="ngspice that ran the sweep")
    sweep_gcsim_version: str | None = Field(None, description="gcsim version that ran the "
                                                              "sweep")
    sweep_date: str | None = Field(None, description="when the sweep ran")
    overrides: dict[str, Any] | None = Field(None, description="template parameters the "
                                                               "sweep overrode")
    options: dict[str, Any] | None = Field(None, description="fitter options (operating "
                                                             "point, order, windows)")
    column_map: dict[str, str] | None = Field(None, description="column renames applied to "
                                                                "an external table")


class FitFile(BaseModel):
    """A fitted compact model (`fits/KIND.json`): the parameters the simulator reads, each with
    its SI unit, the input range the fit is valid over, its error metrics and where it came
    from. The parameters each kind must hold, their units and shapes are declared per kind in
    `gcsim.fit.schema.KIND_PARAMETERS` (and in this schema's `allOf`)."""

    # _kind_rules is defined below the class, hence the lambda.
    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda s: _kind_rules(s))

    format: Literal["gcsim-fit"] = Field(description="always 'gcsim-fit': marks a gcsim fit "
                                                     "file")
    schema_version: StrictInt = Field(ge=1, le=SCHEMA_VERSION,
                                      description="version of this format; a newer one than "
                                                  "gcsim knows is refused")
    kind: KindName = Field(description="which model the file holds")
    description: StrictStr = Field("", description="the model's equation, in words")
    parameters: dict[str, Parameter] = Field(description="parameter name -> value and unit")
    valid_range: dict[str, tuple[Number, Number]] = Field(
        description="input name -> [low, high] the fit is valid over; evaluating outside it "
                    "is refused unless clamped")
    metrics: dict[str, Any] = Field(description="fit error metrics (free form)")
    provenance: Provenance = Field(description="where the fit came from")
    detail: dict[str, Any] | None = Field(None, description="tables and per-curve detail "
                                                            "(free form)")

    @model_validator(mode="before")
    @classmethod
    def _envelope(cls, raw: Any, info: ValidationInfo) -> Any:
        """Format, version and kind first: a foreign or newer file is named as such instead of
        by whichever of its keys happen not to fit this version."""
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_TAG:
            raise _refuse(f"not a gcsim fit file (no \"format\": \"{FORMAT_TAG}\")")
        version = raw.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _refuse(f"bad schema_version {version!r}")
        if version > SCHEMA_VERSION:
            raise _refuse(f"schema version {version} is newer than this gcsim understands "
                          f"({SCHEMA_VERSION}); upgrade gcsim")
        kind = raw.get("kind")
        if not isinstance(kind, str) or kind not in KIND_PARAMETERS:
            raise _refuse(f"unknown kind {kind!r} (known: {', '.join(KIND_PARAMETERS)})")
        expected = (info.context or {}).get("kind")
        if expected is not None and kind != expected:
            raise _refuse(f"holds a {kind!r} model, expected {expected!r}")
        return raw

    @field_validator("valid_range")
    @classmethod
    def _ordered_bounds(cls, ranges: dict[str, tuple[float, float]]
                        ) -> dict[str, tuple[float, float]]:
        for name, (low, high) in ranges.items():
            if low > high:
                raise _refuse(f"valid_range {name!r} must be [low, high]")
        return ranges

    @model_validator(mode="after")
    def _kind_parameters(self) -> FitFile:
        """Each declared parameter of the kind: present when required, in its unit, in its
        shape; then the parameters that must agree with each other."""
        specs = KIND_PARAMETERS[self.kind]
        for name, spec in specs.items():
            entry = self.parameters.get(name)
            if entry is None:
                if spec.required:
                    raise _refuse(f"parameter {name!r} missing (or without value/unit)")
                continue
            if entry.unit != spec.unit:
                raise _refuse(f"parameter {name!r} is in {entry.unit!r}, expected "
                              f"{spec.unit!r} (units are not converted)")
            problem = _shape_problem(entry.value, spec)
            if problem:
                raise _refuse(f"parameter {name!r} must be {problem}")
        problem = _consistency_problem(self.kind, self.parameters)
        if problem:
            raise _refuse(problem)
        return self


def _shape_problem(value, spec: ParameterSpec) -> str | None:
    """What `value` should have been, or None when it has the declared shape."""
    if spec.shape == NUMBER:
        return None if not isinstance(value, list) else "a single number, got a list"
    if spec.shape == INTEGER:
        if isinstance(value, list) or not isinstance(value, int):
            return "an integer" + (f" >= {spec.minimum}" if spec.minimum is not None else "") \
                + f", got {_short(value)}"
        if spec.minimum is not None and value < spec.minimum:
            return f"an integer >= {spec.minimum}, got {value}"
        return None
    if spec.shape == VECTOR:
        if not isinstance(value, list):
            return f"a list of numbers, got the single number {_short(value)}"
        if any(isinstance(v, list) for v in value):
            return "a flat list of numbers, got a nested list"
        return None
    if spec.shape == PAIRS:
        if not (isinstance(value, list)
                and all(isinstance(p, list) and len(p) == 2
                        and all(isinstance(e, int) and e >= 0 for e in p) for p in value)):
            return "a list of [i, j] pairs of non-negative integers"
        return None
    raise AssertionError(f"unknown parameter shape {spec.shape!r}")


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _consistency_problem(kind: str, parameters: dict[str, Parameter]) -> str | None:
    """Lengths that follow from the polynomial order (the evaluators trust them)."""
    def value(name):
        entry = parameters.get(name)
        return None if entry is None else entry.value

    order = value("order")
    if kind in ("nonlinearity", "charge_per_pulse"):
        basis = polynomial_basis(order)
        terms = len(value("coefficients"))
        if terms != len(basis):
            return (f"parameter 'coefficients' has {terms} terms; the triangular basis of order "
                    f"{order} has {len(basis)}")
        exponents = value("exponents")
        if exponents is not None and [tuple(p) for p in exponents] != basis:
            return (f"parameter 'exponents' is not the triangular basis of order {order} "
                    "([i, j] with i + j <= order, i outer, j inner)")
        per_power = ("power_coefficients_at_read_on" if kind == "nonlinearity"
                     else "current_coefficients")
        if value(per_power) is not None and len(value(per_power)) != order + 1:
            return (f"parameter {per_power!r} has {len(value(per_power))} terms; order {order} "
                    f"needs {order + 1}")
        ends = value("current_at_range_ends")
        if ends is not None and len(ends) != 2:
            return f"parameter 'current_at_range_ends' must hold 2 values, got {len(ends)}"
    if kind == "cell_conductance" and order is not None:
        for name in ("on_coefficients", "off_coefficients"):
            if len(value(name)) != order + 1:
                return (f"parameter {name!r} has {len(value(name))} terms; order {order} needs "
                        f"{order + 1}")
    return None


def _kind_rules(schema: dict) -> None:
    """The per-kind table in JSON Schema terms (if kind is K then its parameters are ...), so
    that a JSON Schema validator outside gcsim checks units and required parameters too."""
    shapes = {NUMBER: {"type": "number"}, INTEGER: {"type": "integer"},
              VECTOR: {"type": "array", "items": {"type": "number"}, "minItems": 1},
              PAIRS: {"type": "array", "minItems": 1,
                      "items": {"type": "array", "items": {"type": "integer", "minimum": 0},
                                "minItems": 2, "maxItems": 2}}}
    rules = []
    for kind, specs in KIND_PARAMETERS.items():
        properties = {}
        for name, spec in specs.items():
            shape = dict(shapes[spec.shape])
            if spec.minimum is not None:
                shape["minimum"] = spec.minimum
            properties[name] = {"description": spec.description,
                                "properties": {"unit": {"const": spec.unit}, "value": shape}}
        rules.append({"if": {"properties": {"kind": {"const": kind}}},
                      "then": {"properties": {"parameters": {
                          "required": list(REQUIRED_PARAMETERS[kind]),
                          "properties": properties}}}})
    schema["allOf"] = rules


FIT_FILE_SCHEMA = FitFile


# --- reading and writing ------------------------------------------------------------------------

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
    """Validate, then write atomically: a failure leaves any previous file intact."""
    path = Path(path)
    document = _plain(record.to_json())
    try:
        FitFile.model_validate(document)
    except ValidationError as exc:
        raise FitFileError(f"fit file {path}: not written: {_reason(exc)}") from None
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    try:
        write_text_atomically(path, text, "fit file")
    except OutputError as exc:   # the target is a FIFO, a device, a symlink, a folder
        raise FitFileError(str(exc)) from None
    except OSError as exc:
        raise FitFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def read(path: str | Path, kind: str | None = None) -> tuple[FitFile, dict]:
    """Read and validate a fit file: the validated model and the JSON as read. Raises
    FitFileError with a one-line reason."""
    path = Path(path)
    try:
        raw = json.loads(read_text(path, "fit file", MAX_FIT_FILE_BYTES))
    except GcsimError as exc:   # not a regular file, too large, unreadable
        raise FitFileError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FitFileError(f"fit file {path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise FitFileError(f"fit file {path}: not valid JSON ({exc.msg} at line {exc.lineno})"
                           ) from None
    try:
        model = FitFile.model_validate(raw, context={"kind": kind})
    except ValidationError as exc:
        raise FitFileError(f"fit file {path}: {_reason(exc)}") from None
    return model, raw


def load(path: str | Path, kind: str | None = None) -> FitRecord:
    """Read and validate a fit file; raises FitFileError with a one-line reason."""
    model, raw = read(path, kind)
    return record_of(model, raw)


def record_of(model: FitFile, raw: dict) -> FitRecord:
    """The FitRecord of a validated file. Its dicts are the JSON as read (validation changed
    nothing in them), so numbers keep their JSON type (an order stays an int)."""
    return FitRecord(kind=model.kind, parameters=raw["parameters"],
                     valid_range=raw["valid_range"], metrics=raw["metrics"],
                     provenance=raw["provenance"],
                     description=model.description, extra=raw.get("detail") or {})


_TOP_LEVEL = ("parameters", "valid_range", "metrics", "provenance")


def _reason(exc: ValidationError) -> str:
    """One line for the first problem pydantic found, worded for someone editing the file."""
    error = exc.errors(include_url=False)[0]
    loc, kind = error["loc"], error["type"]
    if kind == _REASON:
        return error["ctx"]["reason"]
    head = loc[0] if loc else None
    if head == "parameters" and len(loc) >= 2:
        name = loc[1]
        part = loc[2] if len(loc) >= 3 else None
        if part is None or kind == "missing":
            return f"parameter {name!r} missing (or without value/unit)"
        if part == "value":
            return f"parameter {name!r} is not a finite number or list"
        if kind == "extra_forbidden":
            return f"parameter {name!r} has an unknown key {part!r} (known: value, unit, note)"
        return f"parameter {name!r}: {part} must be text"
    if head == "valid_range" and len(loc) >= 2:
        return f"valid_range {loc[1]!r} must be [low, high]"
    if head in _TOP_LEVEL and len(loc) == 1:
        return f"missing or malformed {head!r}"
    if kind == "extra_forbidden" and len(loc) == 1:
        return f"unknown key {head!r} (known: {', '.join(FitFile.model_fields)})"
    # Anything else: name the key (not pydantic's union-member tags that follow it).
    where = f"{head} {loc[1]!r}" if head == "provenance" and len(loc) >= 2 else repr(head)
    return f"{where}: {error['msg'][:1].lower()}{error['msg'][1:]}"


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
            "design": meta.get("design"),
            "design_sha256": meta.get("design_sha256"),
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
