"""One validation: inputs -> SPICE tile and behavioural model -> stage-by-stage report."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gcsim.spice import devices
from gcsim.spice import process as processes
from gcsim.core.atomic import replacing
from gcsim.core.errors import GcsimError
from gcsim.core.quantize import quantize
from gcsim.hw import HardwareModel
from gcsim.validate import compare
from gcsim.validate.behaviour import (
    conversion_stretch,
    model_at_temperature,
    written_V,
    k_rest_conductance_S,
    run_model,
    v_array_charges_C,
)
from gcsim.validate.retention import aged_voltages
from gcsim.validate.spice import SpiceStages, run_tile
from gcsim.validate.tile import Tile, build
from gcsim.validate.timing import TileParams

# The architecture's DAC levels, for inputs made without a design.
QUERY_LEVELS, STORED_LEVELS = 16, 8
NO_PULSE_S = 1e-12   # SPICE widths below this are a converter that stayed off


class InputError(GcsimError):
    """Inputs of the wrong shape or outside the physical range."""


def random_inputs(rows: int, cols: int, seed: int, high: float, low: float = 0.0,
                  stored_levels: int = STORED_LEVELS, query_levels: int = QUERY_LEVELS):
    """q (rows,) on the query DAC's levels; k, v (cols, rows) on the stored levels of
    [low, high] (the design's stored range and levels, `TileParams.stored_range` and
    `TileParams.levels`; the architecture's 16 and 8 by default)."""
    rng = np.random.default_rng(seed)
    q = rng.integers(0, query_levels, rows) / (query_levels - 1)
    step = (high - low) / (stored_levels - 1)
    k = low + rng.integers(0, stored_levels, (cols, rows)) * step
    v = low + rng.integers(0, stored_levels, (cols, rows)) * step
    return q, k, v


# Named input scenarios of `gcsim validate tile --inputs NAME`: random levels, and inputs that
# reach where random ones rarely go.
INPUT_SCENARIOS = {
    "random": "every q, k and v drawn uniformly from the DAC levels",
    "structured": "attention-like: smoothly correlated queries, four strong keys aligned with "
                  "the query, the other keys and the values near mid-rail",
    "saturating": "queries and keys in their upper halves: most K columns beyond S_sat",
    "extremes": "every query at its maximum; keys and values at the lowest and the highest "
                "level in alternate columns",
    "worst-current": "every query and key at the maximum: the largest column current the "
                     "readout sees, into every K and V integrator, V at alternate rails",
}


def scenario_inputs(name: str, rows: int, cols: int, seed: int, high: float,
                    low: float = 0.0, stored_levels: int = STORED_LEVELS,
                    query_levels: int = QUERY_LEVELS):
    """q (rows,), k and v (cols, rows) of a named scenario (INPUT_SCENARIOS), on the DAC
    levels of [low, high]."""
    if name not in INPUT_SCENARIOS:
        raise InputError(f"--inputs {name!r}: unknown scenario (known: "
                         f"{', '.join(INPUT_SCENARIOS)})")
    if name == "random":
        return random_inputs(rows, cols, seed, high, low, stored_levels, query_levels)
    rng = np.random.default_rng(seed)
    top_q, top = query_levels - 1, stored_levels - 1
    step = (high - low) / top

    def stored(levels):
        return low + np.asarray(levels) * step

    alternate = (np.arange(cols) % 2 == 0)[:, None] * np.ones((1, rows), bool)
    if name == "structured":
        phase = rng.uniform(0, 2 * np.pi)
        margin = 0.05    # of the query range: the wave stays off both rails
        wave = 0.5 + (0.5 - margin) * np.sin(2 * np.pi * 2.5 * np.arange(rows) / rows + phase)
        q = np.round(wave * top_q) / top_q
        middle = (top // 2 - 1, top // 2 + 2)
        k = stored(rng.integers(*middle, (cols, rows)))
        v = stored(rng.integers(*middle, (cols, rows)))
        strong = rng.choice(cols, size=min(4, cols), replace=False)
        k[strong] = stored(np.where(q >= 0.5, top, 0))[None, :]
        v[strong] = stored(rng.integers(0, top + 1, (len(strong), rows)))
    elif name == "saturating":
        q = rng.integers(top_q // 2, top_q + 1, rows) / top_q
        k = stored(rng.integers(top // 2 + 1, top + 1, (cols, rows)))
        v = stored(rng.integers(0, top + 1, (cols, rows)))
    elif name == "extremes":
        q = np.ones(rows)
        k = stored(np.where(alternate, top, 0))
        v = stored(np.where(alternate, 0, top))
    else:  # worst-current
        q = np.ones(rows)
        k = stored(np.full((cols, rows), top))
        even_dims = np.ones((cols, 1), bool) * (np.arange(rows) % 2 == 0)[None, :]
        v = stored(np.where(even_dims, top, 0))
    return q, k, v


def check_inputs(q, k, v, high: float, rows: int | None = None, cols: int | None = None,
                 low: float = 0.0):
    """Shapes q (R,), k and v (C, R); finite; q in [0, 1], k and v in [low, high]."""
    q, k, v = (np.asarray(x, dtype=float) for x in (q, k, v))
    if q.ndim != 1:
        raise InputError(f"Q must be 1-D (rows,), got shape {q.shape}")
    for name, x in (("K", k), ("V", v)):
        if x.ndim != 2 or x.shape[1] != q.shape[0]:
            raise InputError(f"{name} must be (cols, rows) = (C, {q.shape[0]}) for Q of "
                             f"{q.shape[0]} rows, got shape {x.shape}")
    if k.shape != v.shape:
        raise InputError(f"K and V must have the same shape, got {k.shape} and {v.shape}")
    if rows is not None and q.shape[0] != rows:
        raise InputError(f"--rows {rows} but Q has {q.shape[0]} rows")
    if cols is not None and k.shape[0] != cols:
        raise InputError(f"--cols {cols} but K has {k.shape[0]} columns")
    if q.shape[0] < 1 or k.shape[0] < 2:
        raise InputError("a tile needs at least 1 row and 2 columns")
    # A level computed as low + n * step may land a few ulps outside [low, high].
    slack = 1e-9 * max(1.0, abs(high))
    for name, x, lo, hi in (("Q", q, 0.0, 1.0), ("K", k, low, high), ("V", v, low, high)):
        if not np.all(np.isfinite(x)):
            raise InputError(f"{name} contains NaN or infinite values")
        if x.min() < lo - slack or x.max() > hi + slack:
            raise InputError(f"{name} spans [{x.min():.4g}, {x.max():.4g}], outside the "
                             f"design's range [{lo:g}, {hi:g}]" + (" V" if name != "Q" else ""))
    return q, k, v


def write_summary(params: TileParams) -> dict:
    """How the tile's cells got their stored voltages, for the report."""
    if params.write == "ideal":
        return {"mode": "ideal"}
    return {"mode": "devices", "t_write_s": params["t_write"],
            "t_wwl_rise_s": params["t_wwl_rise"], "t_wwl_fall_s": params["t_wwl_fall"],
            "v_wwl_V": params["v_wwl"], "v_wwl_low_V": params["v_wwl_low"],
            "dac_offset_V": params["dac_offset"], "phase_s": params.t_write_end}


@dataclass
class Validation:
    report: dict
    stages: list[compare.StageData]
    spice: SpiceStages


def validate_tile(q, k, v, model: HardwareModel, models: processes.ModelSet, *,
                  scenario: str = "tile", jobs: int = 2, split: bool = True,
                  thresholds: dict[str, float] | None = None, params: TileParams | None = None,
                  token_period_s: float | None = None, extra: dict | None = None,
                  spice: SpiceStages | None = None, max_errors: dict[str, float] | None = None,
                  biases: dict[str, float] | None = None) -> Validation:
    """Validate one tile. With `token_period_s`, key/value j was written (C - 1 - j) token
    periods before the read: SPICE holds the cells that long, the model applies its decay, and
    the tile starts each cell at its aged voltage (write 'ideal', whatever `params` says).
    `spice` reuses the SPICE stages of an earlier run of the same tile (another fit)."""
    started = time.perf_counter()
    params = params or TileParams.defaults()
    notes = []
    if token_period_s is not None and params.write != "ideal":
        params = replace(params, write="ideal")
        notes.append("write: ideal (cells start at their levels), the retention scenario sets each cell's aged voltage")
    thresholds = thresholds or compare.parse_thresholds([])
    max_errors = max_errors or compare.parse_thresholds([], "--max-error")
    biases = biases or compare.parse_thresholds([], "--bias")
    low, high = params.stored_range
    q, k, v = check_inputs(q, k, v, high, low=low)
    C, R = k.shape
    k_V, v_V = k, v
    if token_period_s is not None and spice is None:
        age = (C - 1 - np.arange(C))[:, None] * token_period_s
        reads = model.read_disturb is not None
        aged = aged_voltages(np.concatenate([k, v]), np.concatenate([age, age]) *
                             np.ones((2 * C, R)), models, jobs, params=params.values,
                             read_period_s=token_period_s if reads else None,
                             read_width_s=params["t_max"] / 2 if reads else None)
        k_V, v_V = aged[:C], aged[C:]
        notes.append(f"retention: key/value j written {token_period_s:.4g} s x (C-1-j) before "
                     "the read; SPICE: hold simulated on the retention testbench"
                     + (" with a T_max/2 read every period (the read-disturb testbench)"
                        if reads else "") + ", read from there; model: fitted decay"
                     + (" with one read per token's disturb" if reads else ""))
    if spice is None:
        tile = Tile(q, k_V, v_V)
        devices.check_sizes(build(Tile(q[:1], k_V[:2, :1], v_V[:2, :1]), params, models).text,
                            models)
        spice = run_tile(tile, params, models, jobs=jobs, split=split)
    if token_period_s is not None:
        # The cells held at the tile's temperature: the model's decay at it too.
        model = model_at_temperature(model, params["temp_c"])
    # Written through the devices, the cells sit where the model's write error puts them.
    write_error = params.write != "ideal"
    behaviour = run_model(q, k, v, model, token_period_s, write_error=write_error)
    model = behaviour.model   # the isolated stages apply the decay the run applied
    k_cells, v_cells = (written_V(x, model, write_error) for x in (k, v))

    # Isolated model stages, fed with SPICE's previous stage.
    score = model.readout.convert(spice.S_C.copy())
    k_rest = k_rest_conductance_S(k_cells, model, behaviour.decay_factor)
    phi_iso = model.charge_to_pulse.convert(
        score * conversion_stretch(model, k_rest, score, "k"))
    edge = model.pulse_edge_time_s
    on = spice.phi_s > NO_PULSE_S
    drive = np.where(on, spice.phi_s + edge, 0.0)
    A_iso, v_rest = v_array_charges_C(v_cells, drive, model, behaviour.decay_factor)
    out_iso = model.output_converter.convert(
        spice.A_C * conversion_stretch(model, v_rest, spice.A_C, "v"),
        quantize=False)
    if spice.out is not None:
        out_spice = spice.out
        notes.append("out: the signed converter netlist's sign x pulse width / t_max (the count "
                     "before the counter's rounding)")
    else:
        out_spice, out_iso = out_iso, None
        notes.append("out: SPICE's A through the fitted signed converter (tile run without "
                     "the signed converter netlist), so it checks A where the counter does "
                     "not clip")

    c2p = model.charge_to_pulse
    # Both sides through the counter's quantisation (the published step * round(x / step)):
    # the output is a count, and a model that lands within a count of SPICE is exact.
    converter = model.output_converter
    levels = converter.levels
    out_spice = quantize(np.clip(out_spice, -1.0, 1.0), -1.0, 1.0, levels)
    out_model = quantize(np.clip(behaviour.out, -1.0, 1.0), -1.0, 1.0, levels)
    if out_iso is not None:
        out_iso = quantize(np.clip(out_iso, -1.0, 1.0), -1.0, 1.0, levels)
    notes.append(f"out: both sides quantised to the counter's {levels} levels")
    full_scale = converter.full_scale_C
    stages = [
        # The model's readout clips S at the integrator's saturation, while SPICE measures
        # the charge that still flows into a saturated integrator: past that (or past S_sat,
        # where phi saturates) on both sides, an S entry is trivial.
        compare.StageData("S", spice.S_C, behaviour.S_C, c2p.saturation_charge_C, "column",
                          limits=(-model.readout.saturation_C if model.readout.saturation_C
                                  else None, c2p.saturation_charge_C)),
        compare.StageData("phi", spice.phi_s, behaviour.phi_s, c2p.t_max_s, "column", phi_iso,
                          limits=(0.0, c2p.t_max_s)),
        compare.StageData("A", spice.A_C, behaviour.A_C, full_scale, "dim", A_iso,
                          limits=(-full_scale, full_scale)),
        compare.StageData("out", out_spice, out_model, 2.0, "dim", out_iso,
                          limits=(-1.0, 1.0)),
    ]
    results = {s.name: compare.metrics(s, thresholds[s.name], max_error_pct=max_errors[s.name],
                                       bias_pct=biases[s.name]) for s in stages}
    report = {
        "spice_stages": {"S_C": spice.S_C.tolist(), "phi_s": spice.phi_s.tolist(),
                         "A_C": spice.A_C.tolist()},
        "scenario": scenario,
        "rows": R,
        "cols": C,
        "models": models.name,
        "fits": model.label,
        "token_period_s": token_period_s,
        "decay_factor": behaviour.decay_factor,
        "wire": {"r_per_pitch_ohm": params.r_wire, "c_per_pitch_F": params.c_wire},
        "write": write_summary(params),
        "spice": {"mode": spice.mode, "runs": spice.runs, "jobs": jobs,
                  "elapsed_s": round(spice.elapsed_s, 3), "cpu_s": round(spice.cpu_s, 3),
                  "netlist_lines": spice.netlist_lines},
        "elapsed_s": round(time.perf_counter() - started, 3),
        "stages": results,
        "passed": all(m["passed"] for m in results.values()),
        "notes": notes,
        **(extra or {}),
    }
    return Validation(report, stages, spice)


def save_inputs(directory: Path, q, k, v) -> Path:
    """inputs.npz alone, atomically (core.atomic). A report folder's inputs are written with
    its report instead: compare.write_report(..., inputs={'q': q, 'k': k, 'v': v})."""
    path = Path(directory) / "inputs.npz"
    with replacing(path, what="report file") as temporary:
        with open(temporary, "wb") as stream:
            np.savez(stream, q=q, k=k, v=v)
    return path
