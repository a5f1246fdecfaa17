"""The behavioural side of a tile: the array simulator in `fitted` mode on the tile's inputs.

A tile is one query token read against C keys. `gcsim.simulate.attention.simulate_attention`
runs it as a sequence of C tokens whose last query is the tile's (earlier queries are zero and
ignored), with window = array size = C, no input quantisation (the inputs already are the
stored voltages and pulse fractions the SPICE netlist gets) and no output quantisation (the
counter's rounding would turn a small charge error into a whole level). With `token_period_s`,
key j has age (C - 1 - j) token periods and the fitted decay applies, as in the retention
scenario; otherwise decay is off (the SPICE tile reads freshly written cells).

The simulator keeps S and phi but not the V array's charges A before the converter; they are
recomputed here with the same stage objects (`GainCellArray.row_charges_C`) and checked against
the simulator's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gcsim.simulate.attention import SimulationConfig, simulate_attention
from gcsim.simulate.models import HardwareModel
from gcsim.simulate.stages import GainCellArray


def _array_args(model: HardwareModel, decay_factor: float) -> dict:
    return dict(power_coefficients_A=model.cell.power_coefficients_A(model.read_on_V),
                v_mid_V=model.cell.v_mid_V, decay_factor=decay_factor,
                asymptote_V=model.decay.asymptote_V)


def v_array_charges_C(v_V: np.ndarray, drive_s: np.ndarray, model: HardwareModel,
                      decay_factor: float) -> tuple[np.ndarray, np.ndarray | float]:
    """The tile's V column charges (R,) for row drives `drive_s` (C,), as the simulator computes
    them, and the factor its signed converter stretches them by (with the model's readout
    loading; the tile integrates every V column)."""
    C = v_V.shape[0]
    args = _array_args(model, decay_factor)
    v_array = GainCellArray(v_V, **args)
    if model.loading is None:
        return v_array.row_charges_C(drive_s[None, :], C - 1, 0, C)[0, 0], 1.0
    loaded = model.loading.arrays(v_array, v_V, **args)
    charge, rest = loaded.row_charges_and_rest_C(drive_s[None, :], C - 1, 0, C,
                                                 read=np.ones((1, C), dtype=bool))
    charge, rest = charge[0, 0], rest[0, 0]
    return charge, model.loading.conversion_scale(rest, charge,
                                                  model.loading.v_conversion_current_A)


def v_conversion_scale(v_V, A_C, model: HardwareModel, decay_factor: float):
    """The signed converter's stretch for V column charges `A_C` (the loaded cells at rest)."""
    if model.loading is None:
        return 1.0
    C = v_V.shape[0]
    args = _array_args(model, decay_factor)
    loaded = model.loading.arrays(GainCellArray(v_V, **args), v_V, **args)
    rest = loaded.rest.row_charges_C(np.ones((1, C)), C - 1, 0, C)[0, 0]
    return model.loading.conversion_scale(rest, A_C, model.loading.v_conversion_current_A)


def k_conversion_scale(k_V, S_C, model: HardwareModel, decay_factor: float):
    """The HardSigmoid converter's stretch for K column charges `S_C`."""
    if model.loading is None:
        return 1.0
    C, R = k_V.shape
    args = _array_args(model, decay_factor)
    loaded = model.loading.arrays(GainCellArray(k_V, **args), k_V, **args)
    rest = loaded.rest.column_charges_C(np.ones((1, R)), C - 1, 0, C)[0]
    return model.loading.conversion_scale(rest, S_C, model.loading.k_conversion_current_A)


@dataclass
class ModelStages:
    S_C: np.ndarray       # (C,) read-out column charges (the converter's input)
    phi_s: np.ndarray     # (C,) pulse widths
    A_C: np.ndarray       # (R,) V column charges
    out: np.ndarray       # (R,) converter outputs in [-1, 1], unquantised
    decay_factor: float


def run_model(q: np.ndarray, k_V: np.ndarray, v_V: np.ndarray, model: HardwareModel,
              token_period_s: float | None = None) -> ModelStages:
    """q (R,), written voltages k_V and v_V (C, R)."""
    C, R = k_V.shape
    queries = np.zeros((C, R))
    queries[-1] = q
    config = SimulationConfig(window=C, array_size=C, quantize_inputs=False,
                              quantize_output=False, decay=token_period_s is not None,
                              token_period_s=token_period_s, keep_intermediates=True,
                              block_queries=C)
    result = simulate_attention(queries, k_V, v_V, mode="fitted", config=config, model=model)
    S = np.array(result.S[0, 0, -1], dtype=float)
    phi = np.array(result.phi[0, 0, -1], dtype=float)
    out = np.array(result.output[-1], dtype=float)
    edge = model.pulse_edge_time_s
    drive = phi + edge * (phi > 0) if edge else phi
    A, scale = v_array_charges_C(v_V, drive, model, result.decay_factor)
    check = model.output_converter.convert(A * scale, quantize=False)
    if not np.allclose(check, out, rtol=1e-9, atol=1e-12):
        raise AssertionError("V-array charges disagree with the simulator's output")
    return ModelStages(S, phi, A, out, result.decay_factor)
