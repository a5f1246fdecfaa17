"""The published-form export (gcsim export paper-model): on the published model it gives the
published numbers back and nothing lost; on the shipped bundles, the exported numbers put into
the published formula (MISSION.md) give the same S and outputs as the published-form model
gcsim simulates, and everything the form drops is named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gcsim.cli import main
from gcsim.core import resources
from gcsim.hw import load_fitted_models, paper_model
from gcsim.hw.export import published_form
from gcsim.simulate.attention import SimulationConfig, simulate_attention

PUBLISHED = [0.17393044, 0.15653739, 0.14088365, 0.12679529, 5.51975209, 4.96777688, 4.4709992,
             -1.44776001, -1.30298401, 46.05483778]
ORDER = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0)]


def published_formula(q, k, v, numbers):
    """MISSION.md's published model, steps 1-7, on one 64 x 64 tile (window = array = 64),
    with the exported numbers in place of its constants; k and v already in its [0, 0.9]."""
    c = numbers["coefficients"]
    T = q.shape[0]
    age = np.arange(T)[:, None] - np.arange(T)[None, :]
    mask = (age >= 0) & (age < 64)
    d = np.exp(-numbers["decay_factor"]) ** np.maximum(age, 0)
    S = np.zeros((T, T))
    for (i, j), cij in zip(ORDER, c):
        S += cij * 0.9 ** j * (q @ ((k.T - 0.45) ** i)) * d ** i
    S *= mask
    phi = np.clip(S / numbers["hardsigmoid_saturation"], 0, 1) * mask
    A = np.zeros((T, q.shape[1]))
    for (i, j), cij in zip(ORDER, c):
        A += cij * 0.9 ** j * ((phi * d ** i) @ ((v - 0.45) ** i))
    return S, np.clip(A / numbers["output_full_scale"], -1, 1)


def test_the_published_model_exports_as_itself_with_nothing_lost():
    form = published_form(paper_model())
    effective = {i: sum(c * 0.9 ** j for c, (ii, j) in zip(PUBLISHED, ORDER) if ii == i)
                 for i in range(4)}
    exported = dict(zip(ORDER, form.numbers["coefficients"]))
    for i in range(4):
        assert exported[(i, 0)] == pytest.approx(effective[i], rel=1e-9)
    assert form.numbers["decay_factor"] == pytest.approx(1.6e-4, rel=1e-12)
    assert form.numbers["hardsigmoid_saturation"] == pytest.approx(80.0, rel=1e-12)
    assert form.numbers["output_full_scale"] == pytest.approx(40.0, rel=1e-12)
    assert form.not_expressed == ()
    rng = np.random.default_rng(3)
    q, k, v = rng.random((96, 16)), rng.random((96, 16)) * 0.9, rng.random((96, 16)) * 0.9
    config = SimulationConfig(window=64, array_size=64)
    ours = simulate_attention(q, k, v, "paper", model=form.model, config=config)
    theirs = simulate_attention(q, k, v, "paper", config=config)
    np.testing.assert_allclose(ours.S, theirs.S, rtol=1e-9, atol=1e-24)
    np.testing.assert_array_equal(ours.output, theirs.output)


@pytest.mark.parametrize("bundle", ["builtin", "sky130"])
def test_exported_numbers_in_the_published_formula_match_the_published_form_model(bundle):
    fits = load_fitted_models(resources.FITS.parent / bundle)
    form = published_form(fits, source=bundle)
    numbers = form.numbers
    point = fits.operating_point
    rng = np.random.default_rng(7)
    T, D = 64, 64
    q = rng.random((T, D))
    stored = lambda: rng.uniform(point.stored_min_V, point.stored_max_V, (T, D))  # noqa: E731
    k_V, v_V = stored(), stored()
    config = SimulationConfig(window=T, array_size=T, quantize_inputs=False,
                              quantize_output=False)
    simulated = simulate_attention(q, k_V, v_V, "paper", model=form.model, config=config)
    to_published = lambda V: 0.9 * (V - point.stored_min_V) / (  # noqa: E731
        point.stored_max_V - point.stored_min_V)
    S, out = published_formula(q, to_published(k_V), to_published(v_V), numbers)
    np.testing.assert_allclose(simulated.S_in_paper_units()[0, 0, -1], S[-1], rtol=1e-9,
                               atol=1e-9 * np.abs(S).max())
    np.testing.assert_allclose(simulated.output, out, rtol=1e-9, atol=1e-12)
    # The form says what it drops, with sizes: the shipped bundles have all of these.
    lost = " | ".join(form.not_expressed)
    for part in ("cubic projection", "asymptotes", "readout loading", "write error",
                 "mismatch", "ring buffer"):
        assert part in lost
    assert 0 < numbers["cubic_error_percent_of_max_current"]["rms"] < 10


def test_export_paper_model_cli_json_and_a_bad_bundle(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["export", "paper-model", str(resources.FITS), "--json",
                                  "--token-period", "1e-6"])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["token_period_s"] == 1e-6 and len(numbers["coefficients"]) == 10
    assert numbers["not_expressed"]
    text = runner.invoke(main, ["export", "paper-model", str(resources.FITS)])
    assert "not expressed:" in text.output and "decay factor per token" in text.output
    bad = runner.invoke(main, ["export", "paper-model", str(tmp_path / "nowhere")])
    assert bad.exit_code != 0
    assert len(bad.output.strip().splitlines()) == 1 and "nowhere" in bad.output
    hot = runner.invoke(main, ["export", "paper-model", str(resources.FITS), "--temperature",
                               "400"])
    assert hot.exit_code != 0 and len(hot.output.strip().splitlines()) == 1
