"""Specs in design terms: one spec serves every design, and an expression can do nothing but
arithmetic on the design's numbers."""

import tomllib

import pytest

from gcsim.characterize import spec
from gcsim.core import resources
from gcsim.core.design import choose_design, default_fits, load_design, process_of
from gcsim.core.errors import ParameterError, SpecError
from gcsim.core.terms import evaluate, is_expression

TERMS = {"vdd": 1.8, "v_mid": 0.9, "t_max": 15e-9}


@pytest.mark.parametrize("text, value", [
    ("vdd", 1.8), ("v_mid - 0.45", 0.45), ("-(vdd) / 2", -0.9), ("2 * (v_mid + 1e-3)", 1.802),
    ("t_max + 3.6n", 18.6e-9), ("VDD", 1.8), ("5/3 * v_mid", 1.5),
])
def test_expressions_evaluate(text, value):
    assert evaluate(text, TERMS) == pytest.approx(value, rel=1e-12)
    assert is_expression(text)


@pytest.mark.parametrize("text, message", [
    ("vdda", "no term 'vdda'; did you mean vdd"),
    ("v_mid -", "ends too early"),
    ("1 / (v_mid - v_mid)", "division by zero"),
    ("(v_mid", "not closed"),
    ('__import__("os").system("touch x")', "is not a number"),
    ("v_mid; rm -rf /", "is not a number"),
    ("v_mid ** 2", "unexpected '*'"),
    ("x" * 300, "at most 200 characters"),
])
def test_bad_expressions_are_one_line(text, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace("*", r"\*")):
        evaluate(text, TERMS)


def test_numbers_are_not_expressions():
    assert not is_expression("15n") and not is_expression(0.45) and not is_expression("1e400")


def test_one_spec_serves_every_design():
    path = resources.CHARACTERIZATION / "gain_cell_write.toml"
    builtin = spec.load(path)
    sky130 = builtin.for_design(load_design("sky130"))
    targets = (builtin.axes[0].values, sky130.axes[0].values)
    assert targets[0][0] == 0.0 and targets[0][-1] == pytest.approx(0.9)
    assert targets[1][0] == pytest.approx(0.05) and targets[1][-1] == pytest.approx(1.75)
    assert builtin.parameters["v_init"] == 0.45 and sky130.parameters["v_init"] == 0.9


def test_every_shipped_spec_resolves_on_every_shipped_design():
    for path in sorted(resources.CHARACTERIZATION.glob("*.toml")):
        raw = tomllib.loads(path.read_text())
        for design in ("builtin", "sky130"):
            resolved = spec.from_dict(raw, path.name, path.parent, path, load_design(design))
            assert resolved.measures


def test_a_design_term_without_a_design_is_one_line(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('netlist = "gain_cell.cir"\nmodels = "my.lib:tt"\n[analysis]\ntype = "op"\n'
                    '[parameters]\nv_store = "v_mid"\n[[measure]]\ncolumn = "i_A"\n'
                    'vector = "i(VBL)"\n')
    with pytest.raises(SpecError, match="parameters.v_store: 'v_mid' is written in design "
                                        "terms, and this sweep has no design"):
        spec.load(user)


def test_designs_and_models_choose_each_other():
    assert process_of("sky130:ss") == "sky130" and process_of("builtin") == "builtin"
    design, models = choose_design("sky130", None)
    assert design.name == "sky130" and models == "sky130:tt"
    design, models = choose_design(None, "sky130:ss")
    assert design.name == "sky130" and models == "sky130:ss"
    assert choose_design(None, None) == (None, None)
    with pytest.raises(SpecError, match="--design sky130 is for process sky130, and --models "
                                        "is builtin:tt"):
        choose_design("sky130", "builtin:tt")
    assert default_fits(load_design("builtin")) == resources.fits_for("builtin")
    assert default_fits(None) == resources.FITS
