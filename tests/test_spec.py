"""Spec validation: a malformed spec gets one line that names the key."""

import pytest

from gcsim.core import resources
from gcsim.characterize import spec
from gcsim.core.errors import SpecError


def base():
    return {
        "netlist": "gain_cell.cir",
        "analysis": {"type": "dc"},
        "axes": [{"param": "v_store", "column": "stored_voltage_V", "dc_source": "VSN",
                  "start": 0, "stop": "900m", "num": 10}],
        "measure": [{"column": "i_out_A", "vector": "i(VBL)"}],
    }


def test_committed_specs_load():
    for path in sorted(resources.CHARACTERIZATION.glob("*.toml")):
        loaded = spec.load(path)
        assert loaded.n_points >= 1 and loaded.measures


def test_iv_spec_covers_the_published_surface():
    iv = spec.load(resources.CHARACTERIZATION / "gain_cell_iv.toml")
    stored, v_in = iv.axes
    assert len(stored.values) >= 50 and min(stored.values) == 0 and max(stored.values) == 0.9
    assert len(v_in.values) >= 51 and min(v_in.values) == 0.45 and max(v_in.values) == 0.9


def test_grid_and_suffixes():
    loaded = spec.from_dict(base())
    assert loaded.axes[0].values[-1] == pytest.approx(0.9)
    assert loaded.n_points == 10 and len(loaded.grid()) == 10


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d.update(netlsit="x"), "netlsit"),
    (lambda d: d.pop("netlist"), "netlist"),
    (lambda d: d.update(netlist="missing.cir"), "netlist"),
    (lambda d: d["analysis"].update(type="ac"), "analysis.type"),
    (lambda d: d["axes"][0].update(num="ten"), "axes[0].num"),
    (lambda d: d["axes"][0].update(num=0), "axes[0].num"),
    (lambda d: d["axes"][0].update(start="1\n.endc"), "axes[0].start"),
    (lambda d: d["axes"][0].update(colour="red"), "axes[0].colour"),
    (lambda d: d["axes"][0].pop("column"), "axes[0].column"),
    (lambda d: d["axes"][0].update(values=[1, 2]), "axes[0]"),
    (lambda d: d["axes"][0].update(param="v store"), "axes[0].param"),
    (lambda d: d.update(measure=[]), "measure"),
    (lambda d: d["measure"][0].update(vector="shell rm"), "measure vector"),
    (lambda d: d["measure"][0].update(at="end"), "measure[0]"),
    (lambda d: d.update(parameters={"v_bl": "abc"}), "parameters.v_bl"),
    (lambda d: d.update(parameters={"v_store": 0.1}), "both fixed"),
    (lambda d: d["analysis"].update(timeout_s=-1), "analysis.timeout_s"),
])
def test_malformed_specs_name_the_key(mutate, key):
    raw = base()
    mutate(raw)
    with pytest.raises(SpecError) as info:
        spec.from_dict(raw, name="t.toml", base=resources.CHARACTERIZATION)
    assert key in str(info.value) and "\n" not in str(info.value)


def test_not_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("netlist = [unclosed\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        spec.load(path)
