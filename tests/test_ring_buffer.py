"""Fitted mode reads the window per physical array of the ring buffer (issue 17): checked against
a dense reference written from the definition, one query and one physical array at a time."""

import math
from dataclasses import replace

import numpy as np
import pytest

from gcsim.hw import default_fits_dir, load_fitted_models, paper_model
from gcsim.simulate import SimulationConfig, simulate_attention
from gcsim.simulate.attention import draw_mismatch, prepare_inputs


def builtin_model():
    """The repository's fitted model (readout loading, mismatch, pulse edges, converter offset,
    write error, per-level decay asymptotes), without the read disturb (a fold into the
    asymptotes that tests/test_fidelity.py checks)."""
    fits = default_fits_dir()
    if fits is None:
        pytest.skip("no committed fits bundle")
    model = load_fitted_models(fits)
    assert model.ring_buffer and model.loading is not None
    assert model.write_error is not None and model.decay.asymptote_levels_V is not None
    return replace(model, read_disturb=None)


def dense_v_side(model, phi, v_written, window, array, decay_factor, cells, loading):
    """Output (T, D) of the V side from phi (T, T) by the definition: for each query t and each
    physical array p of the ring (key j lives in array (j // array) % n, row j % array), the
    column charge is the sum over the window's keys held by p of drive x cell current, read by
    p's one signed converter; the outputs of the arrays the window reaches are summed.

    With readout loading, p's integrator loses G (offset T + a int Q dt + b S), where G is the
    off conductance of every cell on p's bitline (each row holds the newest key written to it;
    a row not yet written stands in with the key that will be, the decay law run backwards as
    the simulator's factorised decay does) plus the pulsed cells' extra conductance, and its
    converter discharges at I / (1 - G_rest b + sign G_rest offset / I)."""
    T, D = v_written.shape
    n = math.ceil(window / array)
    ring = n * array
    gain, shift = cells
    v_written = model.write_error.written_V(v_written)   # where the DAC's writes land
    mid, asymptotes = model.cell.v_mid_V, model.decay.asymptote_of(v_written)
    poly = np.polynomial.polynomial.polyval
    current = model.cell.power_coefficients_A(model.read_on_V)
    lo = model.loading
    edge = model.pulse_edge_time_s
    out = np.zeros((T, D))
    for t in range(T):
        def x(j):   # the cell's read deviation, key j at age t - j, on its physical cell
            e = math.exp(-decay_factor * (t - j))
            return asymptotes[j] + (v_written[j] - asymptotes[j]) * e - mid + shift[j]
        for p in range(n):
            keys = [j for j in range(max(0, t - window + 1), t + 1) if (j // array) % n == p]
            if not keys:
                continue   # not read: neither integrated nor converted
            charge = np.zeros(D)
            moving = np.zeros(D)
            extra = np.zeros(D)
            for j in keys:
                drive = phi[t, j] + edge * (phi[t, j] > 0)
                cell = gain[j] * poly(x(j), current)
                charge += drive * cell
                if loading:
                    w = min(drive, lo.v_window_s - lo.v_pulse_start_s)
                    hold = w * (lo.v_window_s - lo.v_pulse_start_s) - 0.5 * w * w
                    moving += cell * (lo.charge_coefficient_V_per_C * hold
                                      + lo.current_coefficient_V_per_A * drive)
                    g_on = gain[j] * poly(x(j), lo.on_conductance_S)
                    g_off = gain[j] * poly(x(j), lo.off_conductance_S)
                    extra += (g_on - g_off) * w
            if loading:
                rest = np.zeros(D)
                for row in range(p * array, (p + 1) * array):
                    written = [j for j in range(row, t + 1, ring)]
                    held = written[-1] if written else row
                    if held < T:   # past the sequence the simulator has no cells
                        rest += gain[held] * poly(x(held), lo.off_conductance_S)
                g = rest + extra / lo.v_window_s
                charge = charge - g * (lo.offset_V * lo.v_window_s + moving)
                rate = (1 - rest * lo.current_coefficient_V_per_A
                        + np.sign(charge) * rest * lo.offset_V / lo.v_conversion_current_A)
                charge = charge / rate
            out[t] += model.output_converter.convert(charge, quantize=False)
    return out


def v_cells(model, seed, window, array, T, D):
    """Each token's V cell (gain, shift) from the simulator's draw, mapped onto the ring here."""
    if seed is None:
        return np.ones((T, D)), np.zeros((T, D))
    config = SimulationConfig(array_size=array)
    _, sample = draw_mismatch(model, seed, 1, D, config, window)
    n = math.ceil(window / array)
    j = np.arange(T)
    return (sample.gain[0][(j // array) % n, j % array],
            sample.vt_shift_V[0][(j // array) % n, j % array])


@pytest.mark.parametrize("T, window, array, decay_factor, seed, loading", [
    (130, 48, 16, False, None, False),     # window a whole number of arrays, ideal readout
    (130, 40, 16, 0.01, None, False),      # not a whole number: rows past the window
    (130, 40, 16, 0.01, 3, True),          # with mismatch and readout loading
    (150, 48, 16, 0.004, 5, True),
    (120, 40, 16, False, None, True),
    (90, 16, 16, 0.01, 2, True),           # one array: every query splits it (or fills it)
    (130, 49, 16, 0.01, 4, True),          # W = 3A + 1: rows held from before a block's keys
    (200, 100, 64, 0.002, 1, True),        # the published array size, window of 1.56 arrays
])
def test_fitted_mode_matches_the_dense_physical_array_reference(T, window, array, decay_factor,
                                                                seed, loading):
    model = builtin_model()
    D = 8
    rng = np.random.default_rng(T + window)
    q, k, v = rng.random((T, D)), rng.random((T, D)) * 0.9, rng.random((T, D)) * 0.9
    config = SimulationConfig(window=window, array_size=array, decay=decay_factor is not False,
                              decay_factor=decay_factor or None, mismatch_seed=seed,
                              readout_loading=loading, quantize_output=False, block_queries=32,
                              loading_dtype="float64")   # the reference is float64 throughout
    result = simulate_attention(q, k, v, "fitted", model=model, config=config)
    _, _, vd = prepare_inputs(q, k, v, config, model.operating_point)
    cells = v_cells(model, seed, window, array, T, D)
    phi = result.dense("phi")[0, 0]
    expected = dense_v_side(model, phi, vd[0, 0], window, array, decay_factor or 0.0, cells,
                            loading)
    assert np.abs(expected).max() > 0.05
    np.testing.assert_allclose(result.output[:, :], expected, rtol=1e-9, atol=1e-12)
    # The kept slots are the physical arrays' outputs: at most ceil(W / A), summing to the output.
    n = math.ceil(window / array)
    assert result.subtile_outputs.shape[-2] == min(n, math.ceil(T / array))
    np.testing.assert_allclose(result.subtile_outputs[0, 0].sum(axis=1), result.output,
                               rtol=1e-12, atol=1e-12)
    arrays = result.array_indices()
    for t in range(T):
        used = arrays[t][arrays[t] >= 0]
        assert len(set(used)) == len(used)   # one slot per physical array


def test_block_size_does_not_change_the_output():
    """The arrays a block reaches but a query's window does not are not converted: with the
    converter's charge offset and no output quantisation they used to add -offset/full scale."""
    model = builtin_model()
    rng = np.random.default_rng(1)
    q, k, v = rng.random((200, 8)), rng.random((200, 8)) * 0.9, rng.random((200, 8)) * 0.9
    outputs = [simulate_attention(q, k, v, "fitted", model=model, config=SimulationConfig(
        window=100, block_queries=block, quantize_output=False)).output for block in (64, 192)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-12, atol=1e-15)


def split_case():
    """A window of one 4-key array, T = 6: query 5 reads keys 2, 3 (old) and 4, 5 (new), which
    share the one physical array. Values at the top rail and full-width pulses: each half alone
    stays under the converter's full scale, together they clip."""
    q = np.ones((6, 8))
    k = np.full((6, 8), 0.9)
    v = np.full((6, 8), 0.9)
    return q, k, v, SimulationConfig(window=4, array_size=4, decay=False, readout_loading=False)


def test_a_split_array_is_converted_once_and_clips_as_one_column():
    model = replace(builtin_model(), mismatch=None)
    q, k, v, config = split_case()
    ring = simulate_attention(q, k, v, "fitted", model=model, config=config)
    subtiles = simulate_attention(q, k, v, "fitted", model=replace(model, ring_buffer=False),
                                  config=config)
    per_key = ring.subtile_outputs[0, 0, 0, 0, 0]    # query 0: one key in its window
    assert 0.3 < per_key < 0.5     # so two keys stay under full scale and four clip
    # Until the ring wraps the two agree; query 5's window splits the array into 2 + 2 keys.
    np.testing.assert_array_equal(ring.output[:4], subtiles.output[:4])
    clipped = ring.output[2, 0]                             # three keys already clip
    assert ring.output[5, 0] == clipped < 1.1               # one conversion of four keys
    assert subtiles.output[5, 0] > 1.3                      # two conversions of two keys each
    assert ring.subtile_outputs.shape[-2] == 1 and subtiles.subtile_outputs.shape[-2] == 2
    np.testing.assert_array_equal(ring.subtile_indices()[5], [0])      # the oldest sub-tile
    np.testing.assert_array_equal(subtiles.subtile_indices()[5], [0, 1])
    np.testing.assert_array_equal(subtiles.array_indices()[5], [0, 0])


def test_paper_mode_still_converts_each_subtile():
    q, k, v, config = split_case()
    model = paper_model()
    assert not model.ring_buffer
    r = simulate_attention(q, k, v, "paper", config=config)
    assert r.ring_arrays is None and r.subtile_outputs.shape[-2] == 2
    np.testing.assert_array_equal(r.subtile_indices()[5], [0, 1])
    # Sub-tiles 0 and 1 each hold two of query 5's keys and are quantised on their own.
    np.testing.assert_allclose(r.output[5], r.subtile_outputs[0, 0, 5].sum(axis=0))
    assert np.all(r.subtile_outputs[0, 0, 5] != 0)
