"""SPICE's own accuracy (issue 17): every shipped testbench and the tile netlist set ngspice's
charge and current tolerances from the circuit's scale, and ngspice, given a shipped design's
values, takes tolerances finer than the figures they would otherwise swamp: ngspice's defaults
(chgtol 10 fC, abstol 1 pA) exceed the builtin storage node's whole charge and its leak.

Each check reads the tolerances back from ngspice itself (its `option` listing), from the very
.param and .options lines a run would send."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gcsim.core import resources
from gcsim.core.design import load_design, shipped_designs
from gcsim.spice.process import resolve
from gcsim.spice.run import new_ngspice
from gcsim.spice.template import Template
from gcsim.validate import tile as tile_module
from gcsim.validate.timing import TileParams

NGSPICE_DEFAULTS = {"chgtol": 1e-14, "abstol": 1e-12}
CELL_TESTBENCHES = ("gain_cell.cir", "gain_cell_pulse.cir", "gain_cell_retention.cir",
                    "gain_cell_write.cir")
# Below this fraction of the charge a figure resolves, a tolerance cannot move the figure.
FRACTION = 0.01
_OPTION = re.compile(r"^\s*(abstol|chgtol|reltol)\s*\([^)]*\)\s*=\s*(\S+)", re.IGNORECASE)


def _ngspice_tolerances(lines: list[str]) -> dict[str, float]:
    """The tolerances ngspice runs with after reading `lines` (.param / .options) in a
    trivial circuit."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceCommandError

    shared = new_ngspice()
    shared.load_circuit("\n".join(["* tolerances", *lines, "V1 a 0 1", "R1 a 0 1k", ".end"]))
    shared.exec_command("op")
    shared.clear_output()
    try:
        shared.exec_command("option")
    except NgSpiceCommandError:   # PySpice misreads the listing's end; the lines are there
        pass
    found = {}
    for line in shared._stdout:
        match = _OPTION.match(line)
        if match:
            found[match[1].lower()] = float(match[2])
    return found


def _testbench_tolerances(name: str, design_name: str) -> dict[str, float]:
    """The tolerances of testbench `name` run on a shipped design, as ngspice takes them."""
    template = Template.load(resources.NETLISTS / name)
    values = {**template.defaults, **load_design(design_name).template_parameters()}
    used = sorted(Template.referenced(template.options) & set(template.defaults))
    params = [".param " + " ".join(f"{p}={values[p]!r}" for p in used)] if used else []
    return _ngspice_tolerances(params + template.options)


def _stored_lsb_charge(design) -> float:
    dac = design.dac
    return design.cell.c_store_F * (dac.stored_max_V - dac.stored_min_V) / (dac.stored_levels - 1)


def test_every_testbench_sets_its_charge_tolerance_and_the_cells_their_current_tolerance():
    for path in sorted(resources.NETLISTS.glob("*.cir")):
        options = " ".join(Template.load(path).options).lower()
        if path.name == "gain_cell_read_disturb.cir":
            continue   # its own, tighter control: test_the_read_disturb_testbench_holds_microvolts
        assert "chgtol=" in options, path.name
        if path.name in CELL_TESTBENCHES:
            assert "abstol=" in options, path.name


@pytest.mark.parametrize("design_name", shipped_designs())
def test_cell_tolerances_resolve_a_fraction_of_an_lsb_over_the_retention_window(design_name):
    design = load_design(design_name)
    lsb_charge = _stored_lsb_charge(design)
    window_s = design.timing.token_period_s * design.timing.window_tokens
    for name in CELL_TESTBENCHES:
        tol = _testbench_tolerances(name, design_name)
        assert tol["chgtol"] <= FRACTION * lsb_charge, name
        # a current error of abstol held over the window moves the node by under 1 % of an LSB
        assert tol["abstol"] * window_s <= FRACTION * lsb_charge, name
        assert tol["chgtol"] < NGSPICE_DEFAULTS["chgtol"] and \
            tol["abstol"] < NGSPICE_DEFAULTS["abstol"], name


@pytest.mark.parametrize("design_name", shipped_designs())
def test_periphery_tolerances_resolve_a_fraction_of_the_signed_lsb(design_name):
    design = load_design(design_name)
    # the signed converter's count step: full scale over (output_levels - 1) / 2 steps
    lsb = design.periphery.i_ref_signed_A * design.timing.t_max_s \
        / ((design.dac.output_levels - 1) / 2)
    for name in ("sense_amp.cir", "charge_to_pulse.cir", "signed_converter.cir"):
        tol = _testbench_tolerances(name, design_name)
        assert tol["chgtol"] <= FRACTION * lsb, name
        assert tol["abstol"] * design.timing.t_max_s <= FRACTION * lsb, name


def test_the_design_values_reach_the_tolerances():
    # sky130's storage node holds 20x the charge at twice the supply: its tolerances scale up
    # with it; a netlist that ignored the design would give builtin's figures on both.
    builtin = _testbench_tolerances("gain_cell_retention.cir", "builtin")
    sky130 = _testbench_tolerances("gain_cell_retention.cir", "sky130")
    scale = (load_design("sky130").cell.c_store_F * load_design("sky130").operating.vdd_V) / (
        load_design("builtin").cell.c_store_F * load_design("builtin").operating.vdd_V)
    assert sky130["chgtol"] / builtin["chgtol"] == pytest.approx(scale, rel=1e-6)
    assert sky130["abstol"] / builtin["abstol"] == pytest.approx(scale, rel=1e-6)


@pytest.mark.parametrize("design_name", shipped_designs())
def test_the_tile_runs_with_the_readout_testbench_tolerances(design_name):
    design = load_design(design_name)
    params = TileParams.defaults(design=design)
    low, high = params.stored_range
    tile = tile_module.Tile(np.array([1.0, 0.5]), np.full((2, 2), high), np.full((2, 2), low))
    if design_name == "builtin":
        text = tile_module.build(tile, params, resolve(design.models), "k").text
        header = [line for line in text.splitlines()[:200]
                  if line.split(None, 1)[0].lower() in (".param", ".options")
                  and "temp=" not in line]
    else:    # building sky130's netlist would load the PDK: its header lines are the same code
        header = tile_module._tolerance_options(params)
    assert _ngspice_tolerances(header) == pytest.approx(
        _testbench_tolerances("charge_to_pulse.cir", design_name))
    assert _ngspice_tolerances(header)["chgtol"] < NGSPICE_DEFAULTS["chgtol"]


def test_the_read_disturb_testbench_holds_microvolts():
    """Its shift is microvolts on a node near a volt: relative and absolute voltage tolerances
    far below ngspice's defaults (reltol 1e-3, vntol 1 uV), and the cell's current tolerance."""
    template = Template.load(resources.NETLISTS / "gain_cell_read_disturb.cir")
    text = " ".join(template.options)
    reltol = float(re.search(r"reltol=(\S+)", text).group(1))
    vntol = float(re.search(r"vntol=(\S+)", text).group(1))
    assert reltol <= 1e-5 and vntol <= 1e-9
    assert "abstol" in text
