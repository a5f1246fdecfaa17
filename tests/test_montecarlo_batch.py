"""Monte Carlo samples as instances of one netlist: the same samples as one run per sample on
builtin (gcsim draws the Pelgrom shifts), the same distribution on sky130 (the PDK draws per
device instance), in a fraction of the runs. Real ngspice throughout."""

import numpy as np
import pytest
from scipy import stats

from gcsim.characterize import spec as spec_module
from gcsim.characterize.cache import ResultCache
from gcsim.characterize.sweep import Sweep
from gcsim.core import resources
from gcsim.spice import process as processes

from conftest import HAVE_SKY130

MISMATCH = resources.CHARACTERIZATION / "gain_cell_mismatch.toml"


def _sweep(runs: int, models: str, instances: bool):
    raw = spec_module.load(MISMATCH).raw
    raw = {**raw, "montecarlo": {**raw["montecarlo"], "runs": runs}}
    spec = spec_module.from_dict(raw, "mc.toml", MISMATCH.parent, MISMATCH)
    sweep = Sweep(spec, models=models, cache=ResultCache(enabled=False), progress=False)
    sweep.sample_instances = instances
    return sweep.run()


def test_builtin_instances_are_the_per_run_samples():
    batched = _sweep(12, "builtin", True)
    per_run = _sweep(12, "builtin", False)
    assert batched.metadata["stats"]["runs"] == 1 and per_run.metadata["stats"]["runs"] == 12
    assert batched.table.columns.tolist() == per_run.table.columns.tolist()
    np.testing.assert_allclose(batched.table.i_out_A, per_run.table.i_out_A, rtol=1e-9,
                               atol=1e-18)
    assert (batched.table.mc_run == per_run.table.mc_run).all()


def test_a_sample_spans_its_whole_sweep_in_one_instance():
    """Within one sample the current is monotonic in the stored voltage (one circuit swept),
    and two samples differ (two circuits)."""
    table = _sweep(3, "builtin", True).table
    curves = table.pivot(index="stored_voltage_V", columns="mc_run", values="i_out_A")
    assert (np.diff(curves.to_numpy(), axis=0) > 0).all()
    assert not np.allclose(curves[0], curves[1])


@pytest.mark.skipif(not HAVE_SKY130, reason="sky130 models not installed: run 'make sky130'")
def test_sky130_instances_draw_the_pdk_distribution():
    batched = _sweep(60, "sky130:tt", True)
    per_run = _sweep(60, "sky130:tt", False)
    assert batched.metadata["stats"]["runs"] < 5 <= per_run.metadata["stats"]["runs"]
    for table in (batched.table, per_run.table):
        assert table.i_out_A.notna().all()
    for level in ("max", "min"):
        values = [t[t.stored_voltage_V == getattr(t.stored_voltage_V, level)()].i_out_A
                  for t in (batched.table, per_run.table)]
        # Different draws, one distribution: a KS test at 1 % (seeded, so deterministic).
        assert not np.array_equal(values[0].to_numpy(), values[1].to_numpy())
        assert stats.ks_2samp(*values).pvalue > 0.01
        assert values[0].std() > 0 and 0.5 < values[0].std() / values[1].std() < 2


@pytest.mark.skipif(not HAVE_SKY130, reason="sky130 models not installed: run 'make sky130'")
def test_sky130_netlists_leave_the_device_file_out_only_when_every_device_is_a_copy():
    models = processes.resolve("sky130:tt")
    trimmed = "\n".join(models.lines(None, {"read_nmos": {(0.8e-6, 2e-6)}}))
    assert ".include" in trimmed and not any(
        line.startswith(".include") and line.endswith("models_fet.spice")
        for line in trimmed.splitlines())
    assert "parameters_fet_tt.spice" in trimmed
    assert ".lib " not in trimmed
    whole = "\n".join(models.lines())
    assert f".lib {models.library} tt" in whole
