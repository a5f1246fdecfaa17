"""Templates: declared parameters only, checked values only, faithful batching."""

import pytest

from gcsim.core import resources
from gcsim.core.errors import ParameterError, SpecError
from gcsim.spice.process import resolve
from gcsim.spice.template import Template, save_card, vector_name

MODELS = resolve("builtin").lines()


@pytest.fixture(scope="module")
def pulse():
    return Template.load(resources.NETLISTS / "gain_cell_pulse.cir")


def test_defaults_and_globals(pulse):
    assert pulse.defaults["t_pulse"] == 15e-9
    assert pulse.defaults["v_mid"] == 0.45
    # temp_c, c_store and vdd feed .options, so they cannot differ between instances of one run.
    assert pulse.global_params == {"temp_c", "c_store", "vdd"}
    assert pulse.element_line("VBL").startswith("VBL bl 0")


def test_render_replaces_values_models_and_analysis(pulse):
    text = pulse.render({"v_store": "0.3", "t_pulse": "5n"}, MODELS, [".tran 1e-10 1.8e-08"])
    assert ".param v_store=0.3\n" in text and ".param t_pulse=5e-09\n" in text
    assert "models/builtin.lib tt" in text and str(resources.MODELS) in text
    assert text.count(".tran") == 1 and ".control" not in text and "plot" not in text
    assert text.rstrip().endswith(".end")
    # Included files are inlined, so the text (and its hash) covers the cell itself.
    assert ".subckt gain_cell " in text


def test_undeclared_name_and_bad_value_are_refused(pulse):
    with pytest.raises(ParameterError, match="declares no parameter 'v_stor'"):
        pulse.render({"v_stor": 0.3}, MODELS, [])
    with pytest.raises(ParameterError, match="not a number"):
        pulse.render({"v_store": "1\n.control\nshell touch /tmp/x\n.endc"}, MODELS, [])
    with pytest.raises(ParameterError):
        pulse.render({"v_store": 0.3}, MODELS, [], instances=[{"v_store": "0.1;shell"}])


def test_instances_wrap_the_testbench(pulse):
    text = pulse.render({}, MODELS, [".tran 1e-10 1.8e-08"],
                        instances=[{"v_store": 0.1}, {"v_store": 0.8}],
                        save=[save_card("v(q_int)", 0), save_card("i(VBL)", 1)])
    lines = text.splitlines()
    assert ".subckt gcsim_point params: v_store=0.45" in lines
    assert "xp0 gcsim_point v_store=0.1" in lines and "xp1 gcsim_point v_store=0.8" in lines
    assert ".save v(xp0.q_int) i(v.xp1.vbl)" in lines
    assert vector_name("i(VBL)", 1) == "v.xp1.vbl#branch"
    assert vector_name("v(q_int)") == "q_int"
    with pytest.raises(ParameterError, match="global"):
        pulse.render({}, MODELS, [], instances=[{"temp_c": 27}])


def test_template_defaults_must_be_literal(tmp_path):
    path = tmp_path / "bad.cir"
    path.write_text("* bad\n.param a=1 b={a*2}\nR1 x 0 {b}\n.end\n")
    with pytest.raises(SpecError, match="literal numbers"):
        Template.load(path)
