"""Real ngspice runs of the gain cell on the builtin models: the published behaviour."""

import numpy as np
import pytest

from gcsim.core import resources
from gcsim.characterize import spec
from gcsim.characterize.sweep import Sweep

MID_RAIL = 0.45


def run(name, **changes):
    raw = spec.load(resources.CHARACTERIZATION / f"{name}.toml").raw
    raw = {**raw, "axes": [dict(axis) for axis in raw["axes"]]}
    for index, axis_changes in changes.items():
        axis = raw["axes"][int(index[1:])]
        if "values" in axis_changes:
            for key in ("start", "stop", "num", "scale"):
                axis.pop(key, None)
        axis.update(axis_changes)
    loaded = spec.from_dict(raw, name=name, base=resources.CHARACTERIZATION)
    result = Sweep(loaded, progress=False).run()
    assert result.failures == []
    return result.table


@pytest.fixture(scope="module")
def iv():
    return run("gain_cell_iv", a0={"num": 19}, a1={"values": [0.45, 0.675, 0.9]})


def test_zero_current_with_read_port_at_mid_rail(iv):
    rest = iv[iv.v_in_V == MID_RAIL]
    # Only gate tunnelling (sub-nA) flows when every drain-source voltage is zero.
    assert rest.i_out_A.abs().max() < 1e-9


def test_signed_monotonic_microamp_current(iv):
    full = iv[iv.v_in_V == 0.9].sort_values("stored_voltage_V")
    current = full.i_out_A.to_numpy()
    assert np.all(np.diff(current) > 0), "current must rise with the stored voltage"
    assert -30e-6 < current[0] < -3e-6 and 3e-6 < current[-1] < 30e-6
    crossing = np.interp(0.0, current, full.stored_voltage_V.to_numpy())
    assert 0.35 < crossing < 0.5


def test_current_grows_with_read_voltage(iv):
    top = iv[iv.stored_voltage_V == 0.9].sort_values("v_in_V").i_out_A.to_numpy()
    assert top[0] < top[1] < top[2]


def test_pulse_charge_is_signed_and_grows_with_width():
    table = run("gain_cell_pulse", a0={"values": [0.0, 0.45, 0.9]},
                a1={"values": [0.0, 5e-9, 15e-9]})
    high = table[table.stored_voltage_V == 0.9].sort_values("t_pulse_s").charge_C.to_numpy()
    low = table[table.stored_voltage_V == 0.0].sort_values("t_pulse_s").charge_C.to_numpy()
    assert np.all(np.diff(high) > 0) and np.all(np.diff(low) < 0)
    # 15 ns at about 10 uA is about 150 fC; a zero-width pulse leaves only edge charge.
    assert 80e-15 < high[-1] < 400e-15 and -400e-15 < low[-1] < -80e-15
    assert abs(high[0]) < 10e-15
    # Charge is close to linear in the width once the edges are done.
    slope_early = (high[1] - high[0]) / 5e-9
    slope_late = (high[2] - high[1]) / 10e-9
    assert slope_late == pytest.approx(slope_early, rel=0.2)


def test_retention_decays_towards_mid_rail_over_milliseconds():
    table = run("gain_cell_retention", a0={"values": [27]}, a1={"values": [0.0, 0.9]})
    for start in (0.0, 0.9):
        trace = table[table.initial_voltage_V == start].sort_values("time_s")
        deviation = (trace.stored_voltage_V - MID_RAIL).abs().to_numpy()
        assert deviation[0] == pytest.approx(0.45, abs=1e-3)
        assert np.all(np.diff(deviation) <= 1e-6), "the stored value only leaks towards mid-rail"
        at_1ms = np.interp(1e-3, trace.time_s, deviation)
        assert at_1ms > 0.3, "must retain for milliseconds"
        assert deviation[-1] < 0.5 * deviation[0], "at least one time constant within 20 ms"
