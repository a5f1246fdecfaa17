"""The fit kinds: what each needs from a table, how it is fitted, and what its file must hold."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from gcsim.fit import cell, decay, loading, mismatch, periphery
from gcsim.fit.numerics import FitError
from gcsim.fit.schema import REQUIRED_PARAMETERS

# A periphery testbench's draw outside its energy window (periphery._idle).
IDLE_COLUMNS = ("energy_window_s", "idle_power_W", "reference_power_W")

@dataclass(frozen=True)
class Kind:
    name: str
    columns: tuple[str, ...]            # table columns the fitter reads
    optional_columns: tuple[str, ...]
    sweep: str                          # the characterisation spec `gcsim regen` fits it on
    summary: str
    fitter: Callable = field(repr=False, default=None)


@functools.cache
def _kinds() -> dict[str, Kind]:
    return {k.name: k for k in (
        Kind("nonlinearity", ("stored_voltage_V", "v_in_V", "i_out_A"), (), "gain_cell_iv",
             "cell current over stored and read voltage (published polynomial basis)",
             cell.fit_nonlinearity),
        Kind("charge_per_pulse", ("stored_voltage_V", "t_pulse_s", "charge_C"), ("energy_J",),
             "gain_cell_pulse", "charge of one read pulse: current x width + edge charge",
             cell.fit_charge_per_pulse),
        Kind("decay", ("initial_voltage_V", "time_s", "stored_voltage_V"), ("temperature_C",),
             "gain_cell_retention", "stored-voltage retention: time constant and asymptote",
             decay.fit_decay),
        Kind("sense_amp", ("charge_in_C", "v_out_V"),
             ("bitline_excursion_V", "energy_J", *IDLE_COLUMNS),
             "sense_amp_transfer", "column readout: gain, offset, linear range, saturation",
             periphery.fit_sense_amp),
        Kind("charge_to_pulse", ("charge_in_C", "pulse_width_s"),
             ("comparator_delay_s", "energy_J", *IDLE_COLUMNS), "charge_to_pulse_transfer",
             "HardSigmoid charge-to-pulse: slope, offset, T_max, S_sat",
             periphery.fit_charge_to_pulse),
        Kind("signed_converter", ("charge_in_C", "pulse_width_s"),
             ("count", "energy_J", *IDLE_COLUMNS),
             "signed_converter_transfer", "signed output converter: full scale and levels",
             periphery.fit_signed_converter),
        Kind("mismatch", ("mc_run", "stored_voltage_V", "i_out_A"), ("v_in_V",),
             "gain_cell_mismatch", "Monte Carlo spread of the cell current",
             mismatch.fit_mismatch),
        Kind("write", ("target_voltage_V", "t_write_s", "stored_voltage_V"), ("energy_J",),
             "gain_cell_write", "gain-cell write: settling time and energy",
             cell.fit_write),
        Kind("read_disturb", ("stored_voltage_V", "t_pulse_s", "disturb_V", "reads"), (),
             "gain_cell_read_disturb", "read disturb: stored-voltage shift per read",
             cell.fit_read_disturb),
        Kind("cell_conductance", ("bitline_step_V", "stored_voltage_V", "t_pulse_s", "charge_C",
                                  "bitline_deviation_integral_Vs"), (),
             "gain_cell_bitline", "cell conductance seen from the bitline, read and rest",
             loading.fit_cell_conductance),
        Kind("readout_loading", ("charge_in_C", "t_int_s", "integration_window_s",
                                 "bitline_deviation_integral_Vs", "charge_time_integral_Cs"), (),
             "sense_amp_loading", "integrator virtual-ground deviation: offset, gain, bandwidth",
             loading.fit_readout_loading),
    )}


def get(name: str) -> Kind:
    registry = _kinds()
    if name not in registry:
        raise FitError(f"unknown fit kind {name!r} (choose {', '.join(REQUIRED_PARAMETERS)})")
    return registry[name]


def all_kinds() -> list[Kind]:
    return list(_kinds().values())
