"""A fits bundle: a folder of fit files that loads and validates as one object (I/O only; the
hardware model is built from it in gcsim.hw.bundle).

What a bundle holds is declared once, in `BundleManifest`: a field per file it may hold (named
after the kind, aliased to the file name), whether the file is required, and what it is for.
`FILES`, `REQUIRED` and `CELL_FILES` are read off it, and `load_bundle` validates the loaded
files against it, which also refuses a bundle whose fits were swept on different device models.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema,
                      model_validator)
from pydantic_core import PydanticCustomError

from gcsim import __version__
from gcsim.core.design import Design, load_design
from gcsim.core.errors import GcsimError
from gcsim.fit import schema
from gcsim.fit.basis import degree_for_terms, polynomial_basis
from gcsim.fit.schema import FitFile, FitFileError, FitRecord, param

# How much a bundle needs a file.
REQUIRED_FILE = "required"   # the bundle is refused without it
CELL_FILE = "cell"           # it needs one of these; the first present drives the cell model
OPTIONAL_FILE = "optional"   # used when present

_REASON = "gcsim_fits_bundle"
_NEED_TEXT = {REQUIRED_FILE: "required",
              CELL_FILE: "this or the other cell file is required",
              OPTIONAL_FILE: "optional"}

# In the bundle's JSON Schema a file is an object in the fit-file format; that format has its own
# schema (gcsim.fit.schema.FIT_FILE_SCHEMA), so it is not repeated once per file here.
_AS_FIT_FILE = WithJsonSchema({"type": "object", "title": "FitFile",
                               "description": "a fit file (format 'gcsim-fit')"})


def _file(kind: str, need: str, description: str) -> Any:
    """The field of one file: aliased to its file name, with its kind and need for the tables
    below and the JSON Schema."""
    return Field(... if need == REQUIRED_FILE else None, alias=f"{kind}.json",
                 description=f"{description} (kind {kind!r}; {_NEED_TEXT[need]})",
                 json_schema_extra={"kind": kind, "need": need})


def _bundle_schema(schema: dict) -> None:
    """An optional file is absent rather than null; one of the cell files must be present."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)
    schema["anyOf"] = [{"required": [name]} for name in _names_with(CELL_FILE)]


class BundleManifest(BaseModel):
    """A fits bundle: a folder of fit files, each named after the kind it holds. It must hold
    decay.json, charge_to_pulse.json, and charge_per_pulse.json or nonlinearity.json (the
    first present drives the cell model); the other files are used when present. Every fit
    that records the device models it was swept on must name the same ones."""

    # Other files (plots, reports) may sit in the folder; only these are read.
    model_config = ConfigDict(extra="ignore", frozen=True, json_schema_extra=_bundle_schema)

    # The order is the order files are loaded and problems reported: the files every bundle
    # needs, then the cell, then the rest.
    decay: Annotated[FitFile, _AS_FIT_FILE] = _file(
        "decay", REQUIRED_FILE, "stored-voltage retention: the simulator's decay exponential")
    charge_to_pulse: Annotated[FitFile, _AS_FIT_FILE] = _file(
        "charge_to_pulse", REQUIRED_FILE, "HardSigmoid charge-to-pulse converter of the K "
        "readout")
    charge_per_pulse: Annotated[FitFile | None, _AS_FIT_FILE] = _file(
        "charge_per_pulse", CELL_FILE, "cell charge per read pulse; preferred over "
        "nonlinearity when both are present")
    nonlinearity: Annotated[FitFile | None, _AS_FIT_FILE] = _file(
        "nonlinearity", CELL_FILE, "cell read current in the published polynomial basis")
    sense_amp: Annotated[FitFile | None, _AS_FIT_FILE] = _file(
        "sense_amp", OPTIONAL_FILE, "column readout gain, offset and saturation")
    signed_converter: Annotated[FitFile | None, _AS_FIT_FILE] = _file(
        "signed_converter", OPTIONAL_FILE, "signed output converter of the V readout (else the "
        "published one)")
    mismatch: Annotated[FitFile | None, _AS_FIT_FILE] = _file(
        "mismatch", OPTIONAL_FILE, "Monte Carlo spread of the cell current")
    write: Annotated[FitFile | None, _AS_FIT_FILE] = _file(
        "write", OPTIONAL_FILE, "write time and energy (energy model)")
    read_disturb: Annotated[FitFile | None, _AS_FIT_FILE] = _file(
        "read_disturb", OPTIONAL_FILE, "stored-voltage shift per read")
    cell_conductance: Annotated[FitFile | None, _AS_FIT_FILE] = _file(
        "cell_conductance", OPTIONAL_FILE, "cell conductance seen from the bitline; with "
        "readout_loading it models readout loading")
    readout_loading: Annotated[FitFile | None, _AS_FIT_FILE] = _file(
        "readout_loading", OPTIONAL_FILE, "integrator virtual-ground deviation; with "
        "cell_conductance it models readout loading")

    @model_validator(mode="after")
    def _complete_and_one_process(self) -> BundleManifest:
        present = {name: getattr(self, field) for field, name in _ALIASES.items()
                   if getattr(self, field) is not None}
        if not any(name in present for name in _names_with(CELL_FILE)):
            raise PydanticCustomError(_REASON, "{reason}", {
                "reason": f"missing {' or '.join(_names_with(CELL_FILE))}"})
        for name, fit in present.items():
            if fit.kind != FILES[name]:
                raise PydanticCustomError(_REASON, "{reason}", {
                    "reason": f"{name} holds a {fit.kind!r} model, expected {FILES[name]!r}"})
        # A cell fitted on one process and a converter on another would simulate a chip
        # nobody can build, under a label that hides it.
        swept = [(name, _models(fit)) for name, fit in present.items() if _models(fit)]
        for index, (first, first_models) in enumerate(swept):
            for name, models in swept[index + 1:]:
                if not _same_models(first_models, models):
                    raise PydanticCustomError(_REASON, "{reason}", {
                        "reason": f"{first} was swept on {_text(first_models)} but {name} on "
                                  f"{_text(models)}; a bundle's fits must come from one "
                                  "process and corner (regenerate them together with gcsim "
                                  "regen --models)"})
        return self


def _models(fit: FitFile) -> tuple[str, ...]:
    """The device models a fit's sweep ran on ('builtin:tt', ...), () when it does not say."""
    models = fit.provenance.models
    if not models:
        return ()
    return (models,) if isinstance(models, str) else tuple(models)


def _same_models(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Sweeps record normalised names ('builtin:tt'); a bare process name ('builtin', from a
    hand-written provenance) names its default corner, which only the process file knows, so
    it agrees with any corner of the same process."""
    def agree(x: str, y: str) -> bool:
        return x == y or (":" not in x and y.split(":")[0] == x) or (
            ":" not in y and x.split(":")[0] == y)
    return len(a) == len(b) and all(agree(x, y) for x, y in zip(a, b))


def _text(models: tuple[str, ...]) -> str:
    return repr(models[0]) if len(models) == 1 else repr(list(models))


# field name -> file name, and the tables the rest of gcsim reads, all off the manifest.
_ALIASES = {field: info.alias for field, info in BundleManifest.model_fields.items()}
FILES = {alias: field for field, alias in _ALIASES.items()}   # file name -> kind
_NEEDS = {info.alias: info.json_schema_extra["need"]
          for info in BundleManifest.model_fields.values()}


def _names_with(need: str) -> tuple[str, ...]:
    return tuple(name for name, has in _NEEDS.items() if has == need)


REQUIRED = _names_with(REQUIRED_FILE)
CELL_FILES = _names_with(CELL_FILE)   # the first present drives the cell
BUNDLE_SCHEMA = BundleManifest


# The copy of the design the bundle's sweeps ran on (gcsim regen and gcsim run write it): the
# hardware model takes its operating point from it.
DESIGN_FILE = "design.toml"


@dataclass
class FitsBundle:
    directory: Path
    records: dict[str, FitRecord]   # by kind
    design: Design | None = None    # DESIGN_FILE, when the bundle has one

    def __contains__(self, kind: str) -> bool:
        return kind in self.records

    @property
    def models(self) -> tuple[str, ...]:
        """The device models the bundle's sweeps ran on (one process and corner: the
        manifest checks it), () when no fit records them."""
        for record in self.records.values():
            models = (record.provenance or {}).get("models")
            if models:
                return (models,) if isinstance(models, str) else tuple(models)
        return ()

    def __getitem__(self, kind: str) -> FitRecord:
        return self.records[kind]


def load_bundle(directory: str | Path) -> FitsBundle:
    """Load and validate every fit file of a bundle; one-line errors for anything wrong."""
    root = Path(directory)
    if not root.is_dir():
        raise FitFileError(f"fits bundle not found: {root} is not a directory")
    # Missing files are named before any file is read: a half-copied bundle says so. Present
    # means any directory entry: one that is not a regular file is refused when it is read.
    def present(name: str) -> bool:
        return os.path.lexists(root / name)

    missing = [name for name in REQUIRED if not present(name)]
    if not any(present(name) for name in CELL_FILES):
        missing.insert(0, " or ".join(CELL_FILES))
    if missing:
        raise FitFileError(f"fits bundle {root} is missing {', '.join(missing)}")
    read = {name: schema.read(root / name, kind=kind) for name, kind in FILES.items()
            if present(name)}
    try:
        BundleManifest.model_validate({name: model for name, (model, _) in read.items()})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        reason = (error["ctx"]["reason"] if error["type"] == _REASON
                  else f"{'.'.join(map(str, error['loc']))}: {error['msg']}")
        raise FitFileError(f"fits bundle {root}: {reason}") from None
    records = {FILES[name]: schema.record_of(model, raw) for name, (model, raw) in read.items()}
    return FitsBundle(root, records, _design(root, records))


def _design(root: Path, records: dict[str, FitRecord]) -> Design | None:
    """The bundle's design.toml, None without one; refused when its values are not the ones
    a fit records its sweep ran on (design_sha256 in its provenance)."""
    path = root / DESIGN_FILE
    if not os.path.lexists(path):
        return None
    try:
        design = load_design(path)
    except GcsimError as exc:
        raise FitFileError(f"fits bundle {root}: {exc}") from None
    for kind, record in records.items():
        recorded = (record.provenance or {}).get("design_sha256")
        if recorded and recorded != design.sha256:
            raise FitFileError(f"fits bundle {root}: {DESIGN_FILE} (design {design.name}, "
                               f"sha256 {design.sha256[:12]}...) is not the design {kind}.json "
                               f"was swept on (sha256 {str(recorded)[:12]}...); copy that "
                               "design's file there or regenerate the fits")
    return design


def write_parameter_bundle(directory: str | Path, coefficients_A, *, time_constant_s: float,
                           asymptote_V: float, slope_s_per_C: float, t_max_s: float,
                           c2p_offset_C: float = 0.0, readout_gain: float = 1.0,
                           readout_offset_C: float = 0.0, saturation_C: float | None = None,
                           output_full_scale_C: float | None = None, levels: int = 32,
                           mismatch: tuple[float, float] | None = None, v_mid_V: float,
                           read_on_V: float, note: str = "hand-written parameters") -> Path:
    """Write a bundle from given parameters rather than from sweeps: for hand-made models, the
    published model as a bundle, and tests. Provenance says where the numbers came from. The
    mid-rail `v_mid_V` and read-on level `read_on_V` are the operating point's (e.g.
    gcsim.hw.PAPER.mid_rail_V / read_on_V for the published one): no default, so none is assumed."""

    root = Path(directory)
    order = degree_for_terms(len(coefficients_A))
    provenance = {"origin": note, "gcsim_version": __version__,
                  "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()}

    def record(kind, parameters, valid_range=None):
        return FitRecord(kind=kind, parameters=parameters, valid_range=valid_range or {},
                         metrics={}, provenance=provenance, description=note)

    files = {
        "nonlinearity.json": record("nonlinearity", {
            "coefficients": param(coefficients_A, "A"),
            "exponents": param([list(e) for e in polynomial_basis(order)], "1"),
            "order": param(order, "1"), "v_mid": param(v_mid_V, "V"),
            "read_on_level": param(read_on_V, "V")}),
        "decay.json": record("decay", {
            "time_constant": param(time_constant_s, "s"), "asymptote": param(asymptote_V, "V"),
            "law_time_constant": param(time_constant_s, "s"),
            "law_asymptote": param(asymptote_V, "V"),
            "law_voltage_scale": param(1e3, "V", "large: the law is a plain exponential"),
            "nominal_temperature": param(27.0, "degC")}),
        "charge_to_pulse.json": record("charge_to_pulse", {
            "slope": param(slope_s_per_C, "s/C"), "offset": param(c2p_offset_C, "C"),
            "t_max": param(t_max_s, "s"),
            "saturation_charge": param(c2p_offset_C + t_max_s / slope_s_per_C, "C")}),
    }
    if saturation_C is not None or readout_gain != 1.0 or readout_offset_C != 0.0:
        high = saturation_C if saturation_C is not None else -1.0
        files["sense_amp.json"] = record("sense_amp", {
            "gain": param(1.0, "V/C"), "offset": param(0.0, "V"),
            "linear_range_low": param(-abs(high), "C"), "linear_range_high": param(abs(high), "C"),
            "saturation_low": param(-abs(high), "V"), "saturation_high": param(abs(high), "V"),
            "saturation_charge_low": param(-abs(high), "C"),
            "saturation_charge_high": param(high, "C", "negative: no saturation"),
            "charge_gain": param(readout_gain, "1"), "charge_offset": param(readout_offset_C, "C")})
    if output_full_scale_C is not None:
        files["signed_converter.json"] = record("signed_converter", {
            "full_scale": param(output_full_scale_C, "C"), "slope": param(t_max_s /
                                                                          output_full_scale_C,
                                                                          "s/C"),
            "t_max": param(t_max_s, "s"), "levels": param(levels, "1")})
    if mismatch is not None:
        files["mismatch.json"] = record("mismatch", {
            "current_sigma_rel": param(mismatch[0], "1"),
            "stored_voltage_shift_sigma": param(mismatch[1], "V")})
    root.mkdir(parents=True, exist_ok=True)
    for name, rec in files.items():
        schema.save(rec, root / name)
    return root
