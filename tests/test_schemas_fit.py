"""The declared schemas of the fit file and the fits bundle (gcsim.fit.schema.FIT_FILE_SCHEMA,
gcsim.fit.bundle.BUNDLE_SCHEMA): what they describe, that the committed fits pass, and that what
they refuse is refused in one line, through the library and through `gcsim simulate`."""

import json
import math
import shutil

import pytest
from click.testing import CliRunner

from gcsim.cli import main
from gcsim.core import resources
from gcsim.fit import schema
from gcsim.fit.basis import polynomial_basis
from gcsim.fit.bundle import (BUNDLE_SCHEMA, CELL_FILES, FILES, REQUIRED, load_bundle,
                              write_parameter_bundle)
from gcsim.fit.schema import (FIT_FILE_SCHEMA, KIND_PARAMETERS, REQUIRED_PARAMETERS,
                              FitFileError, FitRecord, param)
from gcsim.hw import PAPER

needs_fits = pytest.mark.skipif(not (resources.FITS / "decay.json").is_file(),
                                reason="no committed fits bundle")
TINY = ["--tokens", "8", "--dim", "4", "--window", "8", "--array", "4"]


# --- the schemas themselves -------------------------------------------------------------------


def undescribed(node, defs, path="", seen=()):
    """Paths of properties without a description, through $refs and nested tables."""
    if isinstance(node, dict) and "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return undescribed(defs[name], defs, path, seen + (name,))
    out = []
    for key, prop in (node.get("properties") or {}).items():
        if not prop.get("description"):
            out.append(f"{path}.{key}")
        for sub in (prop, *prop.get("anyOf", ()), prop.get("items") or {},
                    prop.get("additionalProperties") or {}):
            if isinstance(sub, dict):
                out += undescribed(sub, defs, f"{path}.{key}", seen)
    return out


@pytest.mark.parametrize("model", [FIT_FILE_SCHEMA, BUNDLE_SCHEMA])
def test_json_schema_is_produced_and_every_field_is_described(model):
    produced = model.model_json_schema()
    json.dumps(produced)
    assert (model.__doc__ or "").strip()
    assert produced["properties"]
    assert undescribed(produced, produced.get("$defs", {})) == []
    for name in produced.get("$defs", {}):
        assert produced["$defs"][name].get("description"), name   # every nested model's doc


def test_fit_file_schema_states_the_per_kind_units_and_required_parameters():
    rules = {rule["if"]["properties"]["kind"]["const"]: rule["then"]["properties"]["parameters"]
             for rule in FIT_FILE_SCHEMA.model_json_schema()["allOf"]}
    assert set(rules) == set(KIND_PARAMETERS)
    decay = rules["decay"]
    assert decay["required"] == list(REQUIRED_PARAMETERS["decay"])
    assert decay["properties"]["time_constant"]["properties"]["unit"] == {"const": "s"}
    assert rules["charge_to_pulse"]["properties"]["t_max"]["properties"]["unit"] == {
        "const": "s"}
    assert rules["nonlinearity"]["properties"]["coefficients"]["properties"]["unit"] == {
        "const": "A"}


def test_bundle_schema_declares_the_files_and_what_is_required():
    produced = BUNDLE_SCHEMA.model_json_schema()
    assert set(produced["properties"]) == set(FILES)
    assert sorted(produced["required"]) == sorted(REQUIRED) == ["charge_to_pulse.json",
                                                                "decay.json"]
    assert CELL_FILES == ("charge_per_pulse.json", "nonlinearity.json")
    assert produced["anyOf"] == [{"required": [name]} for name in CELL_FILES]
    assert all(produced["properties"][name]["kind"] == kind for name, kind in FILES.items())


def test_declared_units_are_the_ones_the_writers_use(tmp_path):
    """Every parameter the committed fits and write_parameter_bundle write is declared, with the
    unit it is written in (an undeclared one would pass with any unit)."""
    folders = [write_parameter_bundle(tmp_path / "hand", [1e-6] * 10, time_constant_s=5e-3,
                                      asymptote_V=0.45, slope_s_per_C=1e4, t_max_s=15e-9,
                                      saturation_C=3e-12, output_full_scale_C=6e-13,
                                      mismatch=(0.03, 0.01),
                                      v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)]
    if (resources.FITS / "decay.json").is_file():
        folders.append(resources.FITS)
    seen = 0
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            raw = json.loads(path.read_text())
            for name, entry in raw["parameters"].items():
                spec = KIND_PARAMETERS[raw["kind"]].get(name)
                assert spec is not None, f"{path.name}: {name} is not declared"
                assert entry["unit"] == spec.unit, (path.name, name)
                seen += 1
    assert seen > 40


# --- what passes ------------------------------------------------------------------------------


@needs_fits
def test_committed_fits_validate():
    for path in sorted(resources.FITS.glob("*.json")):
        record = schema.load(path, kind=FILES[path.name])
        assert record.kind == FILES[path.name]
        assert FIT_FILE_SCHEMA.model_validate(json.loads(path.read_text())).kind == record.kind
    bundle = load_bundle(resources.FITS)
    assert set(bundle.records) == {FILES[p.name] for p in resources.FITS.glob("*.json")}
    assert isinstance(bundle["nonlinearity"].value("order"), int)   # JSON types kept


def test_a_saved_record_loads_back_unchanged(tmp_path):
    record = FitRecord(kind="nonlinearity", parameters={
        "coefficients": param([1e-6] * 10, "A"),
        "exponents": param([list(e) for e in polynomial_basis(3)], "1"),
        "order": param(3, "1"), "v_mid": param(0.45, "V"), "read_on_level": param(0.9, "V"),
        "something_new": param(2.0, "furlong", "undeclared parameters pass when finite")},
        valid_range={"stored_voltage_V": [0.0, 0.9]}, metrics={}, provenance={"origin": "test"})
    loaded = schema.load(schema.save(record, tmp_path / "nl.json"))
    assert loaded.parameters == record.parameters and loaded.valid_range == record.valid_range


# --- what is refused --------------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path):
    """A copy of the committed bundle (a hand-written one when there is none) to damage."""
    target = tmp_path / "fits"
    if (resources.FITS / "decay.json").is_file():
        shutil.copytree(resources.FITS, target)
    else:
        write_parameter_bundle(target, [1e-6] * 10, time_constant_s=5e-3, asymptote_V=0.45,
                               slope_s_per_C=1e4, t_max_s=15e-9,
                               v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)
    return target


def edit(path, change):
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))   # json writes a NaN as the bare literal NaN
    return path


def refused(path, *fragments, kind=None):
    with pytest.raises(FitFileError) as info:
        schema.load(path, kind=kind)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"fit file {path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def cli_error(folder):
    result = CliRunner().invoke(main, ["simulate", "attention", "--mode", "fitted",
                                       "--fits", str(folder), *TINY])
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_nan_in_an_optional_parameter_is_refused(bundle):
    def add_nan(raw):
        raw["parameters"]["age_max"] = {"value": math.nan, "unit": "s"}

    path = edit(bundle / "decay.json", add_nan)
    refused(path, "parameter 'age_max'", "not a finite number")
    with pytest.raises(FitFileError, match="age_max"):
        load_bundle(bundle)
    line = cli_error(bundle)
    assert f"fit file {path}" in line and "'age_max' is not a finite number" in line


def test_an_infinite_or_boolean_value_is_refused(tmp_path, bundle):
    for value in (math.inf, True, "0.45", None):
        path = edit(bundle / "decay.json",
                    lambda raw, v=value: raw["parameters"]["asymptote"].update(value=v))
        refused(path, "parameter 'asymptote' is not a finite number")


def test_a_wrong_unit_is_refused_naming_found_and_expected(bundle):
    path = edit(bundle / "decay.json",
                lambda raw: raw["parameters"]["time_constant"].update(unit="ms"))
    refused(path, "parameter 'time_constant'", "'ms'", "expected 's'")
    line = cli_error(bundle)
    assert f"fit file {path}" in line and "'ms', expected 's'" in line

    path = edit(bundle / "charge_to_pulse.json",
                lambda raw: raw["parameters"]["t_max"].update(unit="ns"))
    refused(path, "parameter 't_max'", "'ns'", "expected 's'")


@pytest.mark.parametrize("name", ["nonlinearity.json", "charge_per_pulse.json"])
def test_coefficients_must_match_the_order(bundle, name):
    if not (bundle / name).is_file():
        pytest.skip(f"no {name} in the bundle")
    order = json.loads((bundle / name).read_text())["parameters"]["order"]["value"]
    path = edit(bundle / name, lambda raw: raw["parameters"]["order"].update(value=order + 1))
    refused(path, "'coefficients' has", f"order {order + 1} has "
            f"{len(polynomial_basis(order + 1))}", "triangular")

    edit(path, lambda raw: raw["parameters"]["order"].update(value=order))
    edit(path, lambda raw: raw["parameters"].update(
        exponents={"value": [list(e) for e in reversed(polynomial_basis(order))], "unit": "1"}))
    refused(path, "'exponents' is not the triangular basis")


def test_shapes_and_integers_follow_the_kind(bundle):
    path = bundle / "decay.json"
    edit(path, lambda raw: raw["parameters"]["asymptote"].update(value=[[0.45]]))
    refused(path, "parameter 'asymptote' must be a single number, got a list")
    edit(path, lambda raw: raw["parameters"]["asymptote"].update(value=[[[0.45]]]))
    refused(path, "parameter 'asymptote' is not a finite number")

    write_parameter_bundle(bundle / "hand", [1e-6] * 10, time_constant_s=5e-3,
                           asymptote_V=0.45, slope_s_per_C=1e4, t_max_s=15e-9,
                           output_full_scale_C=6e-13,
                           v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)
    converter = bundle / "hand" / "signed_converter.json"
    for bad, expected in ((1, "an integer >= 2, got 1"), (32.0, "an integer >= 2, got 32.0"),
                          ([32], "an integer >= 2, got [32]")):
        edit(converter, lambda raw, v=bad: raw["parameters"]["levels"].update(value=v))
        refused(converter, f"parameter 'levels' must be {expected}")
    nonlinearity = bundle / "hand" / "nonlinearity.json"
    edit(nonlinearity, lambda raw: raw["parameters"]["coefficients"].update(value=[[1e-6]] * 10))
    refused(nonlinearity, "'coefficients' must be a flat list of numbers, got a nested list")
    edit(nonlinearity, lambda raw: raw["parameters"]["coefficients"].update(value=1e-6))
    refused(nonlinearity, "'coefficients' must be a list of numbers")


def test_a_nested_list_where_a_number_is_expected_is_one_line_in_the_cli(bundle):
    path = edit(bundle / "charge_to_pulse.json",
                lambda raw: raw["parameters"]["slope"].update(value=[[1e4]]))
    line = cli_error(bundle)
    assert f"fit file {path}" in line and "'slope' must be a single number" in line


def test_structure_problems_are_one_line(bundle):
    path = bundle / "decay.json"
    edit(path, lambda raw: raw["parameters"]["asymptote"].update(unti="V"))
    refused(path, "unknown key 'unti'")
    edit(path, lambda raw: raw["parameters"]["asymptote"].pop("unti"))
    edit(path, lambda raw: raw.update(paramaters={}))
    refused(path, "unknown key 'paramaters'")
    edit(path, lambda raw: raw.pop("paramaters"))
    edit(path, lambda raw: raw["valid_range"].update(time_s=[1.0, 0.0]))
    refused(path, "valid_range 'time_s' must be [low, high]")
    edit(path, lambda raw: raw["valid_range"].update(time_s=[0.0, math.nan]))
    refused(path, "valid_range 'time_s' must be [low, high]")
    edit(path, lambda raw: raw["valid_range"].update(time_s=[0.0, 1.0]))
    edit(path, lambda raw: raw["provenance"].update(models=7))
    refused(path, "provenance 'models'")
    refused(path, "expected 'nonlinearity'", kind="nonlinearity")   # the kind comes first


def test_save_refuses_what_load_would_refuse(tmp_path):
    record = FitRecord(kind="write", parameters={
        "write_time": param(float("nan"), "s"), "tolerance": param(0.02, "V")},
        valid_range={}, metrics={}, provenance={})
    with pytest.raises(FitFileError, match="not written: parameter 'write_time'"):
        schema.save(record, tmp_path / "write.json")
    record.parameters["write_time"] = param(2e-9, "ns")
    with pytest.raises(FitFileError, match="'ns', expected 's'"):
        schema.save(record, tmp_path / "write.json")
    assert not (tmp_path / "write.json").exists()


def test_a_bundle_mixing_device_models_is_refused(bundle):
    edit(bundle / "decay.json", lambda raw: raw["provenance"].update(models="builtin"))
    edit(bundle / "charge_to_pulse.json",
         lambda raw: raw["provenance"].update(models="sky130:tt"))
    with pytest.raises(FitFileError) as info:
        load_bundle(bundle)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"fits bundle {bundle}")
    assert "decay.json" in message and "charge_to_pulse.json" in message
    assert "'builtin'" in message and "'sky130:tt'" in message
    line = cli_error(bundle)
    assert "decay.json" in line and "charge_to_pulse.json" in line and "sky130:tt" in line

    # Fits that do not say what they were swept on are not compared.
    edit(bundle / "charge_to_pulse.json", lambda raw: raw["provenance"].pop("models"))
    load_bundle(bundle)


def test_json_schema_validators_outside_gcsim_agree(bundle):
    jsonschema = pytest.importorskip("jsonschema")
    produced = FIT_FILE_SCHEMA.model_json_schema()
    good = json.loads((bundle / "decay.json").read_text())
    jsonschema.validate(good, produced)
    good["parameters"]["time_constant"]["unit"] = "ms"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(good, produced)
