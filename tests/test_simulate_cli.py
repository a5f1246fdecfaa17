"""`gcsim simulate attention` and `gcsim bench simulate` through click's CliRunner."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gcsim.cli import main

SMALL = ["--tokens", "80", "--heads", "2", "--dim", "16", "--window", "48"]


def run(*args):
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result, fragment):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_help_has_examples():
    for args in (["simulate", "--help"], ["simulate", "attention", "--help"],
                 ["bench", "simulate", "--help"]):  # fmt: skip
        result = run(*args)
        assert result.exit_code == 0 and "Example" in result.output


def test_random_inputs_report_accuracy_against_ideal_and_linear():
    result = run("simulate", "attention", "--mode", "paper", *SMALL)
    assert result.exit_code == 0, result.output
    assert "vs ideal" in result.output and "vs linear" in result.output
    assert "cosine per token" in result.output


def test_json_report():
    result = run("simulate", "attention", "--mode", "linear", *SMALL, "--json", "--no-decay")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["mode"] == "linear" and report["decay_factor"] == 0.0
    assert set(report["accuracy"]) == {"ideal"}
    metrics = report["accuracy"]["ideal"]
    assert -1 <= metrics["cosine_min"] <= metrics["cosine_mean"] <= 1
    assert metrics["rmse"] > 0


def test_save_and_plot(tmp_path):
    npz, png = tmp_path / "run.npz", tmp_path / "run.png"
    result = run("simulate", "attention", *SMALL, "--save", str(npz), "--plot", str(png))
    assert result.exit_code == 0, result.output
    with np.load(npz) as saved:
        assert saved["S"].shape == (1, 2, 80, 48) and saved["phi"].shape == (1, 2, 80, 48)
        assert saved["output"].shape == (2, 80, 16)
        assert saved["subtile_outputs"].shape[:3] == (1, 2, 80)
        # The slots' sub-tiles and the physical arrays holding them: a 48-token window fits one.
        arrays, tiles = saved["subtile_arrays"], saved["subtile_indices"]
        np.testing.assert_array_equal(arrays, np.where(tiles >= 0, 0, -1))
        assert np.any(tiles == 1)   # paper: sub-tiles 0 and 1 both in array 0
        assert np.all(saved["phi"] >= 0) and np.all(saved["phi"] <= 15e-9)
        assert "ideal_output" in saved and "linear_output" in saved
        np.testing.assert_array_equal(saved["first_key"], np.arange(80) - 48 + 1)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("shape", [(40, 8), (2, 40, 8), (1, 2, 40, 8)])
def test_npy_inputs_of_2_3_and_4_dimensions(tmp_path, shape):
    rng = np.random.default_rng(0)
    paths = []
    for name, top in (("q", 1.0), ("k", 0.9), ("v", 0.9)):
        path = tmp_path / f"{name}.npy"
        np.save(path, rng.random(shape) * top)
        paths += [f"--{name}", str(path)]
    result = run("simulate", "attention", *paths, "--window", "16", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["shape"]["tokens"] == 40


def test_mismatched_shapes(tmp_path):
    for name, shape in (("q", (40, 8)), ("k", (40, 8)), ("v", (41, 8))):
        np.save(tmp_path / f"{name}.npy", np.full(shape, 0.3))
    args = [a for n in "qkv" for a in (f"--{n}", str(tmp_path / f"{n}.npy"))]
    assert_one_line_error(run("simulate", "attention", *args), "same shape")


def test_out_of_range_values_without_clipping(tmp_path):
    for name in "qkv":
        np.save(tmp_path / f"{name}.npy", np.full((10, 4), 0.95))
    args = [a for n in "qkv" for a in (f"--{n}", str(tmp_path / f"{n}.npy"))]
    assert_one_line_error(run("simulate", "attention", *args, "--no-clip"), "physical range")
    assert run("simulate", "attention", *args).exit_code == 0  # clipped by default


def test_missing_fits_bundle(tmp_path, monkeypatch):
    from gcsim.core import resources

    monkeypatch.setattr(resources, "FITS", tmp_path / "no-fits")
    assert_one_line_error(run("simulate", "attention", "--mode", "fitted"), "fits bundle")
    missing = str(tmp_path / "nope")
    assert_one_line_error(
        run("simulate", "attention", "--mode", "fitted", "--fits", missing), "not found"
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--window", "abc"], "--window"),
        (["--decay-factor", "fast"], "--decay-factor"),
        (["--mode", "quantum"], "--mode"),
        (["--window", "0"], "window"),
        (["--tokens", "0"], "--tokens"),
        (["--decay-factor", "-1"], "--decay-factor"),
        (["--decay-factor", "1e-3", "--token-period", "1e-6"], "either"),
        (["--no-decay", "--decay-factor", "1e-3"], "--no-decay"),
        (["--q", "a.npy"], "all three"),
        (["--mismatch-seed", "1"], "--mode fitted"),
    ],
)
def test_bad_options_give_one_line_errors(args, fragment):
    assert_one_line_error(run("simulate", "attention", *args), fragment)


def test_unreadable_npy(tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_text("not an array")
    args = ["--q", str(bad), "--k", str(bad), "--v", str(bad)]
    assert_one_line_error(run("simulate", "attention", *args), "cannot read Q")


def test_bench_json_small():
    result = run("bench", "simulate", "--heads", "1", "--tokens", "64", "--dim", "8",
                 "--window", "64", "--repeats", "1", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in ("paper", "fitted"):
        entry = report[key]
        assert entry["time_s"] > 0
        assert entry["ratio_to_floor"] == pytest.approx(entry["time_s"] / report["floor_s"])
        assert entry["ratio_to_softmax"] == pytest.approx(entry["time_s"] / report["softmax_s"])
    # The committed fits/ bundle when there is one, else the published coefficients.
    from gcsim.hw import default_fits_dir

    expected = "fitted (" + str(default_fits_dir()) if default_fits_dir() else "no fits bundle"
    assert expected in report["fitted"]["label"]


def write_bundle(directory, mismatch=None):
    """A fits bundle holding the published parameters."""
    from gcsim.fit.bundle import write_parameter_bundle
    from gcsim.hw import PAPER

    unit = PAPER.charge_unit_C
    if mismatch:
        mismatch = (mismatch["gain_sigma"], mismatch["vt_sigma_V"])
    return write_parameter_bundle(
        directory, [c * 1e-6 for c in PAPER.cell_coefficients_uA], time_constant_s=5e-3,
        asymptote_V=0.45, slope_s_per_C=15e-9 / (80 * unit), t_max_s=15e-9, mismatch=mismatch,
        v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)


def test_fitted_mode_from_a_bundle_with_mismatch(tmp_path):
    bundle = write_bundle(tmp_path / "fits", mismatch={"gain_sigma": 0.05, "vt_sigma_V": 0.01})
    args = ["simulate", "attention", "--mode", "fitted", "--fits", str(bundle), *SMALL, "--json"]
    first = json.loads(run(*args, "--mismatch-seed", "1").output)
    again = json.loads(run(*args, "--mismatch-seed", "1").output)
    plain = json.loads(run(*args).output)
    assert first["accuracy"] == again["accuracy"] != plain["accuracy"]
    assert first["label"].startswith("fitted (")
    no_mismatch = write_bundle(tmp_path / "plain")
    result = run("simulate", "attention", "--mode", "fitted", "--fits", str(no_mismatch),
                 "--mismatch-seed", "1")  # fmt: skip
    assert_one_line_error(result, "no mismatch distributions")
