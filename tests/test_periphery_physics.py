"""Real ngspice runs of the periphery circuits on the builtin models: column readout,
HardSigmoid charge-to-pulse converter, signed converter, and energy per operation."""

import numpy as np
import pytest

from gcsim.core import resources
from gcsim.characterize import spec
from gcsim.characterize.sweep import Sweep

MID_RAIL = 0.45
T_MAX = 15e-9


def run(name, values=None, parameters=None, axes=None):
    """Run a committed spec through the public path, with fewer points."""
    raw = spec.load(resources.CHARACTERIZATION / f"{name}.toml").raw
    raw = {**raw, "axes": [dict(axis) for axis in raw["axes"]]}
    for index, axis_values in (axes or {0: values}).items():
        axis = raw["axes"][index]
        for key in ("start", "stop", "num", "scale"):
            axis.pop(key, None)
        axis["values"] = axis_values
    if parameters:
        raw["parameters"] = {**raw.get("parameters", {}), **parameters}
    loaded = spec.from_dict(raw, name=name, base=resources.CHARACTERIZATION)
    result = Sweep(loaded, progress=False).run()
    assert result.failures == []
    return result.table.sort_values(list(result.table.columns[:len(loaded.axes)]))


@pytest.fixture(scope="module")
def readout():
    charges = [-9.6e-12, -2e-12, -1.2e-12, -0.6e-12, 0.0, 0.6e-12, 1.2e-12, 2e-12, 9.6e-12]
    return run("sense_amp_transfer", charges)


def test_readout_is_linear_in_its_linear_range(readout):
    linear = readout[readout.charge_in_C.abs() <= 2e-12]
    charge, v_out = linear.charge_in_C.to_numpy(), linear.v_out_V.to_numpy()
    slope, offset = np.polyfit(charge, v_out, 1)
    residual = v_out - (slope * charge + offset)
    r_squared = 1 - np.sum(residual ** 2) / np.sum((v_out - v_out.mean()) ** 2)
    assert r_squared > 0.9999
    assert np.max(np.abs(residual)) < 3e-3, "INL within 3 mV over +-2 pC"
    # Inverting integrator on about 8 pF: -0.125 V/pC, output at mid-rail for no charge.
    assert slope == pytest.approx(-1 / 8e-12, rel=0.05)
    assert abs(offset - MID_RAIL) < 5e-3


def test_readout_saturates_near_the_rails_at_full_column_charge(readout):
    ends = readout.set_index("charge_in_C").v_out_V
    assert ends[9.6e-12] < 0.05 and ends[-9.6e-12] > 0.85
    # S_sat = 1.2 pC is well inside the linear range: 0.15 V from mid-rail, not clipped.
    assert ends[1.2e-12] == pytest.approx(MID_RAIL - 0.15, abs=0.01)


def test_bitline_held_near_mid_rail_and_energy_plausible(readout):
    by_charge = readout.set_index("charge_in_C")
    assert by_charge.bitline_excursion_V[0.0] < 0.01
    assert by_charge.bitline_excursion_V[1.2e-12] < 0.06
    # Saturated, the amplifier lets go of the bitline: the excursion shows it.
    assert by_charge.bitline_excursion_V[9.6e-12] > 0.2
    energy = readout.energy_J.to_numpy()
    assert np.all(energy > 0.5e-12) and np.all(energy < 20e-12)


def test_readout_rest_draw_and_the_charge_it_sources(readout):
    by_charge = readout.set_index("charge_in_C")
    # The bias supply carries exactly the ideal reference current (20 uA at 0.9 V).
    assert np.allclose(readout.reference_power_W, 0.9 * 20e-6, rtol=1e-6)
    # At zero charge the integration barely moves the circuit: its energy is the rest draw
    # over the window, which is what the energy model charges for the rest of a token.
    idle = by_charge.idle_power_W[0.0]
    assert 50e-6 < idle < 500e-6
    assert by_charge.energy_J[0.0] == pytest.approx(idle * by_charge.energy_window_s[0.0],
                                                    rel=0.05)
    # A column that sinks charge makes the OTA source it from VDD: at most 0.9 J/C, and
    # more than half of it (the class-AB stage's idle current gives way a little).
    extra = (by_charge.energy_J[-2e-12] - by_charge.energy_J[0.0]) / 2e-12
    assert 0.45 < extra < 0.9


@pytest.fixture(scope="module")
def hardsigmoid():
    return run("charge_to_pulse_transfer",
               [-0.5e-12, 0.0, 0.3e-12, 0.6e-12, 0.9e-12, 2e-12, 3e-12])


def test_hardsigmoid_three_regions(hardsigmoid):
    by_charge = hardsigmoid.set_index("charge_in_C").pulse_width_s
    # Non-positive charge: no pulse.
    assert by_charge[-0.5e-12] < 20e-12 and by_charge[0.0] < 20e-12
    # Proportional region: width = charge / i_ref, i_ref = 80 uA.
    middle = np.array([0.3e-12, 0.6e-12, 0.9e-12])
    widths = by_charge[middle].to_numpy()
    slope, intercept = np.polyfit(middle, widths, 1)
    assert slope == pytest.approx(1 / 80e-6, rel=0.05)
    assert abs(intercept) < 0.3e-9
    s_sat = (T_MAX - intercept) / slope
    assert 1.1e-12 < s_sat < 1.3e-12, "S_sat close to the paper's 80 uA x 15 ns"
    # Saturated at T_max.
    assert by_charge[2e-12] == pytest.approx(T_MAX, abs=0.2e-9)
    assert by_charge[3e-12] == pytest.approx(T_MAX, abs=0.2e-9)


def test_comparator_delay_and_conversion_energy(hardsigmoid):
    middle = hardsigmoid[hardsigmoid.charge_in_C.between(0.2e-12, 1e-12)]
    assert np.all(middle.comparator_delay_s.between(0.1e-9, 2e-9))
    assert np.all(hardsigmoid.energy_J.between(0.5e-12, 20e-12))
    # The column at rest draws more than its integrator alone (the comparator is biased),
    # and the array's references are exactly i_bias + i_ref at 0.9 V.
    assert np.allclose(hardsigmoid.reference_power_W, 0.9 * (20e-6 + 80e-6), rtol=1e-6)
    assert np.all(hardsigmoid.idle_power_W > 0)
    assert np.allclose(hardsigmoid.energy_window_s, 17.4e-9, rtol=1e-3)


def test_signed_converter_sign_and_count():
    table = run("signed_converter_transfer",
                [-0.9e-12, -0.3e-12, -0.1e-12, 0.1e-12, 0.3e-12, 0.9e-12])
    charge = table.charge_in_C.to_numpy()
    assert np.array_equal(table.sign.to_numpy(), np.sign(charge))
    count = table["count"].to_numpy()
    assert np.all(np.diff(count) >= 0), "count monotonic in the charge"
    assert count[0] == -16 and count[-1] == 16, "full scale 600 fC saturates the count"
    ideal = np.round(np.clip(charge / 600e-15, -1, 1) * 15.5)
    assert np.all(np.abs(count - ideal) <= 1)
    assert np.all(table.energy_J.between(0.5e-12, 20e-12))


def test_read_energy_follows_the_delivered_charge():
    table = run("gain_cell_pulse", axes={0: [0.45, 0.9], 1: [15e-9]})
    full = table[table.stored_voltage_V == 0.9].iloc[0]
    # The NMOS word-line driver supplies the read current from a 0.9 V rail.
    assert full.energy_J == pytest.approx(0.9 * full.charge_C, rel=0.1)
    assert np.all(table.energy_J > 0)


def test_write_stores_the_target_and_costs_femtojoules():
    table = run("gain_cell_write", axes={0: [0.0, 0.45], 1: [5e-9]})
    assert np.allclose(table.stored_voltage_V, table.target_voltage_V, atol=0.05)
    assert np.all(table.energy_J.between(1e-17, 10e-15))
