"""The sweep engine on real ngspice: cache, resume, failure isolation, atomic outputs."""

import json

import pandas as pd
import pytest

from gcsim.spice import engine
from gcsim.core import resources
from gcsim.characterize import spec
from gcsim.core.errors import NgspiceUnavailable, SpecError
from gcsim.characterize.sweep import Sweep, write_outputs

from conftest import DATA


def small_pulse(batch=2):
    raw = spec.load(resources.CHARACTERIZATION / "gain_cell_pulse.toml").raw
    raw = {**raw, "analysis": {**raw["analysis"], "batch": batch},
           "axes": [dict(raw["axes"][0], num=2, stop=0.9), dict(raw["axes"][1], num=3)]}
    return spec.from_dict(raw, name="small_pulse", base=resources.CHARACTERIZATION)


def test_dc_grid_is_one_run_and_matches_instances():
    raw = spec.load(resources.CHARACTERIZATION / "gain_cell_iv.toml").raw
    raw = {**raw, "axes": [dict(raw["axes"][0], num=7), dict(raw["axes"][1], num=4)]}
    grid = Sweep(spec.from_dict(raw, base=resources.CHARACTERIZATION), progress=False).run()
    assert grid.metadata["stats"]["runs"] == 1
    # The same points as separate .op instances (no dc_source) must agree.
    for axis in raw["axes"]:
        axis.pop("dc_source")
    raw["analysis"] = {"type": "op"}
    op = Sweep(spec.from_dict(raw, base=resources.CHARACTERIZATION), progress=False).run()
    merged = grid.table.merge(op.table, on=["stored_voltage_V", "v_in_V"])
    assert len(merged) == 28
    assert (merged.i_out_A_x - merged.i_out_A_y).abs().max() < 1e-12


def test_cache_hit_on_unchanged_sweep():
    first = Sweep(small_pulse(), progress=False).run()
    assert first.metadata["stats"]["runs"] == 3 and first.metadata["stats"]["cache_hits"] == 0
    second = Sweep(small_pulse(), progress=False).run()
    assert second.metadata["stats"]["runs"] == 0 and second.metadata["stats"]["cache_hits"] == 3
    pd.testing.assert_frame_equal(first.table, second.table)
    # A changed parameter is a different netlist, so a different key.
    third = Sweep(small_pulse(), overrides={"c_store": "3f"}, progress=False).run()
    assert third.metadata["stats"]["runs"] == 3


def test_resume_after_interrupt(monkeypatch, tmp_path):
    real_run_many = engine.run_many

    def interrupted(requests, workers=1):
        for count, item in enumerate(real_run_many(requests, 1)):
            yield item
            if count == 0:
                raise KeyboardInterrupt

    monkeypatch.setattr(engine, "run_many", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Sweep(small_pulse(), progress=False).run()
    monkeypatch.setattr(engine, "run_many", real_run_many)
    resumed = Sweep(small_pulse(), progress=False).run()
    assert resumed.metadata["stats"]["cache_hits"] == 1
    assert resumed.metadata["stats"]["runs"] == 2
    assert len(resumed.table) == 6


def test_failed_point_is_isolated_with_ngspice_message():
    result = Sweep(spec.load(DATA / "divergent.toml"), progress=False).run()
    assert list(result.table.gain_1) == [0.0, 0.5, 2.0, 3.0]
    assert result.table.v_out_V.tolist() == pytest.approx([0.1, 0.2, -0.1, -0.05])
    assert len(result.failures) == 1 and result.failures[0]["gain"] == 1.0
    assert "singular matrix" in result.failures[0]["message"]
    assert result.metadata["failed_points"] == result.failures


def test_timeout_is_recorded(monkeypatch):
    loaded = spec.load(DATA / "divergent.toml")
    loaded.timeout_s = 1e-3
    result = Sweep(loaded, progress=False).run()
    assert len(result.table) == 0 and len(result.failures) == 5
    assert all("time limit" in failure["message"] for failure in result.failures)


def test_outputs_are_atomic_and_self_describing(tmp_path):
    result = Sweep(small_pulse(), progress=False).run()
    output = tmp_path / "pulse.parquet"
    sidecar = write_outputs(result, output, "parquet")
    table = pd.read_parquet(output)
    assert list(table.columns) == ["stored_voltage_V", "t_pulse_s", "charge_C",
                                   "stored_voltage_end_V", "energy_J"]
    meta = json.loads(sidecar.read_text())
    for key in ("spec", "netlist_sha256", "model_files_sha256", "ngspice_version",
                "gcsim_version", "date", "failed_points"):
        assert key in meta
    assert meta["ngspice_version"].startswith("ngspice")
    # A write that fails leaves the previous files untouched and no temporaries behind.
    before = output.read_bytes()
    (tmp_path / "blocked").mkdir()
    with pytest.raises(Exception):
        write_outputs(result, tmp_path / "blocked", "parquet")
    assert output.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_ngspice_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", "/nonexistent/libngspice.so")
    with pytest.raises(NgspiceUnavailable, match="NGSPICE_LIBRARY_PATH"):
        Sweep(small_pulse(), progress=False).run()


def test_dc_source_must_take_the_parameter():
    raw = spec.load(resources.CHARACTERIZATION / "gain_cell_iv.toml").raw
    raw = {**raw, "axes": [dict(raw["axes"][0], dc_source="VIN"), raw["axes"][1]]}
    with pytest.raises(SpecError, match="does not take its value"):
        Sweep(spec.from_dict(raw, base=resources.CHARACTERIZATION), progress=False)
