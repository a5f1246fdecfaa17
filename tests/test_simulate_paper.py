"""`paper` mode against a plain dense transcription of MISSION.md's published model."""

import numpy as np
import pytest

from gcsim.simulate import SimulationConfig, simulate_attention

# Written out again on purpose: the reference must not share code with the simulator.
C = [0.17393044, 0.15653739, 0.14088365, 0.12679529, 5.51975209,
     4.96777688, 4.4709992, -1.44776001, -1.30298401, 46.05483778]  # fmt: skip
IJ = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0)]
CHARGE_UNIT_C = 1e-6 * 15e-9
T_MAX_S = 15e-9


def quant(x, lo, hi, levels):
    step = (hi - lo) / (levels - 1)
    return step * np.round(x / step)


def dense_paper(q, k, v, window, array=64, quantize=True, decay_factor=1.6e-4):
    """Full T x T matrices and a loop over sub-tiles, exactly as the published model reads."""
    q, k, v = np.clip(q, 0, 1), np.clip(k, 0, 0.9), np.clip(v, 0, 0.9)
    if quantize:
        q, k, v = quant(q, 0, 1, 16), quant(k, 0, 0.9, 8), quant(v, 0, 0.9, 8)
    T, D = q.shape
    t = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    M = (j <= t) & (j > t - window)
    d = np.exp(-decay_factor) ** np.where(M, t - j, 0)
    S = np.zeros((T, T))
    for c, (i, p) in zip(C, IJ):
        S += c * 0.9**p * (q @ ((k.T - 0.45) ** i)) * d**i
    S[~M] = 0
    phi = np.clip(S / 80, 0, 1)
    phi[~M] = 0
    subtiles = []
    for start in range(0, T, array):
        cols = slice(start, start + array)
        A = np.zeros((T, D))
        for c, (i, p) in zip(C, IJ):
            A += c * 0.9**p * ((phi[:, cols] * d[:, cols] ** i) @ ((v[cols] - 0.45) ** i))
        A = np.clip(A / 40, -1, 1)
        if quantize:
            A = quant(A, -1, 1, 32)
        subtiles.append(A)
    subtiles = np.stack(subtiles, axis=1)  # (T, all sub-tiles, D)
    return S, phi, subtiles, subtiles.sum(axis=1)


def random_qkv(T, D, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    # A little outside the physical ranges, so that clipping is exercised too.
    q = rng.uniform(-0.05, 1.05, (T, D)) * spread
    k = rng.uniform(-0.05, 0.95, (T, D))
    v = rng.uniform(-0.05, 0.95, (T, D))
    return q, k, v


def check_against_dense(q, k, v, window, quantize, decay_factor, block=128, array=64):
    S, phi, subtiles, out = dense_paper(q, k, v, window, array, quantize, decay_factor)
    config = SimulationConfig(
        window=window,
        array_size=array,
        quantize_inputs=quantize,
        quantize_output=quantize,
        decay_factor=decay_factor,
        block_queries=block,
    )
    result = simulate_attention(q, k, v, "paper", config=config)
    np.testing.assert_allclose(result.dense("S")[0, 0] / CHARGE_UNIT_C, S, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(result.dense("phi")[0, 0] / T_MAX_S, phi, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.output, out, rtol=0, atol=1e-12)
    # Each kept slot is the matching sub-tile's output; every other sub-tile contributes zero.
    index = result.subtile_indices()
    kept = np.zeros_like(subtiles)
    for t in range(len(q)):
        for slot, m in enumerate(index[t]):
            if m >= 0:
                np.testing.assert_allclose(
                    result.subtile_outputs[0, 0, t, slot], subtiles[t, m], atol=1e-12
                )
                kept[t, m] = subtiles[t, m]
    np.testing.assert_array_equal(kept, subtiles)
    return result, S, out


@pytest.mark.parametrize(
    "T, window, quantize, decay_factor",
    [
        (200, 1024, True, 1.6e-4),  # window longer than the sequence; T not a multiple of 64
        (200, 70, True, 1.6e-4),  # window not a multiple of the array: sub-tiles cut at both ends
        (333, 100, False, 1e-2),  # no quantisation, strong decay
        (150, 1000, True, 0.0),  # decay off
        (500, 64, True, 0.5),  # decay factors re-based per block
        (260, 64, False, 4.0),  # decay too strong to factorise: explicit decay matrix
    ],
)
def test_paper_matches_dense_reference(T, window, quantize, decay_factor):
    q, k, v = random_qkv(T, 64, seed=T + window)
    result, S, out = check_against_dense(q, k, v, window, quantize, decay_factor)
    assert np.any(S > 80) and np.any(S < 0)  # both ends of the HardSigmoid are exercised
    assert np.any(out != 0)


@pytest.mark.parametrize("block", [64, 100, 192, 512])
def test_blocked_equals_dense_for_any_block_size(block):
    q, k, v = random_qkv(230, 8, seed=7)
    check_against_dense(q, k, v, window=96, quantize=True, decay_factor=1e-3, block=block)


def test_small_array_size_and_default_decay():
    q, k, v = random_qkv(130, 8, seed=3)
    S, phi, subtiles, out = dense_paper(q, k, v, window=50, array=16)
    config = SimulationConfig(window=50, array_size=16)
    result = simulate_attention(q, k, v, "paper", config=config)
    assert result.decay_factor == 1.6e-4
    np.testing.assert_allclose(result.output, out, atol=1e-12)


def test_batched_4d_inputs_match_per_head_reference():
    rng = np.random.default_rng(11)
    q = rng.random((2, 3, 90, 8))
    k = rng.random((2, 3, 90, 8)) * 0.9
    v = rng.random((2, 3, 90, 8)) * 0.9
    result = simulate_attention(q, k, v, "paper", config=SimulationConfig(window=40))
    assert result.output.shape == q.shape
    for b in range(2):
        for h in range(3):
            *_, out = dense_paper(q[b, h], k[b, h], v[b, h], window=40)
            np.testing.assert_allclose(result.output[b, h], out, atol=1e-12)


def test_published_S_scale_for_single_64_row_tiles():
    # MISSION.md: 64x64 tiles, no quantisation, no decay -> S roughly -80...+100, outputs
    # roughly -0.9...+1; this pins the unit of S (µA x T_max) and the converters' scale.
    rng = np.random.default_rng(0)
    q, k, v = rng.random((64, 64)), rng.random((64, 64)) * 0.9, rng.random((64, 64)) * 0.9
    config = SimulationConfig(window=64, quantize_inputs=False, quantize_output=False, decay=False)
    result = simulate_attention(q, k, v, "paper", config=config)
    s_units = result.S_in_paper_units()
    assert -150 < s_units.min() < -30 and 40 < s_units.max() < 200
    assert -1.0 <= result.output.min() < -0.3 and 0.3 < result.output.max() <= 1.0


def test_float32_arrays_stay_close_to_float64():
    q, k, v = random_qkv(150, 16, seed=5)
    base = SimulationConfig(window=100, quantize_output=False)
    r64 = simulate_attention(q, k, v, "paper", config=base)
    single = SimulationConfig(**{**base.__dict__, "dtype": "float32"})
    r32 = simulate_attention(q, k, v, "paper", config=single)
    np.testing.assert_allclose(r32.S, r64.S, rtol=1e-4, atol=1e-4 * np.abs(r64.S).max())
    np.testing.assert_allclose(r32.output, r64.output, atol=1e-4)
