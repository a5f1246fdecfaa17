"""The declared schemas of sweep specs and process role mappings (pydantic models): their JSON
Schema is complete, every shipped file validates, and a bad file gets one line naming the
file and the key."""

import shutil
import tomllib

import pytest

from gcsim.characterize import spec
from gcsim.core import resources
from gcsim.core.design import load_design
from gcsim.core.errors import SpecError
from gcsim.spice import process

from conftest import DATA

SCHEMAS = {"spec": spec.SPEC_SCHEMA, "process": process.PROCESS_SCHEMA}
SHIPPED_SPECS = sorted(resources.CHARACTERIZATION.glob("*.toml"))
SHIPPED_PROCESSES = sorted(resources.MODELS.glob("*.toml")) + [DATA / "tiny_lib.roles.toml"]


def tables(schema: dict):
    """(name, table node) for the top-level table and every table in $defs."""
    yield schema.get("title", "(top)"), schema
    yield from schema.get("$defs", {}).items()


def contains(node, wanted: dict) -> bool:
    if isinstance(node, dict):
        return node == wanted or any(contains(v, wanted) for v in node.values())
    if isinstance(node, list):
        return any(contains(v, wanted) for v in node)
    return False


@pytest.mark.parametrize("name", SCHEMAS)
def test_json_schema_describes_every_key(name):
    schema = SCHEMAS[name].model_json_schema()
    assert schema["type"] == "object" and schema.get("description")
    for title, table in tables(schema):
        assert table.get("description"), f"{title} has no description (docstring)"
        assert table.get("additionalProperties") is False, f"{title} allows unknown keys"
        for key, prop in table["properties"].items():
            assert prop.get("description"), f"{title}.{key} has no description"
    # TOML has no null: an optional key is left out, never written as null.
    assert not contains(schema, {"type": "null"})


def test_units_are_declared():
    spec_schema = spec.SPEC_SCHEMA.model_json_schema()
    analysis = spec_schema["$defs"]["AnalysisSection"]["properties"]
    assert {analysis[key]["unit"] for key in ("step", "stop", "max_step", "timeout_s")} == {"s"}
    assert spec_schema["properties"]["temperatures"]["unit"] == "°C"
    process_schema = process.PROCESS_SCHEMA.model_json_schema()
    assert process_schema["properties"]["supply_V"]["unit"] == "V"
    role = process_schema["$defs"]["RoleEntry"]["properties"]
    assert {role[key]["unit"] for key in ("w_min_m", "l_min_m", "w_default_m",
                                          "l_default_m")} == {"m"}


def test_key_tables_come_from_the_models():
    assert list(spec.TOP_KEYS) == list(spec.SpecFile.model_fields)
    assert spec.AXIS_KEYS["num"] == spec.AxisEntry.model_fields["num"].description


@pytest.mark.parametrize("path", SHIPPED_SPECS, ids=lambda p: p.name)
def test_shipped_specs_validate(path):
    raw = tomllib.loads(path.read_text())
    for design in ("builtin", "sky130"):
        spec.SPEC_SCHEMA.model_validate(spec.resolve_terms(raw, load_design(design), path.name))
    assert spec.load(path).measures


@pytest.mark.parametrize("path", SHIPPED_PROCESSES, ids=lambda p: p.name)
def test_shipped_process_files_validate(path):
    model = process.PROCESS_SCHEMA.model_validate(tomllib.loads(path.read_text()))
    assert set(process.ROLES) <= set(model.roles)


SPEC = """\
netlist = "gain_cell.cir"
[analysis]
type = "dc"
[[axes]]
param = "v_store"
column = "stored_voltage_V"
dc_source = "VSN"
start = 0
stop = "900m"
num = 10
[[measure]]
column = "i_out_A"
vector = "i(VBL)"
"""
MONTECARLO = """\
[montecarlo]
runs = 2
seed = 1
[montecarlo.devices.m1]
role = "nmos"
dvth = "dvth_m1"
w = "w1"
l = "l1"
"""

SPEC_CASES = {
    "unknown top-level key": (lambda t: 'colour = "red"\n' + t,
                              "colour: unknown key (allowed: description, netlist,"),
    "key with a newline": (lambda t: '"a\\nb" = 1\n' + t, "'a\\nb': unknown key"),
    "axis count": (lambda t: t.replace("num = 10", "num = 2.5"),
                   "axes[0].num: expected an integer >= 1, got 2.5"),
    "axis value": (lambda t: t.replace('stop = "900m"', 'stop = "9OO"'),
                   "axes[0].stop: '9OO' is not a number"),
    "analysis type": (lambda t: t.replace('type = "dc"', 'type = "ac"'),
                      "analysis.type: expected 'dc', 'op' or 'tran', got 'ac'"),
    "transient without stop": (lambda t: t.replace('type = "dc"', 'type = "tran"\nstep = "1n"'),
                               "analysis.stop: required for a transient"),
    "dc_source outside dc": (lambda t: t.replace('type = "dc"', 'type = "op"'),
                             "axes[0].dc_source: only for analysis.type = 'dc'"),
    "sample grid": (lambda t: t.replace('type = "dc"', 'type = "tran"\nstep = "1n"\nstop = "5n"')
                    .replace('dc_source = "VSN"\n', "")
                    + "sample = { start = 0, num = 2 }\n",
                    "measure[0].sample.stop: required"),
    "montecarlo role": (lambda t: t.replace("[analysis]", MONTECARLO + "[analysis]"),
                        "montecarlo.devices.m1.role: 'nmos' is not a device role"),
    "no measure": (lambda t: t.split("[[measure]]")[0],
                   "measure: at least one [[measure]] table is required"),
}


@pytest.mark.parametrize("case", SPEC_CASES)
def test_bad_spec_is_one_line_naming_file_and_key(tmp_path, case):
    mutate, expected = SPEC_CASES[case]
    path = tmp_path / "bad.toml"
    path.write_text(mutate(SPEC))
    with pytest.raises(SpecError) as info:
        spec.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"bad.toml: {expected}"), message


PROCESS_CASES = {
    "unknown key": (lambda t: "colour = 1\n" + t, "colour: unknown key (allowed: name,"),
    "missing supply": (lambda t: t.replace("supply_V = 1.2\n", ""), "supply_V: required"),
    "negative width": (lambda t: t.replace("w_min_m = 200e-9", "w_min_m = -2e-7", 1),
                       "roles.read_nmos.w_min_m: expected a number > 0, got -2e-07"),
    "missing length": (lambda t: t.replace("l_min_m = 100e-9\na_vt", "a_vt"),
                       "roles.core_nmos.l_min_m: required (the legal minimum, metres)"),
    "unknown role key": (lambda t: t.replace("a_vt_mV_um = 5.0", "avt = 5.0"),
                         "roles.core_nmos.avt: unknown key"),
    "missing role": (lambda t: t.replace("[roles.write_nmos]", "[roles.w]"),
                     "roles: no mapping for roles ['write_nmos']"),
    "bad kind": (lambda t: t.replace("a_vt_mV_um = 5.0", "kind = 'mos'"),
                 "roles.core_nmos.kind: expected 'model' (a MOSFET .model card) or 'subckt'"),
    "sections not a list": (lambda t: t.replace('sections = ["tt", "ss"]', 'sections = "tt"'),
                            "sections: expected a list, got 'tt'"),
    "bad section name": (lambda t: t.replace('sections = ["tt", "ss"]',
                                             'sections = ["tt", "s s"]'),
                         "sections[1]: 's s' is not a section name"),
}


@pytest.mark.parametrize("case", PROCESS_CASES)
def test_bad_process_file_is_one_line_naming_file_and_key(tmp_path, case):
    mutate, expected = PROCESS_CASES[case]
    shutil.copy(DATA / "tiny_lib.spice", tmp_path / "lib.spice")
    mapping = tmp_path / "lib.roles.toml"
    mapping.write_text(mutate((DATA / "tiny_lib.roles.toml").read_text()))
    with pytest.raises(SpecError) as info:
        process.resolve(f"{tmp_path / 'lib.spice'}:tt")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"process file {mapping}: {expected}"), message


def test_first_error_in_file_order():
    """Several faults: the first in the order of the file's keys is reported, an unknown key
    of a table before that table's values."""
    raw = tomllib.loads(SPEC.replace("num = 10", "num = 0\nnmu = 3"))
    with pytest.raises(SpecError, match=r"^t\.toml: axes\[0\]\.nmu: unknown key"):
        spec.from_dict(raw, name="t.toml", base=resources.CHARACTERIZATION)
    del raw["measure"]
    raw["axes"][0].pop("nmu")
    with pytest.raises(SpecError, match=r"^t\.toml: axes\[0\]\.num: expected an integer"):
        spec.from_dict(raw, name="t.toml", base=resources.CHARACTERIZATION)
