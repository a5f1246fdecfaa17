"""gcsim validate montecarlo: the statistics on synthetic deviations (same distribution passes,
a doubled sigma or a shifted mean fails, correlated columns do not fool the p-value), the
model's seeded draws, the sky130 tile's per-netlist seeds, and an 8x8 run on real ngspice."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from gcsim.core import resources
from gcsim.hw import load_fitted_models
from gcsim.spice import process as processes
from gcsim.validate.behaviour import run_model
from gcsim.validate.montecarlo import compare_deviations
from gcsim.validate.scenarios import random_inputs
from gcsim.validate.tile import Tile, build
from gcsim.validate.timing import TileParams

from conftest import HAVE_SKY130, error_line, invoke

needs_fits = pytest.mark.skipif(not (resources.FITS / "mismatch.json").is_file(),
                                reason="no committed fits bundle with a mismatch fit")


def normal(rng, sigma=1.0, mean=0.0, shape=(20, 16)):
    return rng.normal(mean, sigma, shape)


# ----------------------------------------------------------------------------- statistics
def test_same_distribution_passes_in_most_trials():
    """At alpha = 0.01 and a 0.67...1.5 band, two draws of one distribution pass: in 20
    independent trials, at most one may fail by chance."""
    rng = np.random.default_rng(1)
    passed = [compare_deviations(normal(rng), normal(rng), permutations=300,
                                 bootstraps=300)["passed"] for _ in range(20)]
    assert sum(passed) >= 19


def test_doubled_sigma_fails_on_both_tests():
    rng = np.random.default_rng(2)
    result = compare_deviations(normal(rng), normal(rng, 2.0))
    assert result["failed_on"] == ["sigma", "ks"]
    assert 1.6 < result["sigma_ratio"] < 2.5
    assert result["sigma_ratio_interval"][0] > 1.5


def test_halved_sigma_fails_and_shifted_mean_fails_ks_only():
    rng = np.random.default_rng(3)
    assert "sigma" in compare_deviations(normal(rng), normal(rng, 0.5))["failed_on"]
    shifted = compare_deviations(normal(rng), normal(rng, 1.0, 0.5))
    assert shifted["failed_on"] == ["ks"]


def test_columns_sharing_a_sample_offset_do_not_fool_the_ks_p():
    """Deviations that move together within a sample (as A and out do: all V columns share
    the K-side pulses): 320 pooled values hold only 20 independent offsets. ks_2samp's own
    p-value, which counts 320, rejects a true null; the whole-sample permutation does not."""
    rng = np.random.default_rng(4)

    def shared():
        return rng.normal(0, 1, (20, 1)) + 0.3 * rng.normal(0, 1, (20, 16))

    ps, naive = [], []
    for _ in range(10):
        result = compare_deviations(shared(), shared(), permutations=300, bootstraps=200)
        ps.append(result["ks_p"])
        naive.append(result["ks_p_independent"])
    assert sum(p < 0.01 for p in ps) <= 1
    assert sum(p < 0.01 for p in naive) >= 5


def test_no_spread_anywhere_passes_and_spread_against_none_fails():
    zeros = np.zeros((5, 4))
    assert compare_deviations(zeros, zeros, permutations=50, bootstraps=50)["passed"]
    result = compare_deviations(zeros, np.ones((5, 4)) * np.arange(5)[:, None],
                                permutations=50, bootstraps=50)
    assert result["sigma_ratio"] is None and "sigma" in result["failed_on"]


def test_bad_deviations_are_refused():
    with pytest.raises(ValueError, match="columns"):
        compare_deviations(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2 samples"):
        compare_deviations(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        compare_deviations(np.full((4, 3), np.nan), np.zeros((4, 3)))


# ----------------------------------------------------------------------------- model side
@needs_fits
def test_model_draws_are_seeded_and_move_every_stage():
    model = load_fitted_models(resources.FITS)
    q, k, v = random_inputs(6, 6, 1, TileParams.defaults()["vdd"])
    nominal = run_model(q, k, v, model)
    first, again = (run_model(q, k, v, model, mismatch_seed=3) for _ in range(2))
    other = run_model(q, k, v, model, mismatch_seed=4)
    for name in ("S_C", "A_C", "out"):
        scale = np.abs(getattr(nominal, name)).max()
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
        for different in (nominal, other):
            gap = np.abs(getattr(first, name) - getattr(different, name)).max()
            assert 1e-3 * scale < gap < 0.3 * scale, name


# ----------------------------------------------------------------------------- sky130 seeds
@pytest.mark.skipif(not HAVE_SKY130, reason="needs the sky130 extra")
def test_sky130_tile_netlists_get_their_own_seeds():
    """ngspice draws a PDK's mismatch by instance order: column netlists built alike need
    seeds of their own, or every column would repeat the first one's draws."""
    from gcsim.cli.validate import design_for

    sky = processes.resolve("sky130:tt")
    params = TileParams.defaults(design=design_for(None, sky.process))
    q, k, v = random_inputs(2, 3, 1, params.stored_range[1], params.stored_range[0])
    params.mc_seed = 5
    seeds = []
    for part, column in (("k", 0), ("k", 1), ("k", 2), ("full", 0)):
        text = build(Tile(q, k, v), params, sky, part, None if part == "full" else [column]).text
        assert sky.mismatch_section in text
        seeds += re.findall(r"^\.options seed=(\d+)", text, re.MULTILINE)
    assert len(seeds) == 4 and len(set(seeds)) == 4
    params.mc_seed = None
    assert ".options seed" not in build(Tile(q, k, v), params, sky, "k", [0]).text


# ----------------------------------------------------------------------------- real ngspice
@needs_fits
def test_montecarlo_command_runs_and_writes_its_report(tmp_path):
    report_dir = tmp_path / "mc"
    result = invoke("validate", "montecarlo", "--rows", 8, "--cols", 8, "--samples", 6,
                    "--seed", 2, "--jobs", 2, "--json", "--report", report_dir)
    assert result.exit_code in (0, 3), result.output
    report = json.loads(result.output[result.output.index("{"):result.output.rindex("}") + 1])
    assert report["samples"] == 6 and report["spice"]["tiles"] == 7
    assert set(report["stages"]) == {"S", "phi", "A", "out"}
    for name, stage in report["stages"].items():
        for key in ("spice_sigma_pct_fs", "model_sigma_pct_fs", "ks_statistic", "ks_p"):
            assert math.isfinite(stage[key]), (name, key)
        # Mismatch moves every stage on both sides, by well under its full scale.
        assert 0 < stage["spice_sigma_pct_fs"] < 20 and 0 < stage["model_sigma_pct_fs"] < 20
        assert stage["passed"] == (not stage["failed_on"])
    assert report["passed"] == (result.exit_code == 0)
    saved = json.loads((report_dir / "report.json").read_text())
    assert saved["stages"] == report["stages"]
    assert (report_dir / "montecarlo.png").read_bytes()[:4] == b"\x89PNG"
    with np.load(report_dir / "deviations.npz") as arrays:
        assert arrays["spice_A_pct_fs"].shape == (6, 8)
        assert arrays["model_S_pct_fs"].shape == (6, 8)


@pytest.mark.parametrize("args, option", [
    (("--sigma-ratio", "2:3"), "--sigma-ratio"),
    (("--sigma-ratio", "wide"), "--sigma-ratio"),
    (("--samples", "1"), "--samples"),
    (("--alpha", "0"), "--alpha"),
])
def test_bad_options_give_one_line(args, option):
    assert option in error_line(invoke("validate", "montecarlo", *args))
