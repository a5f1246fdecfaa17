"""`gcsim accuracy`: the task generators' invariants, the CLI's refusals, and --quick end to end
(the softmax model beats chance, the fitted modes' accuracy is reported, and the torch twin
equals the NumPy simulator on the trained model's own q, k, v)."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gcsim.accuracy.tasks import IGNORE, MQAR, Induction, make_task
from tests.conftest import error_line, invoke

# --- the tasks, correct by construction ------------------------------------------------------


@pytest.mark.parametrize("task", [MQAR(), MQAR(vocab=9, pairs=4, seq_len=12),
                                  MQAR(vocab=64, pairs=8, seq_len=64, queries=3)])
def test_mqar_sequences_hold_their_pairs_and_ask_for_them(task):
    batch = task.generate(200, np.random.default_rng(1))
    n, T = batch.tokens.shape
    assert (n, T) == (200, task.seq_len) and batch.targets.shape == (n, T)
    P = task.pairs
    keys, values = batch.tokens[:, 0:2 * P:2], batch.tokens[:, 1:2 * P:2]
    assert ((keys >= 1) & (keys <= task.n_keys)).all()
    assert ((values > task.n_keys) & (values < task.vocab)).all()
    for row in range(n):
        assert len(set(keys[row])) == P       # distinct keys: every query has one answer
        pairs = dict(zip(keys[row], values[row]))
        scored = np.flatnonzero(batch.targets[row] != IGNORE)
        assert len(scored) == task.n_queries and (scored >= 2 * P).all()
        asked = batch.tokens[row, scored]
        assert len(set(asked)) == task.n_queries   # each key asked at most once
        for position, key in zip(scored, asked):
            assert batch.targets[row, position] == pairs[key]
        rest = np.setdiff1d(np.arange(2 * P, T), scored)
        assert (batch.tokens[row, rest] == 0).all()    # blanks elsewhere
    assert (batch.targets[:, :2 * P] == IGNORE).all()
    again = task.generate(200, np.random.default_rng(1))
    assert (again.tokens == batch.tokens).all() and (again.targets == batch.targets).all()


def test_mqar_queries_reach_every_free_position_and_every_value():
    task = MQAR(vocab=16, pairs=3, seq_len=12)
    batch = task.generate(4000, np.random.default_rng(0))
    positions = np.flatnonzero(batch.scored.any(axis=0))
    assert set(positions) == set(range(6, 12))
    values = set(batch.targets[batch.scored].tolist())
    assert values == set(range(task.n_keys + 1, task.vocab))
    assert task.chance == pytest.approx(1 / task.n_values)


def test_induction_sequences_repeat_the_trigger_once_and_ask_for_what_followed():
    task = Induction(vocab=8, seq_len=10)
    batch = task.generate(500, np.random.default_rng(2))
    for row in range(500):
        triggers = np.flatnonzero(batch.tokens[row] == 0)
        assert len(triggers) == 2 and triggers[-1] == task.seq_len - 1
        scored = np.flatnonzero(batch.scored[row])
        assert list(scored) == [task.seq_len - 1]
        assert batch.targets[row, -1] == batch.tokens[row, triggers[0] + 1] != 0


@pytest.mark.parametrize("options, fragment", [
    ({"vocab": 9, "pairs": 5, "seq_len": 20}, "pairs must be 1...4"),
    ({"vocab": 64, "pairs": 8, "seq_len": 20}, "cannot hold 8 pairs"),
    ({"vocab": 64, "pairs": 8, "queries": 9}, "queries must be 1...8"),
    ({"vocab": 64, "colour": 3}, "no option colour"),
])
def test_impossible_tasks_are_refused(options, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_task("mqar", **options)


# --- the command ------------------------------------------------------------------------------


def test_the_cli_loads_without_torch():
    """`gcsim --help` must not import PyTorch: the accuracy command imports it when it runs."""
    code = ("import sys; from gcsim.cli import main; from click.testing import CliRunner; "
            "r = CliRunner().invoke(main, ['--help']); "
            "assert r.exit_code == 0 and 'accuracy' in r.output, r.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_torch_one_line_says_how_to_install(monkeypatch):
    import gcsim.cli.accuracy as command

    monkeypatch.setattr(command, "_torch_available", lambda: False)
    line = error_line(invoke("accuracy", "mqar", "--quick"))
    assert "pip install -e .[ml]" in line


@pytest.mark.parametrize("args, fragment", [
    (["induction", "--pairs", "4"], "--pairs and --queries are mqar's"),
    (["mqar", "--fits", "/nonexistent/bundle"], "not a directory"),
    (["mqar", "--mode", "paper", "--fits", "fits/builtin"], "needs the fitted or the exported"),
    (["mqar", "--pairs", "0"], "must be >= 1"),
    (["mqar", "--vocab", "16", "--pairs", "12"], "pairs must be 1...7"),
])
def test_bad_options_are_one_line(args, fragment):
    pytest.importorskip("torch")
    assert fragment in error_line(invoke("accuracy", *args))


@pytest.mark.timeout(900)
def test_quick_run_end_to_end(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "accuracy"
    result = invoke("accuracy", "mqar", "--quick", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"]["name"] == "mqar"
    # The softmax model clearly beats chance; so does the ideal mode once adapted (its logits
    # are bounded by the input ranges, so calibration alone leaves it near chance).
    assert report["reference"]["accuracy"] > 10 * report["chance"]
    assert report["training"]["seconds"] > 0 and report["timings_s"]["total"] > 0
    assert {"data", "init", "evaluation", "mismatch_evaluation"} <= set(report["seeds"])
    rows = report["results"]
    labels = {row["label"] for row in rows}
    assert {"ideal", "linear", "paper", "fitted:builtin", "fitted:sky130", "exported:builtin",
            "exported:sky130"} <= labels
    for row in rows:
        assert {"mode", "fits", "accuracy", "adapted_accuracy"} <= set(row)
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["adapted_accuracy"] <= 1.0
    ideal = next(row for row in rows if row["mode"] == "ideal")
    assert ideal["adapted_accuracy"] > 3 * report["chance"]
    fitted = [row for row in rows if row["mode"] == "fitted"]
    assert {row["nonideality"] for row in fitted} == {"none", "quantize", "decay", "mismatch",
                                                     "all"}
    assert all(row["fits"] for row in fitted)
    # Each bundle's published-form export: no mismatch column (the form has none); the model
    # adapted on it is also run on the bundle's fitted cells.
    exported = [row for row in rows if row["mode"] == "exported"]
    assert {row["fits"] for row in exported} == {row["fits"] for row in fitted}
    assert {row["nonideality"] for row in exported} == {"none", "quantize", "decay", "all"}
    assert all(0.0 <= row["on_fitted_accuracy"] <= 1.0 for row in exported)
    assert all(0.0 <= row["on_fitted_calibrated_accuracy"] <= 1.0 for row in exported)
    assert all(row["on_fitted_accuracy"] is None for row in rows if row["mode"] != "exported")
    assert {(c["fits"], c["nonideality"]) for c in report["export_cost"]} == {
        (row["fits"], row["nonideality"]) for row in exported}
    # The twin equals the NumPy simulator on the trained model's own hardware inputs, in every
    # hardware mode (fitted with mismatch, decay and quantisation on).
    checks = report["twin_check"]
    assert {(c["mode"], c["fits"] is not None) for c in checks} >= {
        ("paper", False), ("fitted", True), ("exported", True)}
    for check in checks:
        assert check["equal"] and check["max_abs_difference"] <= 1e-9, check
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.csv", "accuracy.json",
                                                     "accuracy.png"]
    assert json.loads((out / "accuracy.json").read_text())["results"] == rows


# --- the published calibration ------------------------------------------------------------------


def test_calibration_brings_every_scaler_to_its_target():
    torch = pytest.importorskip("torch")
    from gcsim.accuracy.adapt import _per_head, _record, calibrate, hardware_copy, input_targets
    from gcsim.accuracy.model import ModelConfig, TinyTransformer
    from gcsim.nn import GainCellAttention

    torch.manual_seed(0)
    task = MQAR(vocab=16, pairs=3, seq_len=16)
    model = TinyTransformer(ModelConfig(vocab=16, seq_len=16, layers=2, heads=2))
    hardware = hardware_copy(model, [GainCellAttention("paper", window=16, array=64,
                                                       dtype=torch.float32) for _ in range(2)])
    batch = task.generate(8, np.random.default_rng(0))
    result = calibrate(hardware, model, batch)
    assert result.converged and result.largest_error < 0.01
    tokens = torch.as_tensor(batch.tokens)
    reference = _record(model, tokens, cores=False)
    for core, scaled, ref in zip(hardware.cores(), _record(hardware, tokens, cores=True),
                                 reference):
        for name, (mean, std) in input_targets(core).items():
            got_mean, got_std = _per_head(scaled[name])
            assert torch.allclose(got_mean, torch.tensor(mean), atol=0.01 * std)
            assert torch.allclose(got_std, torch.tensor(std), rtol=0.01)
        for got, want in zip(_per_head(scaled["out"]), _per_head(ref["out"])):
            assert torch.allclose(got, want, atol=0.01 * float(_per_head(ref["out"])[1].min()))
    # The softmax model itself is untouched: calibration works on a copy.
    assert all(core.kind == "softmax" for core in model.cores())


# --- the exported mode: a bundle in the published form ----------------------------------------


@pytest.mark.parametrize("bundle", ["builtin", "sky130"])
def test_the_exported_mode_runs_the_published_form_and_equals_the_simulator(bundle):
    """The exported mode's twin is the published model's chain on the bundle's published form
    (the cubic `gcsim export paper-model` gives), and equals gcsim.simulate on that model with
    every non-ideality it has on; it differs from the fitted twin on the same inputs."""
    torch = pytest.importorskip("torch")
    from gcsim.accuracy.evaluate import AccuracySettings, ModeSpec, make_twins
    from gcsim.core import resources
    from gcsim.hw import load_fitted_models
    from gcsim.hw.export import published_form
    from gcsim.simulate import simulate_attention

    fits = resources.fits_for(bundle)
    settings = AccuracySettings(layers=1)
    exported = make_twins(ModeSpec("exported", fits), settings, 96, "all", 0, torch.float64)[0]
    fitted = make_twins(ModeSpec("fitted", fits), settings, 96, "all", 0, torch.float64)[0]
    form = published_form(load_fitted_models(fits))
    assert exported.mode == "paper" and exported.model.cell.degree == 3
    assert exported.model.cell.coefficients_A == form.model.cell.coefficients_A
    assert exported.config.quantize_inputs and exported.config.decay
    assert exported.config.mismatch_seed is None
    assert exported.decay_factor == pytest.approx(form.numbers["decay_factor"], rel=1e-12)

    point = form.model.operating_point
    rng = np.random.default_rng(5)
    shape = (2, 1, 96, 64)
    q = rng.uniform(0, 1, shape)
    k, v = (rng.uniform(point.stored_min_V, point.stored_max_V, shape) for _ in range(2))
    with torch.no_grad():
        ours = exported(*(torch.as_tensor(x) for x in (q, k, v))).numpy()
        on_fitted = fitted(*(torch.as_tensor(x) for x in (q, k, v))).numpy()
    config = replace(exported.config, keep_intermediates=False)
    theirs = simulate_attention(q, k, v, "paper", model=form.model, config=config).output
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    assert np.abs(ours - on_fitted).max() > 0.05     # the export is not the fitted model


def test_bundle_modes_need_a_bundle_and_others_refuse_one():
    from gcsim.accuracy.evaluate import ModeSpec

    with pytest.raises(ValueError, match="needs a fits bundle"):
        ModeSpec("exported")
    with pytest.raises(ValueError, match="takes no fits bundle"):
        ModeSpec("paper", Path("fits/builtin"))
    assert ModeSpec("exported", Path("fits/sky130")).label == "exported:sky130"
    assert not ModeSpec("exported", Path("fits/builtin")).models_mismatch()
