"""The hardware model takes its operating point (DAC range, mid-rail, read level, T_max, token
period) from the design its fits bundle carries (fits/design.toml); a bundle without one gets
the published point and says so; one whose design is not the fits' is refused."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gcsim.cli import main
from gcsim.core import resources
from gcsim.core.design import DESIGNS, load_design
from gcsim.fit.bundle import load_bundle
from gcsim.fit.schema import FitFileError
from gcsim.hw import PAPER, PAPER_OPERATING_POINT, OperatingPoint, load_fitted_models
from gcsim.hw.bundle import DESIGN_STAND_IN
from gcsim.pipeline import compare_fits, context_options, headline, regen_options
from gcsim.simulate import SimulationConfig, simulate_attention
from gcsim.simulate.attention import prepare_inputs

FITS = resources.FITS


def _bundle_copy(tmp_path: Path, design_text: str | None = None, rehash: bool = True) -> Path:
    """A copy of the committed bundle, its design.toml replaced by `design_text` (None: the
    committed one); with `rehash`, the fits' provenance records the new design's hash."""
    copy = tmp_path / "fits"
    shutil.copytree(FITS, copy)
    if design_text is not None:
        (copy / "design.toml").write_text(design_text)
        if rehash:
            sha = load_design(copy / "design.toml").sha256
            for path in copy.glob("*.json"):
                data = json.loads(path.read_text())
                if data["provenance"].get("design_sha256"):
                    data["provenance"]["design_sha256"] = sha
                path.write_text(json.dumps(data, indent=2))
    return copy


def _design_1v8() -> str:
    """builtin.toml at 1.8 V: supply, mid-rail, read levels and DAC range doubled."""
    text = (DESIGNS / "builtin.toml").read_text()
    for old, new in (("vdd_V = 0.9 ", "vdd_V = 1.8 "), ("mid_rail_V = 0.45 ", "mid_rail_V = 0.9 "),
                     ("read_on_n_V = 0.9 ", "read_on_n_V = 1.8 "), ("rest_V = 0.45 ", "rest_V = 0.9 "),
                     ("stored_max_V = 0.9", "stored_max_V = 1.8"),
                     ('name = "builtin"', 'name = "builtin_1v8"')):
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _inputs(tokens=96, dim=8, seed=3, high=0.9):
    rng = np.random.default_rng(seed)
    return rng.random((tokens, dim)), rng.random((tokens, dim)) * high, rng.random((tokens, dim)) * high


def test_published_operating_point_is_the_papers():
    point = PAPER_OPERATING_POINT
    assert (point.stored_min_V, point.stored_max_V, point.mid_rail_V) == (0.0, PAPER.supply_V,
                                                                          PAPER.mid_rail_V)
    assert (point.stored_levels, point.query_levels, point.output_levels) == (8, 16, 32)
    assert point.t_max_s == PAPER.pulse_max_s and point.token_period_s == PAPER.token_period_s
    assert OperatingPoint.from_design(load_design("builtin")) == point
    for mode in ("paper", "linear"):
        from gcsim.hw import model_for_mode
        assert model_for_mode(mode).operating_point == point


def test_committed_bundle_carries_the_builtin_design_and_is_bit_identical():
    bundle = load_bundle(FITS)
    assert bundle.design is not None and bundle.design.sha256 == load_design("builtin").sha256
    model = load_fitted_models(FITS)
    assert model.operating_point == PAPER_OPERATING_POINT
    assert not any("design.toml" in line for line in model.notes["stand_ins"])
    q, k, v = _inputs()
    config = SimulationConfig(window=48, array_size=16)
    ours = simulate_attention(q, k, v, "fitted", model=model, config=config)
    published = dataclasses.replace(model, operating_point=PAPER_OPERATING_POINT)
    reference = simulate_attention(q, k, v, "fitted", model=published, config=config)
    assert np.array_equal(ours.output, reference.output)
    assert np.array_equal(ours.S, reference.S) and np.array_equal(ours.phi, reference.phi)
    # ideal mode takes only the operating point from a model
    assert np.array_equal(simulate_attention(q, k, v, "ideal", config=config).output,
                          simulate_attention(q, k, v, "ideal", model=model, config=config).output)


def test_decay_age_window_comes_from_the_design():
    builtin = load_design("builtin")
    assert context_options("decay", builtin) == context_options("decay")
    assert context_options("decay")["age_max_s"] == PAPER.window * PAPER.token_period_s


def test_regen_reads_the_nonlinearity_at_the_designs_read_on_level(tmp_path):
    builtin = load_design("builtin")
    assert regen_options("nonlinearity", builtin) == regen_options("nonlinearity")
    assert regen_options("nonlinearity")["v_in_V"] == PAPER.read_on_V
    path = tmp_path / "builtin_1v8.toml"
    path.write_text(_design_1v8())
    assert regen_options("nonlinearity", load_design(path))["v_in_V"] == 1.8
    # The design's [fits] table sets the orders; without a design, the regen defaults.
    assert regen_options("charge_per_pulse", builtin) == {
        "order": builtin.fits.charge_order, "edge_order": 3, "objective": "lsq"}
    assert regen_options("charge_per_pulse")["order"] == 5


def test_headline_states_the_records_levels():
    record = load_bundle(FITS).records["cell_conductance"]
    record.parameters["v_mid"]["value"] = 0.9
    record.valid_range["stored_voltage_V"] = [0.0, 1.8]
    labels = [label for label, _ in headline(record)]
    assert labels[-1] == "g at 0 / 0.9 / 1.8 V"


def test_summary_figures_take_the_sweeps_mid_rail():
    import pandas as pd

    from gcsim.characterize.summary import format_value, iv_figures, retention_figures

    iv = pd.DataFrame({"v_in_V": [0.9, 0.9, 1.8, 1.8], "stored_voltage_V": [0.0, 1.8] * 2,
                       "i_out_A": [1e-9, 2e-9, -1e-6, 1e-6]})
    figures = iv_figures(iv, 0.9)
    assert figures["i_out_at_1p8V_A"] == 1e-6 and figures["max_abs_i_at_rest_A"] == 2e-9
    assert np.isnan(iv_figures(iv, None)["max_abs_i_at_rest_A"])
    retention = pd.DataFrame({"initial_voltage_V": 1.8, "temperature_C": 27.0,
                              "time_s": [0.0, 1e-3, 2e-3], "stored_voltage_V": [1.8, 1.4, 1.2]})
    figures = retention_figures(retention, 0.9)
    assert figures["t_1_over_e_from_1.8V_at_27C_s"] == 2e-3
    assert figures["drift_from_1.8V_at_27C_in_0.002s_V"] == pytest.approx(-0.6)
    assert retention_figures(retention, None) == {}
    # A cell that holds its charge over the whole sweep (sky130) never reaches 1/e.
    held = retention.assign(stored_voltage_V=[1.8, 1.7996, 1.7993])
    figures = retention_figures(held, 0.9)
    assert format_value("t_1_over_e_from_1.8V_at_27C_s",
                        figures["t_1_over_e_from_1.8V_at_27C_s"]) == "beyond the sweep"
    assert format_value("drift_from_1.8V_at_27C_in_0.002s_V",
                        figures["drift_from_1.8V_at_27C_in_0.002s_V"]) == "-0.7 mV"


def test_a_1v8_design_moves_the_dac_range_and_mid_rail(tmp_path):
    copy = _bundle_copy(tmp_path, _design_1v8())
    model = load_fitted_models(copy)
    point = model.operating_point
    assert (point.stored_min_V, point.stored_max_V, point.mid_rail_V) == (0.0, 1.8, 0.9)
    assert point.read_on_V == 1.8
    # The DAC clips at 1.8 V, not 0.9 V, and its levels span 0..1.8 V.
    q, k, v = _inputs(high=2.5)
    _, kd, vd = prepare_inputs(q, k, v, SimulationConfig(), point)
    assert kd.max() == pytest.approx(1.8) and vd.max() == pytest.approx(1.8)
    assert np.allclose(np.unique(kd) / (1.8 / 7), np.round(np.unique(kd) / (1.8 / 7)))
    _, kd_paper, _ = prepare_inputs(q, k, v, SimulationConfig())
    assert kd_paper.max() == pytest.approx(0.9)

    save = tmp_path / "run.npz"
    result = CliRunner().invoke(main, ["simulate", "attention", "--mode", "fitted", "--fits",
                                       str(copy), "--tokens", "64", "--dim", "16", "--window",
                                       "32", "--json", "--save", str(save)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["operating_point"] == {"stored_range_V": [0.0, 1.8], "mid_rail_V": 0.9}
    assert "stand_ins" not in report
    with np.load(save) as saved:
        k_drawn = saved["k"]
    assert k_drawn.min() >= 0.0 and k_drawn.max() <= 1.8 and k_drawn.max() > 1.5

    # --no-clip: 1.5 V is inside this design's DAC range, outside the published one.
    k_file, q_file, v_file = (tmp_path / f"{n}.npy" for n in "kqv")
    q, k, v = _inputs(tokens=32, dim=8, high=1.0)
    np.save(q_file, q)
    np.save(k_file, k + 0.5)
    np.save(v_file, v)
    files = ["--q", str(q_file), "--k", str(k_file), "--v", str(v_file), "--window", "16",
             "--no-clip"]
    ok = CliRunner().invoke(main, ["simulate", "attention", "--mode", "fitted", "--fits",
                                   str(copy), *files, "--json"])
    assert ok.exit_code == 0, ok.output
    refused = CliRunner().invoke(main, ["simulate", "attention", "--mode", "fitted", "--fits",
                                        str(FITS), *files])
    assert refused.exit_code != 0
    assert "outside the physical range [0, 0.9]" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def test_a_bundle_without_design_gets_the_published_point_and_says_so(tmp_path):
    copy = _bundle_copy(tmp_path)
    (copy / "design.toml").unlink()
    assert load_bundle(copy).design is None
    model = load_fitted_models(copy)
    assert model.operating_point == PAPER_OPERATING_POINT
    assert DESIGN_STAND_IN in model.notes["stand_ins"]
    assert DESIGN_STAND_IN == ("no design.toml: the published operating point (0..0.9 V, "
                               "mid-rail 0.45 V)")
    result = CliRunner().invoke(main, ["simulate", "attention", "--mode", "fitted", "--fits",
                                       str(copy), "--tokens", "16", "--dim", "4", "--json"])
    assert result.exit_code == 0, result.output
    assert DESIGN_STAND_IN in json.loads(result.output)["stand_ins"]


def test_a_design_that_is_not_the_fits_is_refused_in_one_line(tmp_path):
    copy = _bundle_copy(tmp_path, _design_1v8(), rehash=False)
    with pytest.raises(FitFileError) as caught:
        load_bundle(copy)
    assert "\n" not in str(caught.value) and "design.toml" in str(caught.value)
    result = CliRunner().invoke(main, ["simulate", "attention", "--mode", "fitted", "--fits",
                                       str(copy), "--tokens", "16"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "is not the design" in lines[0]


def test_compare_fits_compares_the_design_values(tmp_path):
    copy = _bundle_copy(tmp_path)
    assert compare_fits(FITS, copy) == []
    # Comments do not count; values do.
    (copy / "design.toml").write_text("# a comment\n" + (FITS / "design.toml").read_text())
    assert compare_fits(FITS, copy) == []
    (copy / "design.toml").write_text(_design_1v8())
    differences = compare_fits(FITS, copy)
    assert differences and all(d.startswith("design.toml: ") for d in differences)
    (copy / "design.toml").unlink()
    assert compare_fits(FITS, copy) == [f"design.toml: only in {FITS}"]
