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

from dataclasses import dataclass, replace

import numpy as np

from gcsim.simulate.attention import (SimulationConfig, _per_token, applied_decay,
                                      draw_mismatch, simulate_attention)
from gcsim.hw import HardwareModel
from gcsim.hw.stages import GainCellArray


def model_at_temperature(model: HardwareModel, temperature_C: float | None) -> HardwareModel:
    """`model` with its decay at `temperature_C` (None: as it is)."""
    if temperature_C is None:
        return model
    return replace(model, decay=model.decay.at_temperature(temperature_C))


def _array(written_V: np.ndarray, model: HardwareModel, decay_factor: float,
           cells=(None, None)):
    """The cells as the simulator builds them: a GainCellArray with each cell's (gain,
    threshold shift) `cells` when drawn, read through the model's loading integrator when it
    has one (a LoadedArray)."""
    args = dict(power_coefficients_A=model.cell.power_coefficients_A(model.read_on_V),
                v_mid_V=model.cell.v_mid_V, decay_factor=decay_factor,
                asymptote_V=model.decay.asymptote_of(written_V) if decay_factor else 0.0,
                cell_gain=cells[0], vt_shift_V=cells[1])
    array = GainCellArray(written_V, **args)
    return array if model.loading is None else model.loading.arrays(array, written_V, **args)


def v_array_charges_C(v_V: np.ndarray, drive_s: np.ndarray, model: HardwareModel,
                      decay_factor: float, cells=(None, None)
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """The tile's V column charges (R,) for row drives `drive_s` (C,), as the simulator computes
    them (the tile integrates every V column), and each column's conductance with all its cells
    at rest (None for an ideal readout)."""
    C = v_V.shape[0]
    array = _array(v_V, model, decay_factor, cells)
    if model.loading is None:
        return array.row_charges_C(drive_s[None, :], C - 1, 0, C)[0, 0], None
    charge, rest = array.row_charges_and_rest_C(drive_s[None, :], C - 1, 0, C,
                                                read=np.ones((1, C), dtype=bool))
    return charge[0, 0], rest[0, 0]


def k_rest_conductance_S(k_V: np.ndarray, model: HardwareModel, decay_factor: float):
    """Each K column's conductance with all its cells at rest (None for an ideal readout)."""
    if model.loading is None:
        return None
    C, R = k_V.shape
    return _array(k_V, model, decay_factor).rest.column_charges_C(np.ones((1, R)), C - 1, 0,
                                                                   C)[0]


def conversion_stretch(model: HardwareModel, rest_S, charge_C, converter: str):
    """How much longer converter 'k' (HardSigmoid) or 'v' (signed) takes to empty a loaded
    integrator holding `charge_C` (1 for an ideal readout)."""
    if rest_S is None:
        return 1.0
    lo = model.loading
    current = lo.k_conversion_current_A if converter == "k" else lo.v_conversion_current_A
    return lo.conversion_scale(rest_S, charge_C, current)


@dataclass
class ModelStages:
    S_C: np.ndarray       # (C,) read-out column charges (the converter's input)
    phi_s: np.ndarray     # (C,) pulse widths
    A_C: np.ndarray       # (R,) V column charges
    out: np.ndarray       # (R,) converter outputs in [-1, 1], unquantised
    decay_factor: float
    model: HardwareModel  # the model as the run applied it (its decay with the read disturb)


def written_V(target_V: np.ndarray, model: HardwareModel, write_error: bool) -> np.ndarray:
    """Where the tile's writes leave its cells: on the targets (the tile starts them there),
    or where the model's write error puts them (the tile writes through the write devices)."""
    if not write_error or model.write_error is None:
        return target_V
    return model.write_error.written_V(target_V)


def run_model(q: np.ndarray, k_V: np.ndarray, v_V: np.ndarray, model: HardwareModel,
              token_period_s: float | None = None, write_error: bool = False,
              mismatch_seed: int | None = None) -> ModelStages:
    """q (R,), target voltages k_V and v_V (C, R); with `write_error`, the model's write
    error applies (as when the tile writes through its write devices); with `mismatch_seed`,
    every cell has its drawn (gain, threshold shift), as in the simulator's own runs."""
    C, R = k_V.shape
    queries = np.zeros((C, R))
    queries[-1] = q
    config = SimulationConfig(window=C, array_size=C, quantize_inputs=False,
                              quantize_output=False, decay=token_period_s is not None,
                              token_period_s=token_period_s, keep_intermediates=True,
                              block_queries=C, write_error=write_error,
                              mismatch_seed=mismatch_seed,
                              # one tile, checked against SPICE and against the charges
                              # recomputed below: the loading correction in full precision
                              loading_dtype="float64",
                              # the CLI refuses ages beyond the decay fit unless asked
                              extrapolate=True)
    result = simulate_attention(queries, k_V, v_V, mode="fitted", config=config, model=model)
    model = replace(model, decay=applied_decay(model, model.decay, result.decay_factor, config))
    S = np.array(result.S[0, 0, -1], dtype=float)
    phi = np.array(result.phi[0, 0, -1], dtype=float)
    out = np.array(result.output[-1], dtype=float)
    edge = model.pulse_edge_time_s
    drive = phi + edge * (phi > 0) if edge else phi
    v_cells = (None, None)
    if mismatch_seed is not None:
        # The simulator's own draw for this tile (one head, one array of C tokens): its V
        # cells, for the V charges recomputed here.
        drawn = draw_mismatch(model, mismatch_seed, 1, R, config, C)
        if drawn is not None:
            v_cells = _per_token(drawn[1], 0, C, False, C)
    A, rest = v_array_charges_C(written_V(v_V, model, write_error), drive, model,
                                result.decay_factor, v_cells)
    check = model.output_converter.convert(A * conversion_stretch(model, rest, A, "v"),
                                           quantize=False)
    if not np.allclose(check, out, rtol=1e-9, atol=1e-12):
        raise AssertionError("V-array charges disagree with the simulator's output")
    return ModelStages(S, phi, A, out, result.decay_factor, model)
