"""Designs as data (netlists/designs/*.toml): the schema is complete, the builtin design holds
the netlists' own defaults, a bad file is one line naming the file and the key, and a sweep
on a design takes its values and records it (sidecar, fit provenance)."""

import json
import re
import shutil
import tomllib

import pytest
from click.testing import CliRunner

from gcsim.characterize import spec as spec_module
from gcsim.characterize.sweep import Sweep, write_outputs
from gcsim.cli import main
from gcsim.core import resources
from gcsim.core.design import DESIGN_SCHEMA, DESIGNS, load_design
from gcsim.core.errors import SpecError
from gcsim.fit.schema import provenance_from_table
from gcsim.spice.template import Template

from conftest import HAVE_SKY130, error_line, invoke

BUILTIN = DESIGNS / "builtin.toml"
UNIT_SUFFIXES = {"_V": "V", "_F": "F", "_m": "m", "_s": "s", "_A": "A", "_ohm": "ohm"}


def _tables(schema: dict):
    yield schema.get("title", "(top)"), schema
    yield from schema.get("$defs", {}).items()


def test_json_schema_describes_every_field_with_its_unit():
    schema = DESIGN_SCHEMA.model_json_schema()
    for title, table in _tables(schema):
        assert table.get("description"), f"{title} has no description"
        assert table.get("additionalProperties") is False, f"{title} allows unknown keys"
        for key, prop in table["properties"].items():
            assert prop.get("description"), f"{title}.{key} has no description"
            for suffix, unit in UNIT_SUFFIXES.items():
                if key.endswith(suffix):
                    assert prop.get("unit") == unit, f"{title}.{key}: unit {prop.get('unit')}"


def test_builtin_design_validates_and_equals_the_netlist_defaults():
    design = load_design("builtin")
    assert design.name == "builtin" and design.process == "builtin"
    assert design.path == BUILTIN and len(design.sha256) == 64
    assert load_design(str(BUILTIN)).sha256 == design.sha256
    used = set()
    for netlist in sorted(resources.NETLISTS.glob("*.cir")):
        defaults = Template.load(netlist).defaults
        for name, value in design.template_parameters().items():
            if name in defaults:
                used.add(name)
                assert defaults[name] == value, f"{netlist.name}: {name}"
    # Every value the design maps reaches some testbench.
    assert set(design.template_parameters()) <= used


def test_netlists_hard_code_no_size():
    """Every W and L of a device instance is a parameter (the design supplies it): no
    instance line, nor its continuation, gives a size as a number."""
    paths = sorted((resources.NETLISTS / "cells").glob("*.sub")) + \
        sorted(resources.NETLISTS.glob("*.cir"))
    for path in paths:
        instance = False
        for line in path.read_text().splitlines():
            if not line.startswith("+"):
                instance = line[:1].upper() in ("X", "M")
            if instance:
                assert not re.search(r"\b(w|l|wn|wp)=[0-9]", line), f"{path.name}: {line}"


def _broken(tmp_path, edit) -> str:
    raw = tomllib.loads(BUILTIN.read_text())
    edit(raw)
    path = tmp_path / "bad.toml"
    lines = []

    def dump(table, prefix):
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in scalars.items())
        for k, v in table.items():
            if isinstance(v, dict):
                dump(v, f"{prefix}.{k}" if prefix else k)

    dump(raw, "")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as caught:
        load_design(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("edit, key", [
    (lambda raw: raw["cell"].update(c_store_fF=2), "cell.c_store_fF"),
    (lambda raw: raw["cell"].pop("c_store_F"), "cell.c_store_F"),
    (lambda raw: raw["operating"].update(vdd_V="0.9"), "operating.vdd_V"),
    (lambda raw: raw["periphery"]["devices"].update(l_sw_m=-1.0), "periphery.devices.l_sw_m"),
    (lambda raw: raw["dac"].update(stored_levels=1), "dac.stored_levels"),
    (lambda raw: raw["dac"].update(stored_max_V=-0.1), "dac.stored_max_V"),
    (lambda raw: raw.update(colour="red"), "colour"),
])
def test_bad_design_is_one_line_naming_file_and_key(tmp_path, edit, key):
    assert f": {key}: " in _broken(tmp_path, edit)


def test_unknown_design_name_and_bad_toml(tmp_path):
    with pytest.raises(SpecError, match=r"design 'nowhere': no such design \(shipped: builtin"):
        load_design("nowhere")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match="design file .*bad.toml"):
        load_design(bad)


def test_cli_refuses_unknown_design_in_one_line(tmp_path):
    for args in (["sweep", "gain_cell_iv", "-o", str(tmp_path / "t.parquet")],
                 ["run", "--out", str(tmp_path / "run")],
                 ["regen", "--check", "--reports", str(tmp_path / "r")],
                 ["validate", "tile", "--rows", "2", "--cols", "2"]):
        result = CliRunner().invoke(main, args + ["--design", "nowhere"])
        assert result.exit_code != 0, args
        errors = [line for line in result.output.splitlines() if line.strip()]
        assert len(errors) == 1 and "no such design" in errors[0], (args, result.output)
        assert not (tmp_path / "t.parquet").exists()


def _small(tmp_path, name: str, **nums: int):
    """A shipped spec with fewer points: NUM = n for each axis given by its parameter."""
    text = (resources.CHARACTERIZATION / f"{name}.toml").read_text()
    text = re.sub(r'^netlist = "(.*)"', lambda m: f'netlist = "{resources.NETLISTS / m[1]}"',
                  text, flags=re.M)
    for param, num in nums.items():
        text, count = re.subn(rf'(param = "{param}"[^\[]*?num = )\d+', rf"\g<1>{num}", text)
        assert count == 1, param
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return spec_module.load(path)


def _small_iv(tmp_path):
    return _small(tmp_path, "gain_cell_iv", v_store=4, v_in=2)


def _design_with_c_store(tmp_path, c_store: float):
    text = BUILTIN.read_text().replace("c_store_F = 2e-15", f"c_store_F = {c_store!r}")
    text = text.replace('name = "builtin"', 'name = "big_store"')
    path = tmp_path / "big_store.toml"
    path.write_text(text)
    return path


def test_sweep_takes_the_design_and_records_it(tmp_path):
    spec = _small(tmp_path, "gain_cell_pulse", v_store=3, t_pulse=2)
    plain = Sweep(spec, workers=2, progress=False).run()
    named = Sweep(spec, workers=2, progress=False, design="builtin").run()
    assert plain.table.equals(named.table)
    assert plain.metadata["design"] == "builtin"
    assert plain.metadata["design_sha256"] == load_design("builtin").sha256
    other = Sweep(spec, workers=2, progress=False,
                  design=str(_design_with_c_store(tmp_path, 20e-15))).run()
    assert other.metadata["design"] == "big_store"
    assert other.metadata["parameters"]["c_store"] == 20e-15
    # A larger storage capacitor: the read disturbs the storage node less.
    assert not other.table["stored_voltage_end_V"].equals(plain.table["stored_voltage_end_V"])
    # The fit's provenance copies the sidecar's design and hash.
    output = tmp_path / "pulse.parquet"
    write_outputs(other, output, "parquet")
    provenance = provenance_from_table(output)
    assert provenance["design"] == "big_store"
    assert provenance["design_sha256"] == other.metadata["design_sha256"]


def test_gain_cell_iv_follows_the_design(tmp_path):
    """A design's c_store reaches the netlist: on the DC I-V the storage capacitor carries no
    current, so change a read device's size instead and see the table move."""
    spec = _small_iv(tmp_path)
    base = Sweep(spec, workers=2, progress=False).run()
    text = BUILTIN.read_text().replace("w_read_n_m = 100e-9", "w_read_n_m = 300e-9")
    path = tmp_path / "wide.toml"
    path.write_text(text.replace('name = "builtin"', 'name = "wide"'))
    wide = Sweep(spec, workers=2, progress=False, design=str(path)).run()
    assert wide.metadata["parameters"]["w_read_n"] == 300e-9
    column = [c for c in base.table.columns if c.startswith("i_")][0]
    assert not base.table[column].equals(wide.table[column])
    stored = Sweep(spec, workers=2, progress=False,
                   design=str(_design_with_c_store(tmp_path, 5e-15))).run()
    assert stored.metadata["parameters"]["c_store"] == 5e-15


def test_spec_parameters_and_set_override_the_design(tmp_path):
    spec = _small_iv(tmp_path)
    sweep = Sweep(spec, overrides={"c_store": 3e-15}, workers=1, progress=False)
    assert sweep.fixed["c_store"] == 3e-15
    assert sweep.fixed["v_bl"] == 0.45                       # the spec's [parameters]
    assert "v_in" not in sweep.fixed and "v_store" not in sweep.fixed   # swept axes


def test_design_of_another_process_is_refused(tmp_path):
    text = BUILTIN.read_text().replace('process = "builtin"', 'process = "sky130"')
    path = tmp_path / "elsewhere.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match="is for process sky130, and the models are builtin"):
        Sweep(_small_iv(tmp_path), workers=1, progress=False, design=str(path))


def test_sweep_design_brings_its_process_and_refuses_other_models(tmp_path):
    # --design alone runs on its process's models (as regen and validate take it), so a
    # shipped spec that names builtin models is not refused for --design sky130.
    refused = invoke("sweep", "gain_cell_write", "--design", "sky130", "--models", "builtin",
                     "-o", tmp_path / "w.parquet")
    assert "--design sky130 is for process sky130, and --models is builtin" in error_line(refused)
    if HAVE_SKY130:
        result = invoke("sweep", "gain_cell_write", "--design", "sky130",
                        "-o", tmp_path / "w.parquet")
        assert result.exit_code == 0, result.output
        sidecar = json.loads((tmp_path / "w.json").read_text())
        assert sidecar["models"].startswith("sky130")


def test_copied_design_file_keeps_its_hash(tmp_path):
    copy = tmp_path / "copy.toml"
    shutil.copy(BUILTIN, copy)
    assert load_design(copy).sha256 == load_design("builtin").sha256


def test_default_design_leaves_a_users_testbench_alone():
    """tests/data/divergent.cir declares v_in = 0.1: the builtin design's read-on level is not
    forced on a netlist outside netlists/ unless --design asks for it."""
    from conftest import DATA

    spec = spec_module.load(DATA / "divergent.toml")
    assert Sweep(spec, workers=1, progress=False).design is None
    asked = Sweep(spec, workers=1, progress=False, design="builtin")
    assert asked.fixed["v_in"] == 0.9


def test_a_comment_does_not_change_the_design_hash(tmp_path):
    """The hash is of the values: a comment edit must not make committed fits look stale,
    while a changed value must change it."""
    text = BUILTIN.read_text()
    (tmp_path / "commented.toml").write_text("# a new comment\n" + text)
    assert load_design(tmp_path / "commented.toml").sha256 == load_design("builtin").sha256
    (tmp_path / "changed.toml").write_text(text.replace("c_store_F = 2e-15", "c_store_F = 3e-15"))
    assert load_design(tmp_path / "changed.toml").sha256 != load_design("builtin").sha256


@pytest.mark.skipif(not HAVE_SKY130, reason="sky130 models not installed: run 'make sky130'")
def test_a_bundle_of_another_process_or_design_is_refused_in_one_line(tmp_path):
    line = error_line(invoke("validate", "tile", "--models", "sky130:tt", "--fits",
                             resources.fits_for("builtin"), "--rows", 2, "--cols", 2))
    assert "was fitted on builtin:tt, and the tile runs sky130:tt" in line
    # Same process, another design: the bundle records the design it was fitted on.
    other = tmp_path / "other.toml"
    other.write_text((DESIGNS / "sky130.toml").read_text().replace(
        "c_store_F = 20e-15", "c_store_F = 25e-15"))
    line = error_line(invoke("validate", "tile", "--design", other, "--fits",
                             resources.fits_for("sky130"), "--rows", 2, "--cols", 2))
    assert "was fitted on design sky130" in line and "runs design sky130" in line
    line = error_line(invoke("validate", "tile", "--design", "sky130", "--models", "builtin"))
    assert "--design sky130 is for process sky130, and --models is builtin" in line


def test_regen_of_a_design_of_your_own_needs_fits(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text((DESIGNS / "builtin.toml").read_text().replace('name = "builtin"',
                                                                  'name = "mine"'))
    line = error_line(invoke("regen", "--design", mine, "--reports", tmp_path / "r"))
    assert "a design of your own needs --fits DIR" in line
