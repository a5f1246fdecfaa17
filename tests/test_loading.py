"""Readout loading: the fits recover known coefficients, and the simulator's correction matches
a direct computation (pure logic, no ngspice: the physics is checked by `gcsim regen --check`
and the tile validation)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from gcsim.core import resources
from gcsim.fit.bundle import load_bundle
from gcsim.fit.loading import fit_cell_conductance, fit_readout_loading
from gcsim.fit.numerics import FitError
from gcsim.simulate.attention import SimulationConfig, simulate_attention
from gcsim.hw.loading import ReadoutLoading
from gcsim.hw import PAPER, hardware_model
from gcsim.hw.stages import GainCellArray
from gcsim.pipeline import context_options

OPERATING_POINT = {"v_mid_V": PAPER.mid_rail_V, "read_on_V": PAPER.read_on_V}

OFFSET, CHARGE_COEF, CURRENT_COEF = 0.8e-3, 1.5e9, 40.0


def _loading_table(start=0.5e-9, tail=1.1e-9):
    rows = []
    for t_int in (5e-9, 10e-9, 15e-9):
        window = start + t_int + tail
        for q in np.linspace(-2e-12, 2e-12, 9):
            charge_time = q * (window - start - t_int / 2)
            deviation = OFFSET * window + CHARGE_COEF * charge_time + CURRENT_COEF * q
            rows.append(dict(t_int_s=t_int, charge_in_C=q, integration_window_s=window,
                             charge_time_integral_Cs=charge_time,
                             bitline_deviation_integral_Vs=deviation))
    return pd.DataFrame(rows)


def test_readout_loading_recovers_offset_gain_and_bandwidth_terms():
    record = fit_readout_loading(_loading_table(), **context_options("readout_loading"))
    assert record.value("offset") == pytest.approx(OFFSET, rel=1e-9)
    assert record.value("charge_coefficient") == pytest.approx(CHARGE_COEF, rel=1e-6)
    assert record.value("current_coefficient") == pytest.approx(CURRENT_COEF, rel=1e-9)
    assert record.value("k_pulse_start") == pytest.approx(0.5e-9, rel=1e-6)
    assert record.value("k_window") == pytest.approx(0.5e-9 + 15e-9 + 1.1e-9)


def test_readout_loading_needs_two_integration_times():
    table = _loading_table()
    with pytest.raises(FitError, match="integration times"):
        fit_readout_loading(table[table["t_int_s"] == 15e-9], **context_options("readout_loading"))


def test_cell_conductance_recovers_read_and_rest_polynomials():
    on = [20e-6, 5e-6, 100e-6]
    off = [15e-6, -3e-6, 150e-6]
    rows = []
    for stored in np.linspace(0, 0.9, 10):
        g_on, g_off = (np.polynomial.polynomial.polyval(stored - 0.45, c) for c in (on, off))
        for width in (0.0, 5e-9, 15e-9):
            unloaded = 1e-6 * (stored - 0.4) * width + 3e-16   # the read's own charge
            for step in (-0.005, 0.0, 0.005):
                deviation = 2e-13 + step * 17.45e-9          # a small offset, then the step
                charge = unloaded - g_off * (deviation - 2e-13) - (g_on - g_off) * step * width
                rows.append(dict(bitline_step_V=step, stored_voltage_V=stored, t_pulse_s=width,
                                 charge_C=charge, bitline_deviation_integral_Vs=deviation))
    table = pd.DataFrame(rows)
    record = fit_cell_conductance(table, order=2, **OPERATING_POINT)
    assert np.allclose(record.value("on_coefficients"), on, rtol=1e-6, atol=1e-12)
    assert np.allclose(record.value("off_coefficients"), off, rtol=1e-6, atol=1e-12)
    with pytest.raises(FitError, match="two or more pulse widths"):
        fit_cell_conductance(table[table["t_pulse_s"] == 5e-9], **OPERATING_POINT)
    with pytest.raises(FitError, match="non-zero step"):
        fit_cell_conductance(table[table["bitline_step_V"] != 0], **OPERATING_POINT)


def _loading(g_on, g_off, offset=OFFSET, charge=CHARGE_COEF, current=CURRENT_COEF):
    return ReadoutLoading(offset, charge, current, (g_on,), (g_off,), 16e-9, 0.5e-9, 19e-9,
                          2.7e-9, 80e-6, 40e-6)


def test_loaded_column_charge_matches_the_direct_formula():
    rng = np.random.default_rng(3)
    stored = rng.uniform(0, 0.9, (6, 5))            # 6 keys, head_dim 5
    widths = rng.uniform(0, 15e-9, (2, 5))           # 2 queries
    coefficients = np.array([1e-6, 20e-6, 0.0, 30e-6])
    args = dict(power_coefficients_A=coefficients, v_mid_V=0.45, decay_factor=0.0,
                asymptote_V=0.45)
    plain = GainCellArray(stored, **args)
    g_on, g_off = 30e-6, 20e-6
    loaded = _loading(g_on, g_off).arrays(plain, stored, **args)
    got = loaded.column_charges_C(widths, 1, 0, 6)
    current = np.polynomial.polynomial.polyval(stored - 0.45, coefficients)   # (keys, dim)
    T, t0 = 16e-9, 0.5e-9
    for t in range(2):
        for j in range(6):
            w = widths[t]
            charge = np.sum(w * current[j])
            hold = np.sum(current[j] * (w * (T - t0) - w * w / 2))
            conductance = 5 * g_off + np.sum((g_on - g_off) * w) / T
            expected = charge - conductance * (OFFSET * T + CHARGE_COEF * hold
                                               + CURRENT_COEF * charge)
            assert got[t, j] == pytest.approx(expected, rel=1e-9)


def test_zero_conductance_is_the_ideal_readout():
    rng = np.random.default_rng(4)
    stored = rng.uniform(0, 0.9, (64, 4))
    args = dict(power_coefficients_A=np.array([0.0, 20e-6, 0.0, 30e-6]), v_mid_V=0.45,
                decay_factor=1e-3, asymptote_V=0.46)
    plain = GainCellArray(stored, **args)
    loaded = _loading(0.0, 0.0).arrays(plain, stored, **args)
    pulses = rng.uniform(0, 15e-9, (3, 64))
    assert np.allclose(loaded.row_charges_C(pulses, 61, 0, 64),
                       plain.row_charges_C(pulses, 61, 0, 64), rtol=1e-12, atol=0)


@pytest.mark.skipif(not (resources.FITS / "readout_loading.json").is_file(),
                    reason="no committed readout_loading fit")
def test_fitted_mode_applies_the_committed_loading_and_can_switch_it_off():
    model = hardware_model(load_bundle(resources.FITS))
    assert model.loading is not None
    rng = np.random.default_rng(5)
    q = rng.uniform(0, 1, (96, 8))
    k = rng.uniform(0, 0.9, (96, 8))
    v = rng.uniform(0, 0.9, (96, 8))
    config = SimulationConfig(window=64, array_size=32, token_period_s=1e-6)
    loaded = simulate_attention(q, k, v, mode="fitted", config=config, model=model)
    off = simulate_attention(q, k, v, mode="fitted", model=model,
                             config=dataclasses.replace(config, readout_loading=False))
    ideal = simulate_attention(q, k, v, mode="fitted", config=config,
                               model=dataclasses.replace(model, loading=None))
    assert np.array_equal(off.output, ideal.output)
    assert not np.allclose(loaded.S, ideal.S, rtol=1e-3, atol=0)
    # A few per cent, not a different model.
    scale = np.abs(ideal.S).max()
    assert np.max(np.abs(loaded.S - ideal.S)) < 0.15 * scale


@pytest.mark.parametrize("bundle", ["builtin", "sky130"])
def test_the_float32_correction_keeps_the_float64_model_to_a_millionth_of_full_scale(bundle):
    """The loading correction's products run in float32 by default (half the cost); the
    correction is a few per cent of S, so every stage stays within 1e-5 of its full scale of
    the float64 correction's, and the switch does reach the products (they differ)."""
    model = hardware_model(load_bundle(resources.FITS.parent / bundle))
    rng = np.random.default_rng(11)
    point = model.operating_point
    q = rng.uniform(0, 1, (1, 2, 256, 64))
    k, v = (rng.uniform(point.stored_min_V, point.stored_max_V, (1, 2, 256, 64))
            for _ in range(2))
    runs = {dtype: simulate_attention(q, k, v, "fitted", model=model, config=SimulationConfig(
        window=256, quantize_output=False, loading_dtype=dtype)) for dtype in
        ("float64", "float32")}
    full, single = runs["float64"], runs["float32"]
    for name in ("S", "phi", "output"):
        reference, value = getattr(full, name), getattr(single, name)
        difference = np.abs(value - reference).max() / np.abs(reference).max()
        assert 0 < difference < 1e-5, (name, difference)
