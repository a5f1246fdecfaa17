"""`linear`, `ideal` and `fitted` modes: hand-computed cases, the fits-bundle loader, mismatch."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from gcsim.fit.bundle import write_parameter_bundle
from gcsim.simulate import (
    CellMismatch,
    FitsBundleError,
    SimulationConfig,
    fitted_model_from_paper_coefficients,
    load_fitted_models,
    simulate_attention,
)
from gcsim.hw import PAPER, PolynomialCell

UNIT = 1e-6 * 15e-9  # the published charge unit, 1 µA x T_max
C = [0.17393044, 0.15653739, 0.14088365, 0.12679529, 5.51975209,
     4.96777688, 4.4709992, -1.44776001, -1.30298401, 46.05483778]  # fmt: skip
IJ = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0)]
# Linear gain in µA/V: least-squares slope of the published curve at V_in = 0.9 V over +-0.45 V.
G = (C[4] + C[5] * 0.9 + C[6] * 0.81) + C[9] * 3 * 0.45**2 / 5
NO_QUANT = dict(quantize_inputs=False, quantize_output=False)


def test_linear_two_tokens_by_hand():
    q, k, v = np.array([[1.0], [0.5]]), np.array([[0.9], [0.0]]), np.array([[0.9], [0.45]])
    r = simulate_attention(q, k, v, "linear", config=SimulationConfig(decay=False, **NO_QUANT))
    S = r.dense("S")[0, 0] / UNIT
    np.testing.assert_allclose(S, [[0.45 * G, 0], [0.225 * G, -0.225 * G]], rtol=1e-12)
    phi = r.dense("phi")[0, 0] / 15e-9
    np.testing.assert_allclose(phi, [[0.45 * G / 80, 0], [0.225 * G / 80, 0]], rtol=1e-12)
    out0 = (0.45 * G / 80) * G * 0.45 / 40
    np.testing.assert_allclose(r.output, [[out0], [out0 / 2]], rtol=1e-12)


def test_linear_saturated_hardsigmoid_and_per_subtile_quantisation():
    T, D = 8, 64
    q, k, v = np.ones((T, D)), np.full((T, D), 0.9), np.full((T, D), 0.9)
    # Every S = 64 * G * 0.45 > 80, so every pulse is T_max; sub-tile charge = n_keys * G * 0.45.
    per_key = G * 0.45 / 40
    step = 2 / 31

    def counter(a):
        return step * np.round(min(a, 1.0) / step)

    r = simulate_attention(q, k, v, "linear", config=SimulationConfig(decay=False))
    expected = [counter((t + 1) * per_key) for t in range(T)]
    np.testing.assert_allclose(r.output[:, 0], expected, rtol=1e-12)
    assert r.output[3, 0] == pytest.approx(13 * step)
    # Sub-tiles of two keys are counted separately, then summed digitally.
    r2 = simulate_attention(q, k, v, "linear", config=SimulationConfig(decay=False, array_size=2))
    expected2 = [
        sum(counter(min(2, t + 1 - s) * per_key) for s in range(0, t + 1, 2)) for t in range(T)
    ]
    np.testing.assert_allclose(r2.output[:, 0], expected2, rtol=1e-12)
    assert r2.output[3, 0] == pytest.approx(2 * 7 * step)


def test_linear_decay_by_hand():
    f = 0.1
    q, k, v = np.ones((2, 1)), np.full((2, 1), 0.9), np.full((2, 1), 0.9)
    r = simulate_attention(q, k, v, "linear", config=SimulationConfig(decay_factor=f, **NO_QUANT))
    e = math.exp(-f)
    S10, S11 = G * 0.45 * e, G * 0.45
    np.testing.assert_allclose(r.dense("S")[0, 0, 1] / UNIT, [S10, S11], rtol=1e-12)
    out1 = (S10 / 80 * G * 0.45 * e + S11 / 80 * G * 0.45) / 40
    np.testing.assert_allclose(r.output[1, 0], out1, rtol=1e-12)


def test_ideal_is_windowed_softmax_attention():
    rng = np.random.default_rng(2)
    q, k, v = rng.random((30, 4)), rng.random((30, 4)) * 0.9, rng.random((30, 4)) * 0.9
    r = simulate_attention(q, k, v, "ideal", config=SimulationConfig(window=5, block_queries=8))
    for t in range(30):
        keys = range(max(0, t - 4), t + 1)
        logits = np.array([q[t] @ (k[j] - 0.45) / 2.0 for j in keys])
        w = np.exp(logits - logits.max())
        w /= w.sum()
        np.testing.assert_allclose(r.output[t], sum(wi * (v[j] - 0.45) for wi, j in zip(w, keys)))
    np.testing.assert_allclose(r.phi[0, 0].sum(axis=1), 1.0)


def test_cell_without_stored_value_dependence_ignores_decay_and_values():
    # Only C_00: every cell sources the same current, so S = c * sum(q) * T_max for every key.
    c_uA = 2.0
    model = replace(
        fitted_model_from_paper_coefficients(),
        cell=PolynomialCell(coefficients_A=(c_uA * 1e-6,) + (0.0,) * 9, v_mid_V=PAPER.mid_rail_V),
    )
    rng = np.random.default_rng(12)
    q, k, v = rng.random((20, 4)), rng.random((20, 4)) * 0.9, rng.random((20, 4)) * 0.9
    config = SimulationConfig(decay_factor=0.3, **NO_QUANT)
    r = simulate_attention(q, k, v, "fitted", model=model, config=config)
    S = c_uA * q.sum(axis=1)
    np.testing.assert_allclose(r.dense("S")[0, 0] / UNIT, np.tril(np.repeat(S[:, None], 20, 1)))
    phi = np.minimum(S / 80, 1)
    expected = phi * np.arange(1, 21) * c_uA / 40  # t + 1 keys in the window, each c_uA
    np.testing.assert_allclose(r.output, np.repeat(expected[:, None], 4, 1))


# --- fitted mode -------------------------------------------------------------------------------


def write_bundle(directory, coefficients_uA=C, time_constant_s=5e-3, asymptote_V=0.45,
                 readout=None, c2p=None, mismatch=None):  # fmt: skip
    readout = readout or {}
    if mismatch:
        mismatch = (mismatch["gain_sigma"], mismatch["vt_sigma_V"])
    c2p = c2p or {"slope_s_per_C": 15e-9 / (80 * UNIT), "offset_C": 0.0, "t_max_s": 15e-9}
    return write_parameter_bundle(
        directory, [c * 1e-6 for c in coefficients_uA], time_constant_s=time_constant_s,
        asymptote_V=asymptote_V, slope_s_per_C=c2p["slope_s_per_C"], t_max_s=c2p["t_max_s"],
        c2p_offset_C=c2p["offset_C"], readout_gain=readout.get("gain", 1.0),
        readout_offset_C=readout.get("offset_C", 0.0), saturation_C=readout.get("saturation_C"),
        mismatch=mismatch, v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)


def test_fitted_bundle_with_published_parameters_reproduces_paper(tmp_path):
    bundle = write_bundle(tmp_path / "fits")
    rng = np.random.default_rng(4)
    q, k, v = rng.random((150, 64)), rng.random((150, 64)) * 0.9, rng.random((150, 64)) * 0.9
    config = SimulationConfig(window=100)
    fitted = simulate_attention(q, k, v, "fitted", fits_dir=bundle, config=config)
    assert fitted.decay_factor == pytest.approx(0.8e-6 / 5e-3)
    config = SimulationConfig(window=100, decay_factor=fitted.decay_factor)
    paper = simulate_attention(q, k, v, "paper", config=config)
    np.testing.assert_allclose(fitted.S, paper.S, rtol=1e-12, atol=1e-12 * np.abs(paper.S).max())
    # Fitted mode converts each physical array of the ring buffer once (2 arrays of 64 here),
    # paper each sub-tile: they agree until the ring wraps (token 128), and afterwards
    # whenever the window does not split an array between its oldest and newest keys.
    t = np.arange(150)
    whole = (t < 128) | ((t + 1) % 64 == 0)
    np.testing.assert_allclose(fitted.output[whole], paper.output[whole], atol=1e-12)
    assert not np.allclose(fitted.output[~whole], paper.output[~whole], atol=1e-12)


def test_fitted_token_period_sets_decay():
    model = fitted_model_from_paper_coefficients()
    assert "no fits bundle" in model.label
    assert model.resolve_decay_factor(token_period_s=2e-6) == pytest.approx(2e-6 / 5e-3)
    assert model.resolve_decay_factor(decay_factor=0.0) == 0.0


def test_fitted_models_with_offsets_and_non_mid_rail_asymptote_match_dense_reference(tmp_path):
    coeffs = [0.2, 0.1, -0.05, 0.02, 6.0, 3.0, 1.0, -2.0, 0.5, 30.0]  # µA, made up but generic
    readout = {"gain": 1.1, "offset_C": 2 * UNIT, "saturation_C": 12 * UNIT}
    c2p = {"slope_s_per_C": 15e-9 / (5 * UNIT), "offset_C": 3 * UNIT, "t_max_s": 15e-9}
    bundle = write_bundle(tmp_path / "fits", coeffs, time_constant_s=1e-4, asymptote_V=0.3,
                          readout=readout, c2p=c2p)  # fmt: skip
    rng = np.random.default_rng(8)
    T, D, W, A = 140, 32, 90, 32
    q, k, v = rng.random((T, D)), rng.random((T, D)) * 0.9, rng.random((T, D)) * 0.9
    period = 2e-6
    config = SimulationConfig(window=W, array_size=A, token_period_s=period, block_queries=64)
    r = simulate_attention(q, k, v, "fitted", fits_dir=bundle, config=config)

    # Dense reference, in µA and fractions of T_max, straight from the model definitions.
    qq = np.round(q * 15) / 15
    kk, vv = (np.round(x / (0.9 / 7)) * (0.9 / 7) for x in (k, v))
    f = period / 1e-4
    t_idx, j_idx = np.arange(T)[:, None], np.arange(T)[None, :]
    M = (j_idx <= t_idx) & (j_idx > t_idx - W)
    e = np.exp(-f * np.where(M, t_idx - j_idx, 0))[:, :, None]  # (t, j, 1)

    def current(stored):  # stored: (t, j, d) after decay
        x = stored - 0.45
        return sum(c * x**i * 0.9**p for c, (i, p) in zip(coeffs, IJ))

    k_aged = 0.3 + (kk[None] - 0.3) * e
    v_aged = 0.3 + (vv[None] - 0.3) * e
    S = np.einsum("td,tjd->tj", qq, current(k_aged))
    S = np.clip(1.1 * S + 2, -12, 12)
    phi = np.clip((S - 3) / 5, 0, 1) * M
    out = np.zeros((T, D))
    for s0 in range(0, T, A):
        a = np.einsum("tj,tjd->td", phi[:, s0 : s0 + A], current(v_aged[:, s0 : s0 + A]))
        out += np.round(np.clip(a / 40, -1, 1) / (2 / 31)) * (2 / 31)
    np.testing.assert_allclose(r.dense("S")[0, 0] / UNIT, np.where(M, S, 0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r.dense("phi")[0, 0] / 15e-9, phi, atol=1e-12)
    np.testing.assert_allclose(r.output, out, atol=1e-9)
    assert np.any(S == 12) and np.any(phi == 0) and np.any(phi == 1)


def test_missing_or_malformed_fits_bundle_gives_clear_errors(tmp_path, monkeypatch):
    from gcsim.core import resources

    monkeypatch.setattr(resources, "FITS", tmp_path / "no-committed-fits")
    with pytest.raises(FitsBundleError, match="not found"):
        load_fitted_models(tmp_path / "nowhere")
    with pytest.raises(FitsBundleError, match="needs a fits bundle"):
        simulate_attention(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)), "fitted")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "nonlinearity.json").write_text("{}")
    with pytest.raises(FitsBundleError, match="missing decay.json"):
        load_fitted_models(partial)
    bundle = write_bundle(tmp_path / "bad")
    record = json.loads((bundle / "nonlinearity.json").read_text())
    record["parameters"]["coefficients"]["value"] = [1.0, 2.0]
    (bundle / "nonlinearity.json").write_text(json.dumps(record))
    with pytest.raises(FitsBundleError, match="triangular"):
        load_fitted_models(bundle)
    (bundle / "decay.json").write_text("{not json")
    with pytest.raises(FitsBundleError, match="not valid JSON"):
        load_fitted_models(bundle)
    (bundle / "decay.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(FitsBundleError, match="not a gcsim fit file"):
        load_fitted_models(bundle)


# --- mismatch ----------------------------------------------------------------------------------


def test_mismatch_is_drawn_once_per_physical_cell_and_held(tmp_path):
    bundle = write_bundle(
        tmp_path / "fits", mismatch={"gain_sigma": 0.05, "vt_sigma_V": 0.01}
    )
    rng = np.random.default_rng(6)
    H, T, D, W, A = 2, 100, 8, 32, 16
    q, k, v = rng.random((H, T, D)), rng.random((H, T, D)) * 0.9, rng.random((H, T, D)) * 0.9

    def run(seed, **kw):
        config = SimulationConfig(window=W, array_size=A, mismatch_seed=seed, **kw)
        return simulate_attention(q, k, v, "fitted", fits_dir=bundle, config=config)

    plain = run(None)
    first, again, other = run(3), run(3), run(4)
    np.testing.assert_array_equal(first.output, again.output)
    assert not np.allclose(first.S / UNIT, plain.S / UNIT)
    assert not np.allclose(first.S / UNIT, other.S / UNIT)

    # Dense reference: token j lives in array (j // A) % (W / A), column j % A, of its head.
    model = load_fitted_models(bundle)
    draw_rng = np.random.default_rng(3)
    k_cells = model.mismatch.draw(draw_rng, (H, W // A, D, A))
    v_cells = model.mismatch.draw(draw_rng, (H, W // A, A, D))
    qq = np.round(q * 15) / 15
    kk, vv = (np.round(x / (0.9 / 7)) * (0.9 / 7) for x in (k, v))
    f = 0.8e-6 / 5e-3
    for h in range(H):
        for t in (0, 17, 55, 99):
            for j in range(max(0, t - W + 1), t + 1):
                arr, col = (j // A) % (W // A), j % A
                gain, shift = k_cells.gain[h, arr, :, col], k_cells.vt_shift_V[h, arr, :, col]
                x = (kk[h, j] - 0.45) * math.exp(-f * (t - j)) + shift
                current = gain * sum(c * x**i * 0.9**p for c, (i, p) in zip(C, IJ))
                s = np.sum(qq[h, t] * current)
                w = j - (t - min(W, T) + 1)  # band column of key j
                np.testing.assert_allclose(first.S[0, h, t, w] / UNIT, s, rtol=1e-9)
    assert v_cells.gain.shape == (H, W // A, A, D)


def test_zero_sigma_mismatch_changes_nothing():
    model = replace(fitted_model_from_paper_coefficients(), mismatch=CellMismatch(0.0, 0.0))
    rng = np.random.default_rng(9)
    q, k, v = rng.random((70, 16)), rng.random((70, 16)) * 0.9, rng.random((70, 16)) * 0.9
    a = simulate_attention(q, k, v, "fitted", model=model, config=SimulationConfig(mismatch_seed=1))
    b = simulate_attention(q, k, v, "fitted", model=model, config=SimulationConfig())
    np.testing.assert_allclose(a.output, b.output, atol=1e-12)
    np.testing.assert_allclose(a.S, b.S, rtol=1e-12, atol=1e-25)


# --- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    good = np.full((10, 4), 0.5)
    with pytest.raises(ValueError, match="same shape"):
        simulate_attention(good, good, np.full((9, 4), 0.5))
    with pytest.raises(ValueError, match="2-D"):
        simulate_attention(good[0], good[0], good[0])
    with pytest.raises(ValueError, match="outside the physical range"):
        simulate_attention(good * 2.1, good, good, config=SimulationConfig(clip_inputs=False))
    with pytest.raises(ValueError, match="unknown mode"):
        simulate_attention(good, good, good, "quantum")
    with pytest.raises(ValueError, match="window"):
        simulate_attention(good, good, good, config=SimulationConfig(window=0))
    with pytest.raises(ValueError, match="either a decay factor or a token period"):
        both = SimulationConfig(decay_factor=0.1, token_period_s=1e-6)
        simulate_attention(good, good, good, config=both)
    with pytest.raises(ValueError, match="numeric"):
        simulate_attention(good.astype(str), good, good)


def test_pulse_edges_and_converter_dead_zone_match_a_dense_reference():
    """Every pulse that is on carries `pulse_edge_time_s` of extra drive (query and φ alike);
    φ itself is the converter's width, zero below its threshold charge."""
    from gcsim.hw.stages import ChargeToPulse

    edge, threshold = 0.4e-9, 10 * UNIT
    model = replace(fitted_model_from_paper_coefficients(), pulse_edge_time_s=edge,
                    charge_to_pulse=ChargeToPulse(15e-9 / (80 * UNIT), 15e-9, -2 * UNIT,
                                                  threshold))
    rng = np.random.default_rng(12)
    T, D, A = 64, 16, 64
    q, k, v = rng.random((T, D)), rng.random((T, D)) * 0.9, rng.random((T, D)) * 0.9
    q[:, :3] = 0.0  # some queries off: no pulse, no edge charge
    config = SimulationConfig(window=T, array_size=A, decay=False, quantize_output=False)
    r = simulate_attention(q, k, v, "fitted", model=model, config=config)

    qq = np.round(q * 15) / 15
    kk, vv = (np.round(x / (0.9 / 7)) * (0.9 / 7) for x in (k, v))
    cell = model.cell.current_A
    width = qq * 15e-9 + edge * (qq > 0)
    S = width @ cell(kk, 0.9).T                       # (t, j) column charges
    M = np.tril(np.ones((T, T), bool))
    phi = np.clip(15e-9 / (80 * UNIT) * (S + 2 * UNIT), 0, 15e-9) * (S >= threshold) * M
    drive = phi + edge * (phi > 0)
    out = np.clip(drive @ cell(vv, 0.9) / (40 * UNIT), -1, 1)
    np.testing.assert_allclose(r.dense("S")[0, 0], np.where(M, S, 0), rtol=1e-9, atol=1e-22)
    np.testing.assert_allclose(r.dense("phi")[0, 0], phi, rtol=1e-9, atol=1e-21)
    np.testing.assert_allclose(r.output, out, rtol=1e-9, atol=1e-12)
    assert np.any((S > 0) & (S < threshold) & M) and np.any(phi > 0)
