"""The mismatch model keeps the joint distribution of the per-cell gain and shift: the fit
measures their correlation, the simulator draws them with it. Pure logic on synthetic data."""

import numpy as np
import pandas as pd
import pytest

from gcsim.fit.mismatch import fit_mismatch
from gcsim.hw.components import CellMismatch


def test_draws_have_the_fitted_correlation_and_zero_keeps_the_old_draws():
    sample = CellMismatch(0.04, 0.01, 0.44).draw(np.random.default_rng(1), (400, 500))
    rho = np.corrcoef(sample.gain.ravel(), sample.vt_shift_V.ravel())[0, 1]
    assert rho == pytest.approx(0.44, abs=0.01)
    assert sample.gain.std() == pytest.approx(0.04, rel=0.01)
    assert sample.vt_shift_V.std() == pytest.approx(0.01, rel=0.01)
    # Independent draws are what they were before the correlation existed.
    rng = np.random.default_rng(7)
    gain, shift = 1 + 0.04 * rng.standard_normal((3, 4)), 0.01 * rng.standard_normal((3, 4))
    independent = CellMismatch(0.04, 0.01).draw(np.random.default_rng(7), (3, 4))
    assert np.array_equal(independent.gain, gain)
    assert np.array_equal(independent.vt_shift_V, shift)


def test_the_fit_recovers_a_known_correlation():
    rng = np.random.default_rng(3)
    stored = np.linspace(0.0, 0.9, 19)

    def current(v):
        return 1e-5 * np.tanh((v - 0.45) / 0.2)

    gains = 1 + 0.05 * rng.standard_normal(300)
    shifts = 0.01 * (0.6 * (gains - 1) / 0.05 + 0.8 * rng.standard_normal(300))
    rows = [{"mc_run": run, "stored_voltage_V": v, "i_out_A": g * current(v + s)}
            for run, (g, s) in enumerate(zip(gains, shifts)) for v in stored]
    record = fit_mismatch(pd.DataFrame(rows))
    assert record.value("gain_shift_correlation") == pytest.approx(0.6, abs=0.08)
