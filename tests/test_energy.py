"""`gcsim energy`: the per-token energy and latency model on a synthetic fits bundle with known
per-operation energies (no ngspice), and its command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gcsim.energy as model    # the package: resolve is in gcsim.energy.sources
from gcsim.cli import main
from gcsim.fit import schema
from gcsim.fit.bundle import load_bundle, write_parameter_bundle
from gcsim.fit.schema import FitRecord, param
from gcsim.hw import PAPER

READ_FIXED = 0.5e-15     # J
READ_POWER = 3e-6        # W
INTEGRATION = 2e-12      # J
C2P = 3e-12              # J
SIGNED = 4e-12           # J
WRITE = 1e-15            # J
WRITE_TIME = 5e-9        # s
T_MAX = 15e-9            # s


def _edit(path, **parameters):
    raw = json.loads(path.read_text())
    for name, (value, unit) in parameters.items():
        raw["parameters"][name] = {"value": value, "unit": unit}
    path.write_text(json.dumps(raw))


@pytest.fixture
def bundle_dir(tmp_path):
    """A bundle with every per-operation energy, the published cell and readout."""
    root = write_parameter_bundle(
        tmp_path / "fits", [c * 1e-6 for c in PAPER.cell_coefficients_uA],
        time_constant_s=5e-3, asymptote_V=0.45, slope_s_per_C=T_MAX / 1.2e-12, t_max_s=T_MAX,
        saturation_C=3.6e-12, output_full_scale_C=0.6e-12,
        v_mid_V=PAPER.mid_rail_V, read_on_V=PAPER.read_on_V)
    _edit(root / "sense_amp.json", energy_per_integration=(INTEGRATION, "J"))
    _edit(root / "charge_to_pulse.json", energy_per_conversion=(C2P, "J"),
          comparator_delay=(0.5e-9, "s"))
    _edit(root / "signed_converter.json", energy_per_conversion=(SIGNED, "J"))
    provenance = {"origin": "test", "models": "builtin:tt"}
    schema.save(FitRecord(kind="charge_per_pulse", parameters={
        "current_coefficients": param([0.0, 2e-5, 0.0, 3e-5], "A"),
        "edge_charge_coefficients": param([0.0, 1e-15, 0.0, 0.0], "C"),
        "edge_time": param(1e-10, "s"), "coefficients": param(PAPER.cell_coefficients_uA, "A"),
        "order": param(3, "1"), "v_mid": param(0.45, "V"), "read_on_level": param(0.9, "V"),
        "energy_per_read_fixed": param(READ_FIXED, "J"),
        "energy_per_read_power": param(READ_POWER, "W")},
        valid_range={}, metrics={}, provenance=provenance), root / "charge_per_pulse.json")
    schema.save(FitRecord(kind="write", parameters={
        "write_time": param(WRITE_TIME, "s"), "tolerance": param(0.01, "V"),
        "energy_per_write": param(WRITE, "J")}, valid_range={}, metrics={},
        provenance=provenance), root / "write.json")
    return root


def _estimate(root, **config):
    quantities = model.resolve(load_bundle(root))
    return model.estimate(quantities, model.EnergyConfig(**config))


def test_every_quantity_comes_from_the_fits(bundle_dir):
    quantities = model.resolve(load_bundle(bundle_dir))
    for key in ("read_fixed", "read_power", "integration", "c2p_conversion",
                "signed_conversion", "write_energy", "write_time", "t_max", "comparator_delay"):
        assert quantities[key].source == "fit", key
    assert quantities["settling"].source == "parameter"     # no --sweeps
    assert quantities["integration"].value == INTEGRATION


def test_breakdown_sums_to_the_total(bundle_dir):
    result = _estimate(bundle_dir, window=1024, heads=12)
    table = result.breakdown
    assert math.isclose(table["per_head_J"].sum(), result.energy_per_head_J)
    assert math.isclose(result.energy_per_token_J, 12 * result.energy_per_head_J)
    assert (table["per_head_J"] == table["count_per_head"] * table["energy_per_op_J"]).all()
    assert math.isclose(table["share_pct"].sum(), 100.0)
    assert math.isclose(result.latency["total_s"].sum(), result.latency_s)
    # hand count for W = 1024, D = 64, 16 sub-tiles
    read_k = READ_FIXED + READ_POWER * 0.5 * T_MAX
    expected = (2 * 64 * 1024 * read_k + 1024 * (INTEGRATION + C2P)
                + 16 * 64 * (INTEGRATION + SIGNED) + 2 * 64 * WRITE + 4e-9)
    assert math.isclose(result.energy_per_head_J, expected, rel_tol=1e-12)
    # latency: write, T_max, settling 1 ns, max(align 0.7 ns, comparator 0.5 ns) + T_max,
    # settling, align + T_max
    assert math.isclose(result.latency_s, WRITE_TIME + 3 * T_MAX + 2e-9 + 1.4e-9,
                        rel_tol=1e-12)


def test_energy_grows_linearly_with_the_window(bundle_dir):
    quantities = model.resolve(load_bundle(bundle_dir))
    windows = [64, 128, 256, 1024, 4096]
    table = model.sweep(quantities, model.EnergyConfig(heads=12), "window", windows)
    fixed = 4e-9 + 2 * 64 * WRITE          # digital + writes do not depend on W
    per_token = (table["energy_per_head_J"] - fixed) / table["window"]
    assert per_token.max() == pytest.approx(per_token.min(), rel=1e-12)
    assert ((table["energy_per_token_J"] - 12 * table["energy_per_head_J"]).abs()
            <= 1e-12 * table["energy_per_token_J"]).all()
    assert table["latency_s"].nunique() == 1       # sub-tiles in parallel


def test_serial_subtiles_repeat_the_array_phases(bundle_dir):
    parallel = _estimate(bundle_dir, window=1024)
    serial = _estimate(bundle_dir, window=1024, subtile_parallel=4)
    array_phases = parallel.latency_s - WRITE_TIME
    assert serial.latency_s == pytest.approx(WRITE_TIME + 4 * array_phases)
    assert serial.energy_per_head_J == parallel.energy_per_head_J


def test_a_changed_fit_energy_changes_the_result_exactly(bundle_dir):
    before = _estimate(bundle_dir, window=1024, heads=12)
    delta = 1e-12
    _edit(bundle_dir / "sense_amp.json", energy_per_integration=(INTEGRATION + delta, "J"))
    after = _estimate(bundle_dir, window=1024, heads=12)
    integrations = 1024 + 16 * 64            # K columns + V sub-tile columns
    assert after.energy_per_head_J - before.energy_per_head_J == pytest.approx(
        integrations * delta, rel=1e-9)
    assert after.energy_per_token_J - before.energy_per_token_J == pytest.approx(
        12 * integrations * delta, rel=1e-9)
    _edit(bundle_dir / "charge_per_pulse.json", energy_per_read_power=(2 * READ_POWER, "W"))
    doubled = _estimate(bundle_dir, window=1024, heads=12, query_mean=0.25, phi_mean=0.75)
    reads = 64 * 1024 * READ_POWER * T_MAX * (0.25 + 0.75)
    assert doubled.energy_per_head_J - after.energy_per_head_J == pytest.approx(reads, rel=1e-9)


def test_a_missing_energy_is_flagged_and_assumed_zero(bundle_dir):
    (bundle_dir / "write.json").unlink()
    raw = json.loads((bundle_dir / "signed_converter.json").read_text())
    del raw["parameters"]["energy_per_conversion"]
    (bundle_dir / "signed_converter.json").write_text(json.dumps(raw))
    result = _estimate(bundle_dir)
    rows = result.breakdown.set_index("component")
    assert rows.loc["signed conversion and count", "status"] == "MISSING"
    assert rows.loc["signed conversion and count", "per_head_J"] == 0
    assert rows.loc["write new token's K and V", "status"] == "MISSING"
    assert result.quantities["write_time"].value == 10e-9
    assert any(note.startswith("MISSING signed_conversion") for note in result.assumptions)


def test_sweep_tables_give_settling_reset_and_a_missing_write(bundle_dir, tmp_path):
    (bundle_dir / "write.json").unlink()
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    # settling: an exponential approach with tau 0.2 ns after the current ends at 17.6 ns
    time = [i * 1e-10 for i in range(267)]
    rows = []
    for q in (-1e-12, 1e-12):
        for t in time:
            v = 0.45 - 0.1 * q / 1e-12 * (1 - math.exp(-max(t - 17.6e-9, 0) / 0.2e-9)) \
                if t > 17.6e-9 else 0.45
            rows.append({"charge_in_C": q, "time_s": t, "v_out_V": v})
    pd.DataFrame(rows).to_parquet(sweeps / "sense_amp_settling.parquet")
    pd.DataFrame({"charge_in_C": [0.0, 1e-12], "reset_settling_s": [0.0, 7e-9],
                  "v_out_V": [0.45, 0.3]}).to_parquet(sweeps / "sense_amp_reset.parquet")
    pd.DataFrame({"target_voltage_V": [0.0, 0.9, 0.0, 0.9], "t_write_s": [1e-9, 1e-9, 8e-9, 8e-9],
                  "stored_voltage_V": [0.1, 0.7, 0.005, 0.89],
                  "energy_J": [1e-15, 2e-15, 3e-15, 5e-15]}).to_parquet(
        sweeps / "gain_cell_write.parquet")
    quantities = model.resolve(load_bundle(bundle_dir), sweeps)
    # 0.1 V * exp(-t / 0.2 ns) < 2 mV  ->  t > 0.78 ns: the 0.8 ns grid point
    assert quantities["settling"].source == "sweep"
    assert quantities["settling"].value == pytest.approx(0.8e-9)
    assert quantities["reset_time"].value == 7e-9
    assert quantities["write_time"].value == 8e-9
    assert quantities["write_energy"].value == pytest.approx(4e-15)
    result = model.estimate(quantities, model.EnergyConfig())
    assert result.latency.loc[0, "total_s"] == 8e-9          # max(write 8 ns, reset 7 ns)


def test_paper_and_gpu_columns_follow_the_stated_figures(bundle_dir):
    result = _estimate(bundle_dir, window=1024, heads=12)
    paper = model.paper_comparison(result).set_index("part")
    assert paper.loc["QK array + HardSigmoid", "paper_per_head_J"] == 1120e-12
    assert paper.loc["phi-V array", "paper_per_head_J"] == 700e-12
    assert paper.loc["DACs (K/V writes)", "paper_per_head_J"] == 330e-12
    assert paper.loc["digital control and routing", "paper_per_head_J"] == 4e-9
    assert paper.loc["total", "paper_per_head_J"] == pytest.approx(6.15e-9)
    assert paper.loc["latency per token [s]", "paper_per_head_J"] == 65e-9
    assert (paper["ratio_gcsim_to_paper"]
            == paper["gcsim_per_head_J"] / paper["paper_per_head_J"]).all()
    qk = result.breakdown[result.breakdown["paper_part"] == "QK array + HardSigmoid"]
    assert paper.loc["QK array + HardSigmoid", "gcsim_per_head_J"] == pytest.approx(
        qk["per_head_J"].sum())
    gpu = model.gpu_comparison(result).set_index("gpu")
    assert gpu.loc["RTX 4090", "speedup"] == pytest.approx(22.4e-6 / result.latency_s)
    assert gpu.loc["RTX 4090", "energy_ratio"] == pytest.approx(7.18e-3 /
                                                                result.energy_per_token_J)
    assert gpu.loc["Jetson Nano", "speedup"] == pytest.approx(489e-6 / result.latency_s)
    assert gpu.loc["Jetson Nano", "paper_speedup"] == pytest.approx(489e-6 / 65e-9)
    assert gpu.loc["RTX 4090", "paper_energy_ratio"] == pytest.approx(7.18e-3 / (12 * 6.15e-9))
    custom = model.gpu_comparison(result, {"X": (1e-6, 1e-3)})
    assert list(custom["gpu"]) == ["X"]


def test_cli_reports_saves_and_plots(bundle_dir, tmp_path):
    out = tmp_path / "out"
    plot = tmp_path / "e.png"
    result = CliRunner().invoke(main, ["energy", "--fits", str(bundle_dir), "--out", str(out),
                                       "--plot", str(plot), "--models", "builtin"])
    assert result.exit_code == 0, result.output
    assert "Energy per component" in result.output and "RTX 4090" in result.output
    assert "Assumptions" in result.output and "parameter" in result.output
    for name in ("breakdown", "latency", "paper", "gpu"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.parquet").is_file()
    saved = json.loads((out / "energy.json").read_text())
    assert saved["energy_per_token_J"] == pytest.approx(12 * saved["energy_per_head_J"])
    assert plot.stat().st_size > 1000


def test_cli_json_sweep_gpu_and_overrides(bundle_dir, tmp_path):
    plot = tmp_path / "scan.png"
    result = CliRunner().invoke(main, [
        "energy", "--fits", str(bundle_dir), "--json", "--sweep", "window=64,256,1024",
        "--plot", str(plot), "--gpu", "A=10u,1m", "--op", "integration=0", "--window", "256",
        "--heads", "4", "--digital-energy", "1n"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [row["window"] for row in doc["sweep"]] == [64, 256, 1024]
    assert [row["gpu"] for row in doc["gpu"]] == ["A"]
    assert doc["quantities"]["integration"] == {"value": 0.0, "unit": "J", "source": "override",
                                                "detail": "given on the command line"}
    assert doc["energy_per_token_J"] == pytest.approx(4 * doc["energy_per_head_J"])
    assert plot.is_file()


@pytest.mark.parametrize("args, message", [
    (["--window", "ten"], "--window"),
    (["--window", "0"], "--window"),
    (["--dim", "128"], "--dim 128 > --array 64"),
    (["--query-mean", "1.5"], "--query-mean"),
    (["--op", "bogus=1p"], "--op bogus: unknown"),
    (["--op", "integration=1;rm"], "--op integration"),
    (["--gpu", "X=1u"], "--gpu"),
    (["--sweep", "colour=1,2"], "--sweep"),
    (["--digital-energy", "-1n"], "--digital-energy"),
    (["--plot", "x.pdf"], "expected a .png"),
    (["--models", "sky130"], "not sky130"),
])
def test_cli_bad_input_is_one_line(bundle_dir, args, message):
    result = CliRunner().invoke(main, ["energy", "--fits", str(bundle_dir), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output


def test_cli_missing_bundle(tmp_path):
    result = CliRunner().invoke(main, ["energy", "--fits", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert "fits bundle not found" in result.output
    help_text = CliRunner().invoke(main, ["energy", "--help"]).output
    assert "Example:" in help_text and "gcsim energy" in help_text


# What each periphery circuit draws outside its energy window (synthetic, round numbers).
IDLE_INT, IDLE_K, IDLE_V = 130e-6, 190e-6, 200e-6       # W at rest: integrator, K and V column
WIN_INT, WIN_K, WIN_V = 21e-9, 17.4e-9, 18.4e-9         # s each energy_J integrates
REF_K, REF_V = 90e-6, 81e-6                             # W, an array's references
SUNK, SOURCED = 0.7, -0.3                               # J/C, the integration's charge slopes


@pytest.fixture
def idle_bundle(bundle_dir):
    _edit(bundle_dir / "sense_amp.json", idle_power=(IDLE_INT, "W"),
          energy_window=(WIN_INT, "s"), reference_power=(18e-6, "W"),
          energy_per_sunk_charge=(SUNK, "J/C"), energy_per_sourced_charge=(SOURCED, "J/C"))
    _edit(bundle_dir / "charge_to_pulse.json", idle_power=(IDLE_K, "W"),
          energy_window=(WIN_K, "s"), reference_power=(REF_K, "W"))
    _edit(bundle_dir / "signed_converter.json", idle_power=(IDLE_V, "W"),
          energy_window=(WIN_V, "s"), reference_power=(REF_V, "W"))
    return bundle_dir


def test_every_circuit_is_counted_over_the_whole_token_period(idle_bundle):
    quantities = model.resolve(load_bundle(idle_bundle))
    for key in ("integration_idle", "c2p_idle", "signed_idle", "integration_window",
                "c2p_window", "signed_window", "k_reference", "v_reference",
                "integration_sunk", "integration_sourced"):
        assert quantities[key].source == "fit", key
    period = 0.8e-6
    result = model.estimate(quantities, model.EnergyConfig(window=1024, heads=12))
    assert result.token_period_s == period == quantities["token_period"].value
    rows = result.breakdown.set_index("component")["per_head_J"]
    # Each column over one token period: its two measured windows, the converter beside the
    # integrator's window, and the whole column at rest for the rest.
    k_column = (IDLE_K * (period - WIN_INT - WIN_K) + (IDLE_K - IDLE_INT) * WIN_INT)
    v_column = (IDLE_V * (period - WIN_INT - WIN_V) + (IDLE_V - IDLE_INT) * WIN_INT)
    assert rows["K columns at rest (integrator + converter)"] == pytest.approx(1024 * k_column)
    assert rows["V columns at rest (integrator + converter)"] == pytest.approx(
        16 * 64 * v_column)
    assert rows["K-array references (bias, i_ref)"] == pytest.approx(16 * REF_K * period)
    assert rows["V-array references (bias, i_ref_signed)"] == pytest.approx(
        16 * REF_V * period)
    k_int = rows["K column integrations (sense amps)"] / 1024
    v_int = rows["V column integrations (sense amps)"] / (16 * 64)
    read = 2 * 64 * 1024 * (READ_FIXED + READ_POWER * 0.5 * T_MAX)
    expected = (read + 1024 * (k_int + C2P + k_column) + 16 * 64 * (v_int + SIGNED + v_column)
                + 16 * (REF_K + REF_V) * period + 2 * 64 * WRITE + 4e-9)
    assert result.energy_per_head_J == pytest.approx(expected, rel=1e-12)
    # The rest grows with the token period at exactly the circuits' rest power: a model that
    # dropped the idle term (or counted only the windows) would not move.
    quantities_2 = dict(quantities)
    quantities_2["token_period"] = model.Quantity("token_period", 2 * period, "s", "override",
                                                  "test")
    longer = model.estimate(quantities_2, model.EnergyConfig(window=1024, heads=12))
    rest_power = 1024 * IDLE_K + 16 * 64 * IDLE_V + 16 * (REF_K + REF_V)
    assert longer.energy_per_head_J - result.energy_per_head_J == pytest.approx(
        rest_power * period, rel=1e-12)
    # Back to back the token period is the latency, and it must hold a column's windows.
    tight = model.estimate(quantities, model.EnergyConfig(back_to_back=True))
    assert tight.token_period_s == tight.latency_s
    quantities_2["token_period"] = model.Quantity("token_period", 30e-9, "s", "override", "")
    with pytest.raises(model.EnergyError, match="shorter than a column's measured cycle"):
        model.estimate(quantities_2, model.EnergyConfig())


def test_the_charge_a_column_sinks_is_paid_by_its_integration(idle_bundle):
    quantities = model.resolve(load_bundle(idle_bundle))
    result = model.estimate(quantities, model.EnergyConfig(window=1024, query_mean=0.5))
    k_int = result.breakdown.set_index("component").loc[
        "K column integrations (sense amps)", "energy_per_op_J"]
    # The same column by brute force: 64 cells at independent, equally likely DAC levels
    # (8 over 0..0.9 V without a design), each read for the mean width plus its edges.
    record = load_bundle(idle_bundle).records["charge_per_pulse"]
    levels = np.linspace(0.0, 0.9, 8) - 0.45
    current = np.polynomial.polynomial.polyval(levels, record.value("current_coefficients"))
    width = 0.5 * T_MAX + record.value("edge_time")
    draws = np.random.default_rng(7).integers(0, 8, size=(200_000, 64))
    charge = (current[draws] * width).sum(axis=1)
    brute = (INTEGRATION + SUNK * np.maximum(-charge, 0).mean()
             + SOURCED * np.maximum(charge, 0).mean())
    assert k_int != INTEGRATION
    assert k_int == pytest.approx(brute, rel=2e-3)


def test_cli_token_period(idle_bundle):
    runner = CliRunner()
    out = {}
    for period in ("design", "latency", "100n"):
        result = runner.invoke(main, ["energy", "--fits", str(idle_bundle), "--json",
                                          "--token-period", period])
        assert result.exit_code == 0, result.output
        out[period] = json.loads(result.output)
    assert out["design"]["token_period_s"] == 0.8e-6
    assert out["latency"]["token_period_s"] == out["latency"]["latency_s"]
    assert out["100n"]["token_period_s"] == pytest.approx(100e-9)
    assert (out["latency"]["energy_per_head_J"] < out["100n"]["energy_per_head_J"]
            < out["design"]["energy_per_head_J"])
