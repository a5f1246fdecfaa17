"""Compact-model fitters: recovery of known parameters from noisy synthetic data, the fit-file
schema and its guards, the CSV path, and the export format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gcsim.cli import main
from gcsim.fit import schema
from gcsim.fit.bundle import load_bundle, write_parameter_bundle
from gcsim.fit.cell import CellNonlinearity, ChargePerPulse, fit_charge_per_pulse, fit_nonlinearity
from gcsim.fit.decay import DecayLaw, fit_decay, sinh_law
from gcsim.fit.mismatch import fit_mismatch
from gcsim.fit.periphery import (fit_charge_to_pulse, fit_sense_amp, fit_signed_converter,
                                 hard_sigmoid)
from gcsim.fit.schema import FitFileError, RangeError
from gcsim.hw import PAPER, hardware_model, polynomial_basis

# The published operating point and window the synthetic tables are made at.
OPERATING_POINT = {"v_mid_V": PAPER.mid_rail_V, "read_on_V": PAPER.read_on_V}
WINDOW_AGE_S = PAPER.window * PAPER.token_period_s

RNG = np.random.default_rng(11)
PAPER_A = [c * 1e-6 for c in PAPER.cell_coefficients_uA]


def surface(coefficients, stored, v_in):
    x = stored - 0.45
    return sum(c * x**i * v_in**j for c, (i, j) in zip(coefficients, polynomial_basis(3)))


def test_nonlinearity_recovers_a_known_surface_from_noisy_data():
    true = [0.2e-6, -0.1e-6, 0.3e-6, 0.05e-6, 8e-6, 6e-6, 2e-6, -3e-6, 1.5e-6, 30e-6]
    stored, v_in = np.meshgrid(np.linspace(0, 0.9, 31), np.linspace(0.45, 0.9, 21))
    current = surface(true, stored, v_in)
    noisy = current + RNG.normal(0, 1e-9, current.shape)
    table = pd.DataFrame({"stored_voltage_V": stored.ravel(), "v_in_V": v_in.ravel(),
                          "i_out_A": noisy.ravel()})
    record = fit_nonlinearity(table, **OPERATING_POINT)
    np.testing.assert_allclose(record.value("coefficients"), true, rtol=0.02, atol=2e-8)
    assert record.metrics["r2"] > 0.9999
    assert record.metrics["rmse_A"] == pytest.approx(1e-9, rel=0.2)


def test_nonlinearity_at_the_on_level_reproduces_the_published_coefficient_shape():
    """Fitting the published cell at V_in = 0.9 V only gives back the published C_ij, whose
    V_in columns are the minimum-norm split of one cubic (C_0j / C_00 = 0.9^j)."""
    stored = np.linspace(0, 0.9, 41)
    table = pd.DataFrame({"stored_voltage_V": stored, "v_in_V": 0.9,
                          "i_out_A": surface(PAPER_A, stored, 0.9)})
    record = fit_nonlinearity(table, v_in_V=0.9, **OPERATING_POINT)
    np.testing.assert_allclose(record.value("coefficients"), PAPER_A, rtol=1e-6)
    assert record.valid_range["v_in_V"] == [0.9, 0.9]


def test_minimax_objective_lowers_the_maximum_error():
    stored = np.linspace(0, 0.9, 61)
    current = 1e-5 * np.tanh(6 * (stored - 0.45))  # not a cubic
    table = pd.DataFrame({"stored_voltage_V": stored, "v_in_V": 0.9, "i_out_A": current})
    lsq = fit_nonlinearity(table, v_in_V=0.9, **OPERATING_POINT)
    minimax = fit_nonlinearity(table, v_in_V=0.9, objective="minimax", **OPERATING_POINT)
    assert minimax.metrics["max_error_pct_fs"] < lsq.metrics["max_error_pct_fs"]
    assert minimax.metrics["rmse_pct_fs"] > lsq.metrics["rmse_pct_fs"]


def test_charge_per_pulse_recovers_current_and_edge_charge():
    stored, width = np.meshgrid(np.linspace(0, 0.9, 19), np.linspace(0, 15e-9, 16))
    x = stored - 0.45
    current = 1e-6 * (0.1 + 20 * x + 5 * x**2 + 40 * x**3)
    edge = 130e-12 * current
    charge = current * width + edge + RNG.normal(0, 1e-17, x.shape)
    table = pd.DataFrame({"stored_voltage_V": stored.ravel(), "t_pulse_s": width.ravel(),
                          "charge_C": charge.ravel()})
    record = fit_charge_per_pulse(table, **OPERATING_POINT)
    np.testing.assert_allclose(record.value("current_coefficients"),
                               [0.1e-6, 20e-6, 5e-6, 40e-6], rtol=0.01, atol=2e-9)
    assert record.value("edge_time") == pytest.approx(130e-12, rel=0.02)
    model = ChargePerPulse.from_record(record)
    assert model.charge_C(0.9, 15e-9) == pytest.approx(charge.ravel()[-1], rel=1e-3)


def test_decay_recovers_the_sinh_law_and_temperature_dependence():
    times = np.linspace(0, 20e-3, 101)
    rows = []
    for temperature, tau in ((27.0, 12e-3), (85.0, 6e-3)):
        for v0 in (0.0, 0.2, 0.7, 0.9):
            volts = sinh_law(v0, times, 0.46, 0.12, tau) + RNG.normal(0, 2e-4, times.size)
            rows.append(pd.DataFrame({"temperature_C": temperature, "initial_voltage_V": v0,
                                      "time_s": times, "stored_voltage_V": volts}))
    record = fit_decay(pd.concat(rows), age_max_s=WINDOW_AGE_S)
    assert record.value("law_time_constant") == pytest.approx(12e-3, rel=0.02)
    assert record.value("law_asymptote") == pytest.approx(0.46, abs=2e-3)
    assert record.value("law_voltage_scale") == pytest.approx(0.12, rel=0.03)
    assert record.value("nominal_temperature") == 27.0
    # tau halves from 300 K to 358 K: E_a = ln(2) k / (1/300 - 1/358) ~ 0.11 eV, tau falling.
    assert record.value("activation_energy") == pytest.approx(0.11, rel=0.1)
    # The simulator's exponential is shorter than tau: the law is faster far from V_inf.
    assert record.value("time_constant") < record.value("law_time_constant")
    law = DecayLaw.from_record(record, temperature_C=85.0)
    assert law.time_constant_s == pytest.approx(6e-3, rel=0.02)


def test_sense_amp_finds_gain_offset_linear_range_and_saturation():
    charge = np.linspace(-9.6e-12, 9.6e-12, 97)
    out = np.clip(0.45 - 0.125e12 * charge, 0.05, 0.85) + RNG.normal(0, 1e-4, charge.size)
    record = fit_sense_amp(pd.DataFrame({"charge_in_C": charge, "v_out_V": out}))
    assert record.value("gain") == pytest.approx(-0.125e12, rel=0.01)
    assert record.value("offset") == pytest.approx(0.45, abs=1e-3)
    assert record.value("saturation_charge_low") == pytest.approx(-3.2e-12, rel=0.03)
    assert record.value("saturation_charge_high") == pytest.approx(3.2e-12, rel=0.03)
    assert -3.3e-12 < record.value("linear_range_low") < -2.8e-12


def test_sense_amp_energy_keeps_the_charge_the_column_sinks_and_the_idle_draw():
    # The energy of an integration rises with the charge the column sinks (the OTA sources
    # it from VDD) and falls a little with the charge it sources; a median would keep only
    # the zero-charge value. The rest state's draw passes through as measured.
    charge = np.linspace(-9.6e-12, 9.6e-12, 97)
    out = np.clip(0.45 - 0.125e12 * charge, 0.05, 0.85)
    energy = 2.7e-12 + 0.7 * np.maximum(-charge, 0) - 0.3 * np.maximum(charge, 0)
    record = fit_sense_amp(pd.DataFrame({
        "charge_in_C": charge, "v_out_V": out, "energy_J": energy,
        "energy_window_s": 21e-9, "idle_power_W": 129e-6, "reference_power_W": 18e-6}))
    assert record.value("energy_per_integration") == pytest.approx(2.7e-12, rel=1e-9)
    assert record.value("energy_per_sunk_charge") == pytest.approx(0.7, rel=1e-9)
    assert record.value("energy_per_sourced_charge") == pytest.approx(-0.3, rel=1e-9)
    assert record.value("idle_power") == 129e-6
    assert record.value("energy_window") == 21e-9
    assert record.value("reference_power") == 18e-6


def test_charge_to_pulse_recovers_the_hard_sigmoid():
    charge = np.linspace(-1e-12, 3e-12, 81)
    width = hard_sigmoid(charge, 15e-9 / 1.2e-12, 0.02e-12, 15e-9) + RNG.normal(0, 5e-12, 81)
    record = fit_charge_to_pulse(pd.DataFrame({"charge_in_C": charge,
                                               "pulse_width_s": np.maximum(width, 0)}))
    assert record.value("saturation_charge") == pytest.approx(1.22e-12, rel=0.01)
    assert record.value("t_max") == pytest.approx(15e-9, rel=0.005)
    assert record.value("offset") == pytest.approx(0.02e-12, abs=0.01e-12)
    assert set(record.metrics["regions"]) == {"zero", "ramp", "saturated"}
    assert "threshold" not in record.parameters


def test_charge_to_pulse_models_a_comparator_dead_zone_and_the_stage_applies_it():
    from gcsim.hw.stages import ChargeToPulse

    charge = np.linspace(-0.2e-12, 2e-12, 111)
    width = hard_sigmoid(charge, 15e-9 / 1.1e-12, -0.05e-12, 15e-9, threshold_C=0.03e-12)
    record = fit_charge_to_pulse(pd.DataFrame({"charge_in_C": charge, "pulse_width_s": width}))
    assert record.value("threshold") == pytest.approx(0.03e-12, abs=0.02e-12)
    assert record.metrics["max_error_pct_fs"] < 0.1
    stage = ChargeToPulse(record.value("slope"), record.value("t_max"), record.value("offset"),
                          record.value("threshold"))
    work = charge.copy()
    np.testing.assert_allclose(stage.convert(work, out=work), width, atol=1e-15)


def test_signed_converter_finds_full_scale_and_counts():
    from gcsim.hw.stages import quantize

    charge = np.linspace(-900e-15, 900e-15, 121)
    value = np.clip(charge / 600e-15, -1, 1)
    table = pd.DataFrame({"charge_in_C": charge, "pulse_width_s": np.abs(value) * 15e-9,
                          "count": np.round(quantize(value, -1, 1, 32) * 15.5 * 2) / 2})
    record = fit_signed_converter(table)
    assert record.value("full_scale") == pytest.approx(600e-15, rel=1e-3)


def test_mismatch_recovers_gain_and_shift_spread():
    stored = np.linspace(0, 0.9, 19)
    runs = []
    for run in range(400):
        gain, shift = 1 + 0.03 * RNG.standard_normal(), 0.01 * RNG.standard_normal()
        runs.append(pd.DataFrame({"mc_run": run, "stored_voltage_V": stored,
                                  "i_out_A": gain * surface(PAPER_A, stored + shift, 0.9)}))
    record = fit_mismatch(pd.concat(runs))
    assert record.value("current_sigma_rel") == pytest.approx(0.03, rel=0.12)
    assert record.value("stored_voltage_shift_sigma") == pytest.approx(0.01, rel=0.12)


# --- files, guards, bundle ---------------------------------------------------------------------


def iv_record():
    stored = np.linspace(0, 0.9, 21)
    table = pd.DataFrame({"stored_voltage_V": stored, "v_in_V": 0.9,
                          "i_out_A": surface(PAPER_A, stored, 0.9)})
    record = fit_nonlinearity(table, v_in_V=0.9, **OPERATING_POINT)
    record.provenance = {"origin": "test"}
    return record


def test_range_guard_raises_unless_clamping_is_asked_for(tmp_path):
    path = schema.save(iv_record(), tmp_path / "nl.json")
    model = CellNonlinearity.from_record(schema.load(path, kind="nonlinearity"))
    model.current_A([0.0, 0.9], 0.9)
    with pytest.raises(RangeError, match="stored_voltage_V .* outside"):
        model.current_A(1.0, 0.9)
    with pytest.raises(RangeError, match="v_in_V"):
        model.current_A(0.5, 0.6)
    assert model.current_A(1.0, 0.9, clamp=True) == pytest.approx(model.current_A(0.9, 0.9))


@pytest.mark.parametrize("mutate, message", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: json.dumps({"hello": 1}), "not a gcsim fit file"),
    (lambda text: text.replace('"schema_version": 1', '"schema_version": 7'), "newer"),
    (lambda text: text.replace('"kind": "nonlinearity"', '"kind": "teapot"'), "unknown kind"),
    (lambda text: text.replace('"v_mid"', '"v_middle"'), "parameter 'v_mid' missing"),
    (lambda text: text.replace('"value": 0.45', '"value": "NaN"'), "not a finite"),
])
def test_corrupt_or_foreign_fit_files_get_one_line_errors(tmp_path, mutate, message):
    path = schema.save(iv_record(), tmp_path / "nl.json")
    path.write_text(mutate(path.read_text()))
    with pytest.raises(FitFileError, match=message) as info:
        schema.load(path)
    assert "\n" not in str(info.value)


def test_wrong_kind_and_missing_file(tmp_path):
    path = schema.save(iv_record(), tmp_path / "nl.json")
    with pytest.raises(FitFileError, match="expected 'decay'"):
        schema.load(path, kind="decay")
    with pytest.raises(FitFileError, match="no such file"):
        schema.load(tmp_path / "absent.json")


def test_bundle_loads_as_one_object_and_builds_the_fitted_model(tmp_path):
    write_parameter_bundle(tmp_path / "b", PAPER_A, time_constant_s=5e-3, asymptote_V=0.45,
                           slope_s_per_C=15e-9 / 1.2e-12, t_max_s=15e-9,
                           v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)
    bundle = load_bundle(tmp_path / "b")
    assert {"nonlinearity", "decay", "charge_to_pulse"} <= set(bundle.records)
    model = hardware_model(bundle)
    np.testing.assert_allclose(model.cell.coefficients_A, PAPER_A)
    assert model.charge_to_pulse.saturation_charge_C == pytest.approx(1.2e-12)


# --- CLI ---------------------------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_fit_an_outside_csv_with_a_column_mapping(tmp_path):
    stored, v_in = np.meshgrid(np.linspace(0, 0.9, 19), np.linspace(0.45, 0.9, 10))
    csv = tmp_path / "silicon.csv"
    pd.DataFrame({"Vstore": stored.ravel(), "Vin": v_in.ravel(),
                  "Iout": surface(PAPER_A, stored, v_in).ravel()}).to_csv(csv, index=False)
    out = tmp_path / "fit" / "cell.json"
    result = invoke("fit", "nonlinearity", csv, "--column", "stored_voltage_V=Vstore",
                    "--column", "v_in_V=Vin", "--column", "i_out_A=Iout", "-o", out)
    assert result.exit_code == 0, result.output
    record = schema.load(out)
    assert record.provenance["origin"] == "external table"
    assert record.provenance["column_map"]["i_out_A"] == "Iout"
    assert record.metrics["r2"] > 0.999999
    assert out.with_suffix(".png").stat().st_size > 10_000
    # The same table without the mapping names what is missing, in one line.
    result = invoke("fit", "nonlinearity", csv, "-o", tmp_path / "x.json")
    assert result.exit_code == 1
    assert "missing stored_voltage_V" in result.output and "--column" in result.output
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("args, message", [
    (["fit", "nonlinearity", "absent.csv"], "no such file"),
    (["fit", "decay", "TABLE", "--order", "2"], "does not apply"),
    (["fit", "nonlinearity", "TABLE", "--v-in", "abc"], "--v-in"),
    (["fit", "nonlinearity", "TABLE", "--column", "nonsense"], "GCSIM_COLUMN=YOUR_COLUMN"),
])
def test_fit_cli_bad_input(tmp_path, args, message):
    table = tmp_path / "t.csv"
    pd.DataFrame({"stored_voltage_V": [0, 0.45, 0.9], "v_in_V": [0.9] * 3,
                  "i_out_A": ["1e-6", "x", "2"]}).to_csv(table, index=False)
    args = [str(table) if a == "TABLE" else a for a in args]
    result = invoke(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_non_numeric_table_values_are_refused(tmp_path):
    table = tmp_path / "t.csv"
    pd.DataFrame({"stored_voltage_V": [0, 0.45, 0.9], "v_in_V": [0.9] * 3,
                  "i_out_A": ["1e-6", "x", "2"]}).to_csv(table, index=False)
    result = invoke("fit", "nonlinearity", table, "--v-in", "0.9")
    assert result.exit_code == 1 and "non-numeric" in result.output


def test_export_paper_coefficients_order_and_units(tmp_path):
    bundle = write_parameter_bundle(tmp_path / "b", PAPER_A, time_constant_s=5e-3,
                                    asymptote_V=0.45, slope_s_per_C=1e4, t_max_s=15e-9,
                                    v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)
    result = invoke("export", "paper-coefficients", bundle / "nonlinearity.json")
    assert result.exit_code == 0, result.output
    exported = json.loads(result.output)
    np.testing.assert_allclose(exported["coefficients_uA"], PAPER.cell_coefficients_uA,
                               rtol=1e-12)
    assert exported["order"] == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0], [1, 1], [1, 2],
                                 [2, 0], [2, 1], [3, 0]]
    result = invoke("export", "paper-coefficients", bundle / "decay.json")
    assert result.exit_code == 1 and "holds a decay fit" in result.output


def test_write_fit_finds_the_settling_width_and_energy():
    from gcsim.fit.cell import fit_write

    rows = []
    for target in (0.0, 0.45, 0.9):
        for width in (1e-9, 2e-9, 5e-9, 10e-9):
            stored = 0.45 + (target - 0.45) * (1 - np.exp(-width / 1e-9))
            rows.append({"target_voltage_V": target, "t_write_s": width,
                         "stored_voltage_V": stored, "energy_J": 1e-15 * (1 + width / 1e-9)})
    record = fit_write(pd.DataFrame(rows), tolerance_V=0.01)
    assert record.value("write_time") == 5e-9          # 0.45 V x e^-5 = 3 mV < 10 mV
    assert record.value("energy_per_write") == pytest.approx(6e-15)
