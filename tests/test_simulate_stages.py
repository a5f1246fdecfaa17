"""Each stage of the signal chain against its physical meaning."""

import numpy as np
import pytest

from gcsim.simulate import (
    PAPER,
    ChargeToPulse,
    ExponentialDecay,
    GainCellArray,
    InputDAC,
    PolynomialCell,
    Readout,
    paper_model,
    quantize,
    query_pulse_width_s,
    subtile_sum,
    window_mask,
)
from gcsim.hw import linear_model, polynomial_basis

MODEL = paper_model()
A_COEFF = MODEL.cell.power_coefficients_A(PAPER.read_on_V)


def paper_array(written_V, decay_factor=PAPER.decay_factor, **kwargs):
    return GainCellArray(
        written_V, A_COEFF, PAPER.mid_rail_V, decay_factor, PAPER.mid_rail_V, **kwargs
    )


def test_dacs_have_the_published_number_of_levels_and_clip():
    x = np.linspace(-0.5, 1.5, 10001)
    q = InputDAC(0.0, 1.0, 16).convert(x)
    k = InputDAC(0.0, 0.9, 8).convert(x)
    assert len(np.unique(q)) == 16 and q.min() == 0.0 and q.max() == 1.0
    assert len(np.unique(k)) == 8 and k.min() == 0.0 and np.isclose(k.max(), 0.9)
    np.testing.assert_allclose(np.diff(np.unique(k)), 0.9 / 7)
    np.testing.assert_array_equal(quantize(q, 0, 1, 16), q)  # quantising twice changes nothing


def test_dac_without_clipping_rejects_values_outside_the_physical_range():
    dac = InputDAC(0.0, 0.9, 8, clip=False, name="K")
    with pytest.raises(ValueError, match="outside the physical range"):
        dac.convert([0.1, 0.95])
    np.testing.assert_allclose(dac.convert([0.0, 0.9]), [0.0, 0.9])
    with pytest.raises(ValueError, match="NaN"):
        dac.convert([np.nan])


def test_dac_set_limits():
    dac = InputDAC(0.0, 1.0, 2)
    dac.set_limits(0.0, 2.0)
    np.testing.assert_allclose(dac.convert([0.4, 1.2, 5.0]), [0.0, 2.0, 2.0])
    with pytest.raises(ValueError):
        dac.set_limits(1.0, 1.0)


def test_query_pulse_widths_span_zero_to_t_max():
    np.testing.assert_allclose(query_pulse_width_s([0.0, 0.5, 1.0], 15e-9), [0, 7.5e-9, 15e-9])


def test_window_mask_is_causal_and_slides():
    m = window_mask(np.arange(5), np.arange(5), window=2)
    expected = np.array(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], bool
    )
    np.testing.assert_array_equal(m, expected)


def test_published_cell_curve():
    # MISSION.md: about -10 µA at V_store = 0, +10 µA at 0.9 V (V_in = 0.9 V), zero near 0.41 V.
    cell = MODEL.cell
    assert -12e-6 < cell.current_A(0.0, 0.9) < -8e-6
    assert 8e-6 < cell.current_A(0.9, 0.9) < 12e-6
    v = np.linspace(0, 0.9, 9001)
    crossing = v[np.argmin(np.abs(cell.current_A(v, 0.9)))]
    assert 0.39 < crossing < 0.43
    assert polynomial_basis(3) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0),
                                   (2, 1), (3, 0)]  # fmt: skip


def test_zero_query_gives_zero_charge():
    rng = np.random.default_rng(0)
    for decay in (0.0, PAPER.decay_factor):
        array = paper_array(rng.random((10, 4)) * 0.9, decay)
        charge = array.column_charges_C(np.zeros((3, 4)), 5, 0, 10)
        np.testing.assert_array_equal(charge, 0.0)


def test_column_charge_is_pulse_width_times_cell_current():
    written = np.array([[0.0, 0.9, 0.45]])
    widths = np.array([[15e-9, 7.5e-9, 15e-9]])
    charge = paper_array(written, 0.0).column_charges_C(widths, 0, 0, 1)
    expected = np.sum(widths * MODEL.cell.current_A(written, PAPER.read_on_V))
    np.testing.assert_allclose(charge[0, 0], expected, rtol=1e-12)
    assert charge[0, 0] != 0.0


def test_decay_pulls_the_stored_voltage_towards_mid_rail():
    # The charge read from a key of age a equals that of a cell storing the decayed voltage.
    f = 0.05
    written = np.array([[0.9], [0.0]])
    array = paper_array(written, f)
    charge = array.column_charges_C(np.full((6, 1), 15e-9), 0, 0, 2)
    decay = ExponentialDecay(time_constant_s=1.0, asymptote_V=0.45)
    for t in range(6):
        for j in range(2):
            if t >= j:
                stored = decay.stored_voltage_V(written[j, 0], f * (t - j))
                expected = 15e-9 * MODEL.cell.current_A(stored, PAPER.read_on_V)
                np.testing.assert_allclose(charge[t, j], expected, rtol=1e-12)
    # Mid-rail is the asymptote: a key written there reads the same at every age.
    mid = paper_array(np.array([[0.45]]), f).column_charges_C(np.full((4, 1), 15e-9), 0, 0, 1)
    np.testing.assert_allclose(mid, mid[0, 0], rtol=1e-12)


def test_decay_factor_from_token_period():
    decay = ExponentialDecay(time_constant_s=PAPER.retention_time_constant_s,
                             asymptote_V=PAPER.mid_rail_V)
    assert decay.decay_factor(PAPER.token_period_s) == pytest.approx(PAPER.decay_factor)


def test_readout_gain_offset_and_saturation():
    np.testing.assert_array_equal(Readout().convert(np.array([-1.0, 2.0])), [-1.0, 2.0])
    readout = Readout(gain=2.0, offset_C=1.0, saturation_C=4.0)
    np.testing.assert_allclose(readout.convert(np.array([-5.0, 0.0, 1.0, 3.0])), [-4, 1, 3, 4])


def test_hardsigmoid_zero_for_negative_charge_and_saturates_at_t_max():
    c2p = MODEL.charge_to_pulse
    s_sat = 80 * PAPER.charge_unit_C
    assert c2p.saturation_charge_C == pytest.approx(s_sat)
    S = np.array([-s_sat, -1e-20, 0.0, s_sat / 4, s_sat, 3 * s_sat])
    np.testing.assert_allclose(c2p.convert(S), [0, 0, 0, 15e-9 / 4, 15e-9, 15e-9], rtol=1e-12)
    shifted = ChargeToPulse(slope_s_per_C=1.0, t_max_s=2.0, offset_C=1.0)
    np.testing.assert_allclose(shifted.convert(np.array([0.5, 2.0, 9.0])), [0.0, 1.0, 2.0])


def test_v_array_without_pulses_gives_zero_charge_and_sub_tiles_stay_separate():
    rng = np.random.default_rng(1)
    written = rng.random((8, 3)) * 0.9
    array = paper_array(written, 0.0)
    np.testing.assert_array_equal(array.row_charges_C(np.zeros((2, 8)), 7, 0, 4), 0.0)
    widths = np.zeros((1, 8))
    widths[0, 5] = 15e-9  # a pulse on key 5 only: charge appears in sub-tile 1 alone
    charge = array.row_charges_C(widths, 7, 0, 4)
    assert charge.shape == (2, 1, 3)
    np.testing.assert_array_equal(charge[0], 0.0)
    expected = 15e-9 * MODEL.cell.current_A(written[5], PAPER.read_on_V)
    np.testing.assert_allclose(charge[1, 0], expected, rtol=1e-12)


def test_signed_converter_clips_and_counts_in_published_steps():
    out = MODEL.output_converter
    full = 40 * PAPER.charge_unit_C
    raw = out.convert(np.array([-5 * full, -full, 0.0, 0.5 * full, full, 9 * full]), quantize=False)
    np.testing.assert_allclose(raw, [-1, -1, 0, 0.5, 1, 1])
    counted = out.convert(np.linspace(-2 * full, 2 * full, 1001))
    steps = counted / (2 / 31)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)  # on the counter's grid
    assert np.all(np.diff(counted) >= 0)  # monotonic
    assert out.convert(np.array([0.0]))[0] == 0.0


def test_subtile_sum_is_the_digital_sum():
    parts = np.arange(24.0).reshape(3, 2, 4)
    np.testing.assert_array_equal(subtile_sum(parts, axis=0), parts[0] + parts[1] + parts[2])


def test_linear_cell_is_proportional_to_signed_weight():
    cell = linear_model().cell
    g = linear_model().notes["linear_gain_A_per_V"]
    # Least-squares slope of the published curve over +-0.45 V: a1 + a3 * 3 * 0.45^2 / 5.
    a1 = (5.51975209 + 4.96777688 * 0.9 + 4.4709992 * 0.81) * 1e-6
    a3 = 46.05483778e-6
    assert g == pytest.approx(a1 + a3 * 3 * 0.45**2 / 5, rel=1e-12)
    assert 19.0e-6 < g < 19.4e-6  # close to the 19.3 µA/V of the authors' own linear model
    v = np.array([0.0, 0.45, 0.9])
    np.testing.assert_allclose(cell.current_A(v, 0.9), g * (v - 0.45), atol=1e-18)


def test_polynomial_cell_rejects_a_non_triangular_basis():
    with pytest.raises(ValueError, match="triangular"):
        _ = PolynomialCell(coefficients_A=(1.0, 2.0), v_mid_V=0.45).degree


@pytest.mark.parametrize("decay_factor", [0.0, 1.6e-4, 3.0, 10.0])
# none; factors based at token 0; at the block's first key; an explicit decay matrix
@pytest.mark.parametrize("mismatch", [False, True])
def test_unit_width_totals_equal_the_products_with_unit_widths(decay_factor, mismatch):
    """The resting conductance is a product with every width 1; the totals skip the product
    and must give the same numbers on every path (no decay, decay factors, decay matrix)."""
    rng = np.random.default_rng(3)
    tokens, dim, size = 70, 8, 16
    written = rng.uniform(0.0, 0.9, (tokens, dim))
    extra = {}
    if mismatch:
        extra = dict(cell_gain=rng.normal(1, 0.03, (tokens, dim)),
                     vt_shift_V=rng.normal(0, 0.01, (tokens, dim)))
    array = GainCellArray(written, power_coefficients_A=[2e-6, 20e-6, -5e-6, 30e-6],
                          v_mid_V=0.45, decay_factor=decay_factor, asymptote_V=0.4, **extra)
    n_q, q0, k0 = 5, 40, 16
    columns = array.column_charges_C(np.ones((n_q, dim)), q0, k0, k0 + 48)
    assert np.allclose(array.column_totals_C(n_q, q0, k0, k0 + 48), columns,
                       rtol=1e-10, atol=1e-22)
    n_keys = 44   # not a whole number of sub-tiles: the last one is padded
    rows = array.row_charges_C(np.ones((n_q, n_keys)), q0, k0, size)
    assert np.allclose(array.row_totals_C(n_q, q0, k0, size, n_keys), rows,
                       rtol=1e-10, atol=1e-22)
    def ranged_rows(lo, hi):
        """The totals over per-query key ranges [lo, hi), checked against the product with
        widths 1 inside each range and 0 outside; returns that product."""
        lo, hi = np.array(lo), np.array(hi)
        keys = np.arange(k0, k0 + n_keys)
        inside = (keys >= lo[:, None]) & (keys < hi[:, None])
        rows = array.row_charges_C(inside.astype(float), q0, k0, size)
        assert np.allclose(array.row_totals_C(n_q, q0, k0, size, n_keys, (lo, hi)), rows,
                           rtol=1e-10, atol=1e-22)
        return rows

    # Per-query key ranges (a ring buffer's rows held when the query reads) cut sub-tiles at
    # both ends: the same as the product with widths 1 inside each range, 0 outside.
    rows = ranged_rows([16, 20, 31, 33, 47], [40, 60, 45, 60, 49])
    assert not np.allclose(rows, array.row_charges_C(np.ones((n_q, n_keys)), q0, k0, size))
    # Empty ranges, ranges on sub-tile boundaries and ranges past the keys count nothing there.
    ranged_rows([16, 32, 10, 60, 100], [16, 48, 17, 200, 120])


def test_a_dac_writes_its_own_levels_on_a_range_that_starts_above_zero():
    """sky130's stored range is 0.05 ... 1.75 V: its 8 levels are 0.05 + k * 0.2429 V. The
    published grid through zero would write 0 V (below the range) and never 1.75 V."""
    from gcsim.hw.stages import InputDAC
    dac = InputDAC(0.05, 1.75, 8)
    levels = 0.05 + np.arange(8) * (1.7 / 7)
    np.testing.assert_allclose(dac.convert(levels + 0.01), levels, rtol=0, atol=1e-15)
    np.testing.assert_allclose(dac.convert([0.0, 2.0]), [0.05, 1.75], rtol=0, atol=1e-15)
    # from zero, the published grid exactly
    np.testing.assert_array_equal(InputDAC(0.0, 0.9, 8).convert([0.31, 0.9]),
                                  np.round(np.array([0.31, 0.9]) / (0.9 / 7)) * (0.9 / 7))


@pytest.mark.parametrize("decay_factor", [0.0, 1.6e-4, 3.0, 10.0])
@pytest.mark.parametrize("asymptote", ["one", "per_cell"])
@pytest.mark.parametrize("mismatch", [False, True])
def test_arrays_built_together_and_stacked_widths_equal_one_at_a_time(decay_factor, asymptote,
                                                                     mismatch):
    """GainCellArray.family (a current and conductances on the same cells, sharing the powers
    of the stored voltage) equals building each array alone, and a stack of widths gives the
    products of each widths alone, on every decay path; both against the cell current
    evaluated directly at each cell's decayed voltage."""
    rng = np.random.default_rng(5)
    tokens, dim, size = 70, 8, 16
    written = rng.uniform(0.0, 0.9, (tokens, dim))
    asymptote_V = 0.4 if asymptote == "one" else 0.3 + 0.2 * written
    extra = {}
    if mismatch:
        extra = dict(cell_gain=rng.normal(1, 0.03, (tokens, dim)),
                     vt_shift_V=rng.normal(0, 0.01, (tokens, dim)))
    sets = [[2e-6, 20e-6, -5e-6, 30e-6], [1e-5, 2e-5, 3e-4], [0.0, 20e-6, 0.0, 0.0, 1e-5]]
    dtypes = [np.float64, np.float64, np.float32]
    family = GainCellArray.family(written, sets, dtypes, v_mid_V=0.45,
                                  decay_factor=decay_factor, asymptote_V=asymptote_V, **extra)
    n_q, q0, k0, n_keys = 5, 64, 16, 48   # every key older than every query
    age = np.arange(q0, q0 + n_q)[:, None] - np.arange(k0, k0 + n_keys)
    gain = extra.get("cell_gain", np.ones_like(written))[k0:k0 + n_keys]
    shift = extra.get("vt_shift_V", np.zeros_like(written))[k0:k0 + n_keys]
    inf = np.broadcast_to(asymptote_V, written.shape)[k0:k0 + n_keys]
    decayed = inf + (written[k0:k0 + n_keys] - inf) * np.exp(-decay_factor * age)[..., None]
    pulses = rng.uniform(0, 15e-9, (2, n_q, dim))
    row_pulses = rng.uniform(0, 15e-9, (2, n_q, n_keys))
    for coefficients, dtype, together in zip(sets, dtypes, family):
        alone = GainCellArray(written, coefficients, 0.45, decay_factor, asymptote_V,
                              dtype=dtype, **extra)
        assert together.dtype == alone.dtype
        assert [t.power for t in together.terms] == [t.power for t in alone.terms]
        tolerance = 1e-12 if dtype == np.float64 else 1e-5
        for mine, theirs in zip(together.terms, alone.terms):
            if theirs.feature is None:
                assert mine.constant == pytest.approx(theirs.constant, rel=1e-12)
            else:
                scale = np.abs(theirs.feature).max()
                assert np.abs(mine.feature - theirs.feature).max() <= tolerance * scale
        # (query, key, dim): the current of every cell at its age when the query reads
        current = gain * np.polynomial.polynomial.polyval(decayed - 0.45 + shift, coefficients)
        columns = together.column_charges_C(pulses, q0, k0, k0 + n_keys)
        rows = together.row_charges_C(row_pulses, q0, k0, size)
        for index in range(2):
            expected = np.einsum("qd,qkd->qk", pulses[index], current)
            assert columns.shape == (2, n_q, n_keys)
            assert np.allclose(columns[index], expected, rtol=10 * tolerance,
                               atol=10 * tolerance * np.abs(expected).max())
            assert np.array_equal(columns[index], together.column_charges_C(
                pulses[index], q0, k0, k0 + n_keys))
            by_tile = (row_pulses[index][..., None] * current).reshape(
                n_q, n_keys // size, size, dim).sum(axis=2).transpose(1, 0, 2)
            assert rows.shape == (2, n_keys // size, n_q, dim)
            assert np.allclose(rows[index], by_tile, rtol=10 * tolerance,
                               atol=10 * tolerance * np.abs(by_tile).max())
            assert np.allclose(rows[index], together.row_charges_C(row_pulses[index], q0, k0,
                                                                   size), rtol=1e-12, atol=0)
