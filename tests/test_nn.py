"""gcsim.nn, the torch twin of the array simulator: its forward pass gives gcsim.simulate's numbers
for every mode and option on the committed bundles (and the comparison can fail), its gradients
are finite and pass the straight-through converters, and gradcheck holds where the chain is
smooth."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")   # the `ml` extra; `make test` installs it

from gcsim.core import resources   # noqa: E402
from gcsim.hw import at_operating_point, load_fitted_models, model_for_mode   # noqa: E402
from gcsim.nn import (GainCellAttention, GainCellSelfAttention,   # noqa: E402
                      HardwareInputScaler)
from gcsim.nn import attention as nn_attention   # noqa: E402
from gcsim.nn import functional as fn   # noqa: E402
from gcsim.simulate import SimulationConfig, simulate_attention   # noqa: E402
from gcsim.simulate.attention import draw_mismatch   # noqa: E402

BUILTIN = resources.fits_for("builtin")
SKY130 = resources.fits_for("sky130")
SHAPE = (1, 2, 130, 8)


def random_inputs(point, shape, seed, margin=0.05):
    """q, k, v over the operating point's ranges, `margin` of each range beyond both ends (the
    DACs clip them; a negative margin keeps them inside)."""
    rng = np.random.default_rng(seed)
    lo, hi = point.stored_min_V, point.stored_max_V

    def spread(a, b):
        return a - margin * (b - a) + (1 + 2 * margin) * (b - a) * rng.random(shape)

    return spread(0.0, 1.0), spread(lo, hi), spread(lo, hi)


def relative_difference(mine, reference) -> float:
    """Largest difference relative to the reference's largest magnitude."""
    mine = mine.detach().double().numpy() if torch.is_tensor(mine) else np.asarray(mine)
    scale = np.abs(reference).max()
    return float(np.abs(mine - reference).max() / (scale if scale > 0 else 1.0))


def both(twin, shape=SHAPE, seed=0, margin=0.05, config=None):
    """The twin's signals and the simulator's result on the same inputs, model and options
    (`config`: the simulator's, when not the twin's own)."""
    q, k, v = random_inputs(twin.operating_point, shape, seed, margin)
    dtype = twin._reference.dtype
    signals = twin.signals(*(torch.tensor(x, dtype=dtype) for x in (q, k, v)))
    result = simulate_attention(q, k, v, twin.mode, model=twin.model,
                                config=config or twin.config)
    return signals, result


def differences(signals, result) -> dict:
    return {"output": relative_difference(signals.output, result.output),
            "S": relative_difference(signals.S, result.dense("S")),
            "phi": relative_difference(signals.phi, result.dense("phi"))}


def assert_same(signals, result, tolerance=1e-9):
    found = differences(signals, result)
    assert max(found.values()) <= tolerance, found


def fitted(fits=BUILTIN, **options):
    return GainCellAttention.from_fits(fits, **options)


# (id, twin, input shape, inputs' margin beyond the ranges)
CASES = [
    ("paper", lambda: GainCellAttention("paper", window=100, array=32), SHAPE, 0.05),
    ("paper-unquantised-decay-factor", lambda: GainCellAttention(
        "paper", window=100, array=32, quantize=False, decay_factor=0.01), SHAPE, 0.05),
    ("paper-token-period", lambda: GainCellAttention(
        "paper", window=64, array=64, token_period=4e-6), (2, 1, 150, 8), 0.05),
    ("linear-no-decay", lambda: GainCellAttention(
        "linear", window=100, array=32, decay=False, quantize_output=False), SHAPE, 0.05),
    ("ideal", lambda: GainCellAttention("ideal", window=40, array=16), SHAPE, 0.05),
    ("paper-at-sky130", lambda: fitted(SKY130, mode="paper", window=100, array=32), SHAPE, 0.05),
    ("linear-at-sky130", lambda: fitted(SKY130, mode="linear", window=100, array=32,
                                        quantize=False), SHAPE, 0.05),
    ("ideal-at-sky130", lambda: fitted(SKY130, mode="ideal", window=100, array=32), SHAPE, 0.05),
    # fitted: the ring buffer wraps (T > ceil(W / A) A) in every case but the two long windows
    ("fitted", lambda: fitted(window=100, array=32), (2, 2, 150, 8), 0.05),
    ("fitted-whole-arrays", lambda: fitted(window=48, array=16), SHAPE, 0.05),
    ("fitted-mismatch-W=3A+1", lambda: fitted(window=49, array=16, decay_factor=0.01,
                                              mismatch_seed=4), SHAPE, 0.05),
    ("fitted-one-array", lambda: fitted(window=16, array=16, mismatch_seed=9), SHAPE, 0.05),
    ("fitted-window-1", lambda: fitted(window=1, array=16), (1, 1, 40, 8), 0.05),
    ("fitted-window-past-T", lambda: fitted(window=300, array=16), SHAPE, 0.05),
    ("fitted-array-past-T", lambda: fitted(window=100, array=128, mismatch_seed=1), SHAPE, 0.05),
    ("fitted-no-decay", lambda: fitted(window=48, array=16, decay=False, mismatch_seed=2),
     SHAPE, 0.05),
    ("fitted-token-period", lambda: fitted(window=48, array=16, token_period=2e-6), SHAPE, 0.05),
    ("fitted-55C", lambda: fitted(window=48, array=16, temperature_C=55), SHAPE, 0.05),
    ("fitted-no-disturb-no-write-error", lambda: fitted(
        window=48, array=16, read_disturb=False, write_error=False), SHAPE, 0.05),
    ("fitted-ideal-readout", lambda: fitted(window=48, array=16, readout_loading=False,
                                            mismatch_seed=1), SHAPE, 0.05),
    ("fitted-no-clip", lambda: fitted(window=48, array=16, clip=False), SHAPE, -0.01),
    ("fitted-inputs-quantised-only", lambda: fitted(window=48, array=16,
                                                    quantize_output=False), SHAPE, 0.05),
    ("fitted-other-levels", lambda: fitted(window=48, array=16, query_levels=8,
                                           stored_levels=4, mismatch_seed=5), SHAPE, 0.05),
    ("fitted-strong-decay", lambda: fitted(window=48, array=16, decay_factor=0.5,
                                           readout_loading=False, extrapolate=True), SHAPE, 0.05),
    ("sky130", lambda: fitted(SKY130, window=100, array=32, mismatch_seed=1), SHAPE, 0.05),
    ("sky130-unquantised-55C", lambda: fitted(SKY130, window=100, array=32, quantize=False,
                                              temperature_C=55), SHAPE, 0.05),
]


@pytest.mark.parametrize("make, shape, margin", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_the_twin_gives_the_simulators_numbers_in_float64(make, shape, margin):
    signals, result = both(make(), shape, margin=margin)
    assert_same(signals, result, 1e-9)


def test_the_dense_decay_path_gives_the_simulators_numbers(monkeypatch):
    """A decay too strong to factorise into query and key scales runs as a dense matrix per
    power: forced here at a moderate decay, where the simulator still factorises, with the
    readout loading's not-yet-written rows and the per-cell mismatch."""
    monkeypatch.setitem(nn_attention.FACTORISE_EXPONENT_LIMIT, torch.float64, 0.0)
    twin = fitted(window=49, array=16, decay_factor=0.01, mismatch_seed=4)
    assert not twin._geometry(SHAPE[2]).decay.factorised
    assert_same(*both(twin), 1e-9)


def test_the_options_map_onto_the_simulators_config_and_model():
    """from_fits builds the simulator's own model from the bundle and its SimulationConfig
    from the options, so the comparisons above run the same thing on both sides."""
    twin = fitted(window=96, array=32, token_period=1e-6, quantize=False, mismatch_seed=3,
                  clip=False, temperature_C=55, read_disturb=False, write_error=False,
                  readout_loading=False, query_levels=8, stored_levels=4, extrapolate=True,
                  dtype=torch.float32)
    assert twin.config == SimulationConfig(
        window=96, array_size=32, token_period_s=1e-6, quantize_inputs=False,
        quantize_output=False, mismatch_seed=3, clip_inputs=False, temperature_C=55,
        read_disturb=False, write_error=False, readout_loading=False, query_levels=8,
        stored_levels=4, extrapolate=True, dtype="float32")
    assert twin.model == load_fitted_models(BUILTIN) == model_for_mode("fitted", BUILTIN)
    assert fitted(window=64, array=64).config == SimulationConfig(window=64, array_size=64)
    # the array size defaults to the design's; the operating point is the model's
    assert fitted(SKY130, window=64).config.array_size == 64
    point = load_fitted_models(SKY130).operating_point
    assert fitted(SKY130, window=64).operating_point == point
    assert point.stored_min_V == 0.05 and point.mid_rail_V == 0.9
    assert fitted(SKY130, mode="paper", window=64).model == at_operating_point(
        model_for_mode("paper"), point)
    paper = GainCellAttention("paper", window=64)
    assert paper.model == model_for_mode("paper") and paper.decay_factor == 1.6e-4
    # .to() moves the module, and the config says so
    assert paper.to(torch.float32).config.dtype == "float32"


def test_the_comparison_can_fail():
    """Mutations: another mismatch seed, another decay, no write error, or the output counter
    off on one side each make the twin and the simulator disagree far beyond the tolerance."""
    twin = fitted(window=49, array=16, mismatch_seed=1, quantize=False)
    mutations = [replace(twin.config, mismatch_seed=2), replace(twin.config, decay_factor=0.01),
                 replace(twin.config, write_error=False),
                 replace(twin.config, quantize_output=True)]
    for config in mutations:
        found = differences(*both(twin, config=config))
        assert found["output"] > 1e-3, (config, found)
    assert_same(*both(twin), 1e-9)   # and without the mutation, they agree


def test_float32_is_as_close_to_float64_as_the_simulators_own_float32():
    """In float32 both sides lose precision in the decay expansion's cancelling terms (most on
    sky130, whose asymptotes lie far beyond its levels): the twin in float32 stays as close to
    the float64 result as the simulator in float32 does."""
    for fits in (BUILTIN, SKY130):
        twin = fitted(fits, window=100, array=32, quantize=False, mismatch_seed=1,
                      dtype=torch.float32)
        signals, reference = both(twin, config=replace(twin.config, dtype="float64"))
        _, simulator32 = both(twin)
        for name, theirs in (("output", simulator32.output), ("S", simulator32.dense("S"))):
            ours = signals.output if name == "output" else signals.S
            truth = reference.output if name == "output" else reference.dense("S")
            own = relative_difference(theirs, truth)
            assert relative_difference(ours, truth) <= max(2 * own, 2e-6), (fits, name, own)


def test_float32_with_quantisation_differs_at_most_by_rare_single_counts():
    """Quantised, a float32 rounding can tip a column charge over a counter threshold: rarely,
    and by one count."""
    twin = fitted(window=100, array=32, mismatch_seed=1, dtype=torch.float32)
    signals, result = both(twin, shape=(2, 2, 130, 16))
    step = 2 / (twin.model.output_converter.levels - 1)
    difference = np.abs(signals.output.double().numpy() - result.output)
    assert difference.max() <= step * 1.001
    assert (difference > 1e-5).mean() <= 0.002
    assert relative_difference(signals.S, result.dense("S")) <= 2e-6


def test_the_mismatch_is_the_simulators_draw_held_in_buffers_and_state_dict():
    twin = fitted(window=40, array=16, mismatch_seed=7, heads=2, head_dim=8)
    k_sample, v_sample = draw_mismatch(twin.model, 7, 2, 8, twin.config, 40)
    np.testing.assert_array_equal(twin.v_cell_gain.numpy(), v_sample.gain)
    np.testing.assert_array_equal(twin.k_cell_shift_V.numpy(),
                                  k_sample.vt_shift_V.transpose(0, 1, 3, 2))
    state = twin.state_dict()
    assert {"k_cell_gain", "k_cell_shift_V", "v_cell_gain", "v_cell_shift_V"} <= set(state)
    # Another module of the same shape takes the cells from the state_dict.
    other = fitted(window=40, array=16, mismatch_seed=8, heads=2, head_dim=8)
    other.load_state_dict(state)
    x = [torch.tensor(a) for a in random_inputs(twin.operating_point, (1, 2, 50, 8), 1)]
    torch.testing.assert_close(other(*x), twin(*x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="heads"):
        twin(*(a[:, :1] for a in x))


def test_refusals():
    with pytest.raises(TypeError, match="unknown option"):
        fitted(window=16, array=16, temprature_C=27)
    with pytest.raises(ValueError, match="unknown mode"):
        GainCellAttention("softmax", window=16)
    with pytest.raises(ValueError, match="window"):
        GainCellAttention("paper", window=0)
    with pytest.raises(ValueError, match="clip_gradient"):
        GainCellAttention("paper", window=16, clip_gradient="soft")
    # the decay fit covers about 1024 tokens at the design's token period
    with pytest.raises(ValueError, match="beyond"):
        fitted(window=2048, array=64)
    assert fitted(window=2048, array=64, extrapolate=True).warnings
    twin = fitted(window=16, array=16, clip=False)
    q, k, v = (torch.tensor(a) for a in random_inputs(twin.operating_point, (1, 1, 8, 4), 0))
    with pytest.raises(ValueError, match="outside the physical range"):
        twin(q, k, v)
    with pytest.raises(ValueError, match="one shape"):
        twin(q, k[:, :, :4], v)


# -- gradients ---------------------------------------------------------------------------------

def inputs_with_grad(twin, shape, seed, margin=-0.1):
    return [torch.tensor(a, requires_grad=True)
            for a in random_inputs(twin.operating_point, shape, seed, margin)]


GRADIENT_TWINS = [   # (id, twin from window, array and options)
    ("ideal", lambda w, a, **o: GainCellAttention("ideal", window=w, array=a, **o)),
    ("paper", lambda w, a, **o: GainCellAttention("paper", window=w, array=a,
                                                  decay_factor=0.05, **o)),
    ("linear", lambda w, a, **o: GainCellAttention("linear", window=w, array=a,
                                                   decay_factor=0.05, **o)),
    ("fitted", lambda w, a, **o: fitted(window=w, array=a, decay_factor=0.02, mismatch_seed=2,
                                        **o)),
    # sky130's cells hardly leak over the fitted ages: a decay far past them, to have one
    ("sky130", lambda w, a, **o: fitted(SKY130, window=w, array=a, decay_factor=0.05,
                                        mismatch_seed=2, extrapolate=True, **o)),
]


@pytest.mark.parametrize("make", [t[1] for t in GRADIENT_TWINS], ids=[t[0] for t in GRADIENT_TWINS])
def test_gradients_are_finite_and_nonzero_through_the_quantised_chain(make):
    twin = make(24, 8)
    q, k, v = inputs_with_grad(twin, (1, 2, 40, 8), 3, margin=0.05)
    out = twin(q, k, v)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    for name, x in (("q", q), ("k", k), ("v", v)):
        assert torch.isfinite(x.grad).all(), name
        assert x.grad.abs().sum() > 0, name


@pytest.mark.parametrize("make", [t[1] for t in GRADIENT_TWINS], ids=[t[0] for t in GRADIENT_TWINS])
def test_gradcheck_on_the_smooth_chain(make):
    """Quantisation off, inputs inside the ranges: the analytic gradients (the products' own
    backward passes, the features' recomputation) match finite differences."""
    twin = make(6, 4, quantize=False)
    q, k, v = inputs_with_grad(twin, (1, 2, 13, 3), 5)
    if twin.mode != "ideal":   # the converters work in their linear range here
        phi = twin.signals(q, k, v).phi
        t_max = twin.model.charge_to_pulse.t_max_s
        assert ((phi > 0) & (phi < t_max)).sum() > 10
    assert torch.autograd.gradcheck(twin, (q, k, v), eps=1e-6, atol=1e-6, rtol=1e-4,
                                    fast_mode=True)


def test_full_gradcheck_on_the_fitted_chain():
    """Every input's column of the Jacobian, not a random projection of it: the fitted model
    with mismatch, write error, per-level asymptotes and readout loading on a ring that wraps."""
    twin = fitted(window=6, array=4, decay_factor=0.05, mismatch_seed=2, quantize=False)
    q, k, v = inputs_with_grad(twin, (1, 1, 10, 2), 6)
    assert torch.autograd.gradcheck(twin, (q, k, v), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradcheck_on_the_dense_decay_path(monkeypatch):
    monkeypatch.setitem(nn_attention.FACTORISE_EXPONENT_LIMIT, torch.float64, 0.0)
    twin = fitted(window=6, array=4, decay_factor=0.05, mismatch_seed=2, quantize=False)
    q, k, v = inputs_with_grad(twin, (1, 2, 13, 3), 5)
    assert not twin._geometry(13).decay.factorised
    assert torch.autograd.gradcheck(twin, (q, k, v), eps=1e-6, atol=1e-6, rtol=1e-4,
                                    fast_mode=True)


@pytest.mark.parametrize("factorised", [True, False])
def test_gradcheck_of_the_array_products(factorised):
    """The products' hand-written backward passes, with pulses shared by every head (the
    resting rows) as well as per head."""
    gen = torch.Generator().manual_seed(0)
    T, K, D, A = 7, 8, 3, 4
    f = 0.1
    powers = torch.arange(3, dtype=torch.float64)[:, None]
    t, j = torch.arange(T, dtype=torch.float64), torch.arange(K, dtype=torch.float64)
    if factorised:
        decay = fn.DecayPowers(torch.exp(-f * powers * t), torch.exp(f * powers * j))
    else:
        decay = fn.DecayPowers(dense=torch.exp(-f * powers[:, :, None] * (t[:, None] - j)))

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    widths, features, pulses = rand(2, T, D), rand(2, K, 3, D), rand(2, T, K)
    shared = torch.rand(T, K, generator=gen, dtype=torch.float64)

    def column(w, F):
        return fn.column_product(w, fn.CellFeatures([0, 1, 2], F), decay.keys(K))

    def row(P, F):
        return fn.row_product(P, fn.CellFeatures([0, 1, 2], F), decay, A)

    assert torch.autograd.gradcheck(column, (widths, features))
    assert torch.autograd.gradcheck(row, (pulses, features))
    assert torch.autograd.gradcheck(lambda F: row(shared, F), (features,))
    assert torch.autograd.gradcheck(
        lambda F: fn.column_totals(fn.CellFeatures([0, 1, 2], F), decay.keys(K)), (features,))


def test_the_converters_pass_gradients_straight_through():
    """The DACs' and the counter's rounding pass the gradient unchanged (the published training
    code's straight-through estimator): with the counter on or off, and with the inputs
    quantised or already on their levels, the gradients are the same."""
    def grads(twin, inputs):
        inputs = [x.detach().clone().requires_grad_() for x in inputs]
        out = twin(*inputs)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        return [x.grad for x in inputs]

    base = dict(window=12, array=8, mismatch_seed=1)
    x = inputs_with_grad(fitted(**base), (1, 1, 20, 4), 7)
    counted = grads(fitted(**base), x)
    uncounted = grads(fitted(quantize_output=False, **base), x)
    for a, b in zip(counted, uncounted):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # inputs already on the DAC levels: the quantising module's gradient at x is the
    # non-quantising one's at the levels
    twin = fitted(quantize_output=False, **base)
    levels = [twin._dac(a.detach(), lo, hi, n, True, "") for a, (lo, hi, n) in zip(
        x, [(0.0, 1.0, 16), (0.0, 0.9, 8), (0.0, 0.9, 8)])]
    at_levels = grads(fitted(quantize=False, **base), levels)
    for a, b in zip(uncounted, at_levels):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_clipping_stops_the_gradient_unless_straight_through():
    x = torch.tensor([-0.5, 0.25, 1.5], dtype=torch.float64, requires_grad=True)
    fn.clip(x, 0.0, 1.0).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]
    x.grad = None
    fn.clip(x, 0.0, 1.0, straight_through=True).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
    x.grad = None
    fn.quantize(x, 0.0, 1.0, 4).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
    # through the module: a query element beyond [0, 1] gets a gradient only straight-through
    for clip_gradient, moves in (("clamp", False), ("straight_through", True)):
        twin = GainCellAttention("paper", window=8, array=8, decay=False,
                                 clip_gradient=clip_gradient)
        q, k, v = inputs_with_grad(twin, (1, 1, 8, 4), 2)
        with torch.no_grad():
            q[0, 0, 5, 1] = 1.7
        twin(q, k, v).sum().backward()
        assert (q.grad[0, 0, 5, 1] != 0) == moves


def test_interp_is_numpys():
    xp, fp = (0.0, 0.3, 0.5, 0.9), (1.0, -2.0, 0.5, 0.25)
    x = np.array([-0.2, 0.0, 0.1, 0.3, 0.42, 0.5, 0.899, 0.9, 1.3])
    np.testing.assert_array_equal(fn.interp(torch.tensor(x), xp, fp).numpy(),
                                  np.interp(x, xp, fp))


# -- the layers --------------------------------------------------------------------------------

def test_the_input_scalers_start_in_the_hardware_ranges():
    point = load_fitted_models(SKY130).operating_point
    keys = HardwareInputScaler.for_stored(3, point)
    queries = HardwareInputScaler.for_queries(3)
    x = torch.randn(2, 3, 500, 8, generator=torch.Generator().manual_seed(0))
    for scaler, lo, hi, centre in ((keys, 0.05, 1.75, 0.9), (queries, 0.0, 1.0, 0.5)):
        y = scaler(x).detach()
        assert abs(float(y.mean()) - centre) < 0.02 * (hi - lo)
        assert 0.9 < float(((y > lo) & (y < hi)).double().mean()) < 0.99   # about 2 sigma


def test_self_attention_layer_trains_end_to_end():
    """The layer in a model: gradients reach the projections, the scalers and the output gain,
    and a few optimiser steps on a fixed batch lower the loss."""
    torch.manual_seed(0)
    attention = fitted(window=16, array=8, mismatch_seed=0, dtype=torch.float32)
    layer = GainCellSelfAttention(d_model=16, heads=2, attention=attention)
    assert layer.attention.k_cell_gain.shape == (2, 2, 8, 8)   # drawn for the layer's heads
    x = torch.randn(4, 20, 16)
    target = torch.randn(4, 20, 16)
    optimiser = torch.optim.Adam(layer.parameters(), lr=3e-2)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        y = layer(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        loss = (y - target).square().mean()
        loss.backward()
        losses.append(loss.item())
        optimiser.step()
    for name in ("qkv.weight", "out.weight", "q_scaler.scale", "k_scaler.offset",
                 "v_scaler.scale", "output_gain"):
        grad = dict(layer.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert losses[-1] < 0.9 * losses[0], losses


def test_the_guides_examples_run(monkeypatch):
    """docs/guide/torch.md's Python blocks, run as they are, in order, as one script from the
    repository's folder."""
    import re
    root = Path(__file__).resolve().parents[1]
    guide = (root / "docs" / "guide" / "torch.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(root)
    namespace = {}
    exec(compile("\n".join(blocks), "torch.md", "exec"), namespace)
    assert namespace["out"].shape == (2, 4, 128, 32)
    np.testing.assert_allclose(namespace["result"].output, namespace["out"].numpy(),
                               rtol=0, atol=1e-6)
    assert namespace["y"].shape == (4, 2, 24, 16)
