"""Blocked attention on gain-cell arrays: runs the signal chain of `stages` over blocks of queries,
so memory grows with tokens x window, and keeps S, phi and the per-sub-tile (or, on a ring buffer,
per-physical-array) outputs for the caller.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from gcsim.core.allocator import keep_freed_memory
from gcsim.hw import (PAPER, PAPER_OPERATING_POINT, HardwareModel, MismatchSample,
                      OperatingPoint, WriteError, model_for_mode)
from gcsim.hw.components import ExponentialDecay
from gcsim.hw.loading import ReadoutLoading
from gcsim.hw.stages import GainCellArray, InputDAC, query_pulse_width_s
from gcsim.simulate.windows import (
    BlockMasks,
    band_view,
    fold_ring,
    n_subtile_slots,
    ring_arrays,
    ring_held_keys,
    subtile_slots,
    subtile_span,
    subtile_sum,
    subtiles_read,
)

MODES = ("ideal", "linear", "paper", "fitted")


@dataclass(frozen=True)
class SimulationConfig:
    """Options of a simulation. `window=None` means the whole causal context."""

    window: int | None = PAPER.window
    array_size: int = PAPER.array_size
    query_levels: int | None = None  # None: the model's operating point's
    stored_levels: int | None = None  # None: the model's operating point's
    quantize_inputs: bool = True
    quantize_output: bool = True
    clip_inputs: bool = True
    decay: bool = True
    decay_factor: float | None = None  # per token; overrides token_period_s
    token_period_s: float | None = None  # decay factor = token period / retention time constant
    mismatch_seed: int | None = None  # draw the model's mismatch once with this seed
    block_queries: int = 128
    keep_intermediates: bool = True
    dtype: str = "float64"
    readout_loading: bool = True  # apply the model's readout loading, when it has one
    write_error: bool = True  # write where the model's writes land, when it knows
    temperature_C: float | None = None  # the decay's temperature (None: the model's nominal)
    extrapolate: bool = False  # run a fit beyond the range it was fitted over (and say so)
    read_disturb: bool = True  # with decay: every cell's reads move it (one read per token)
    threads: int | None = None  # heads run at once (None: one per core)
    loading_dtype: str = "float32"  # the readout-loading correction's products (few % of S)

    def validate(self) -> None:
        def positive_int(name, value, minimum=1):
            integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            if not integer or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

        if self.window is not None:
            positive_int("window", self.window)
        positive_int("array size", self.array_size)
        if self.query_levels is not None:
            positive_int("query levels", self.query_levels, 2)
        if self.stored_levels is not None:
            positive_int("stored levels", self.stored_levels, 2)
        positive_int("block size", self.block_queries)
        if self.threads is not None:
            positive_int("threads", self.threads)
        if self.decay_factor is not None and self.token_period_s is not None:
            raise ValueError("give either a decay factor or a token period, not both")
        if self.decay_factor is not None and not (
            math.isfinite(self.decay_factor) and self.decay_factor >= 0
        ):
            raise ValueError(f"decay factor must be finite and >= 0, got {self.decay_factor}")
        if self.token_period_s is not None and not (
            math.isfinite(self.token_period_s) and self.token_period_s > 0
        ):
            raise ValueError(f"token period must be finite and > 0 s, got {self.token_period_s}")
        if self.temperature_C is not None and not math.isfinite(self.temperature_C):
            raise ValueError(f"temperature must be finite, got {self.temperature_C}")
        for name, value in (("dtype", self.dtype), ("loading dtype", self.loading_dtype)):
            if np.dtype(value) not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise ValueError(f"{name} must be float32 or float64, got {value!r}")


@dataclass
class AttentionResult:
    """Output and intermediate signals of one simulation.

    `output` has the inputs' shape. Intermediates are 4-D, (batch, heads, tokens, ...):
      S                (B, H, T, band) read-out column charge in coulombs (ideal: q . (k - mid-rail))
      phi              (B, H, T, band) HardSigmoid pulse width in seconds (ideal: softmax weight)
      subtile_outputs  (B, H, T, slots, D) counter output of each sub-tile, in [-1, 1]
    Band column w of token t is key j = t - band + 1 + w (see `key_positions`); slot s of token t is
    sub-tile max(0, t - window + 1) // array_size + s (see `subtile_indices`). Entries outside the
    window are zero.

    With `ring_arrays` set (fitted mode), the window lives in that many physical arrays used as
    a ring buffer (key j in array (j // array_size) % ring_arrays) and each slot is one
    physical array's single conversion: slot s is the array holding sub-tile first + s, and
    slot 0 also holds the window's newest keys when they have overwritten its oldest ones
    (at most ring_arrays slots; see `array_indices`). Without it (paper, linear), each
    sub-tile is converted on its own, as the published model does.
    """

    mode: str
    label: str
    output: np.ndarray
    window: int
    array_size: int
    decay_factor: float
    S: np.ndarray | None = None
    phi: np.ndarray | None = None
    subtile_outputs: np.ndarray | None = None
    charge_unit_C: float = PAPER.charge_unit_C
    warnings: tuple[str, ...] = ()   # where the run took a fit beyond its range (extrapolate)
    ring_arrays: int | None = None

    @property
    def n_tokens(self) -> int:
        return self.output.shape[-2]

    @property
    def band(self) -> int:
        return min(self.window, self.n_tokens)

    def key_positions(self) -> np.ndarray:
        """(T, band) key index of each band column; negative where the band starts before j = 0."""
        t = np.arange(self.n_tokens)[:, None]
        return t - self.band + 1 + np.arange(self.band)[None, :]

    def subtile_indices(self) -> np.ndarray:
        """(T, slots) absolute sub-tile index of each slot, -1 where the slot is unused."""
        first, count = subtile_span(np.arange(self.n_tokens), self.window, self.array_size,
                                    self.ring_arrays)
        kept = self.subtile_outputs
        n_slots = kept.shape[-2] if kept is not None else count.max()
        s = np.arange(n_slots)[None, :]
        return np.where(s < count[:, None], first[:, None] + s, -1)

    def array_indices(self) -> np.ndarray:
        """(T, slots) physical array of each slot, (sub-tile % ceil(window / array_size)), -1
        where unused; on a ring buffer every slot of a token is a different array."""
        index = self.subtile_indices()
        n_arrays = ring_arrays(self.window, self.array_size)
        return np.where(index >= 0, index % n_arrays, -1)

    def dense(self, name: str) -> np.ndarray:
        """A band intermediate ('S' or 'phi') as a full (..., T, T) matrix, zero outside window."""
        values = getattr(self, name)
        if values is None:
            raise ValueError(f"{name} was not kept (keep_intermediates=False)")
        n = self.n_tokens
        out = np.zeros(values.shape[:-1] + (n,), dtype=values.dtype)
        keys = self.key_positions()
        rows, cols = np.nonzero(keys >= 0)
        out[..., rows, keys[rows, cols]] = values[..., rows, cols]
        return out

    def S_in_paper_units(self) -> np.ndarray:
        """S in the published model's units (µA x T_max), e.g. -80...+100 for 64-row tiles."""
        return self.S / self.charge_unit_C

    def phi_fraction(self, t_max_s: float = PAPER.pulse_max_s) -> np.ndarray:
        """phi as a fraction of T_max, the published model's HardSigmoid output in [0, 1]."""
        return self.phi / t_max_s


def as_4d(x: np.ndarray, name: str) -> np.ndarray:
    """View (T, D), (H, T, D) or (B, H, T, D) inputs as (B, H, T, D)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array, got dtype {x.dtype}")
    if not 2 <= x.ndim <= 4:
        raise ValueError(
            f"{name} must be 2-D (tokens, dim), 3-D (heads, tokens, dim) or 4-D (batch, heads, "
            f"tokens, dim); got shape {x.shape}"
        )
    if 0 in x.shape:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return x.reshape((1,) * (4 - x.ndim) + x.shape)


def check_shapes(q, k, v) -> None:
    shapes = {"q": np.shape(q), "k": np.shape(k), "v": np.shape(v)}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"Q, K and V must have the same shape; got {listed}")


def prepare_inputs(q, k, v, config: SimulationConfig,
                   operating_point: OperatingPoint = PAPER_OPERATING_POINT):
    """Checks shapes and writes Q, K, V through their DACs (K and V over the operating point's
    stored range); returns (B, H, T, D) float64 arrays."""
    check_shapes(q, k, v)
    q4, k4, v4 = as_4d(q, "Q"), as_4d(k, "K"), as_4d(v, "V")
    point = operating_point
    query_levels = config.query_levels if config.query_levels is not None else point.query_levels
    stored_levels = (config.stored_levels if config.stored_levels is not None
                     else point.stored_levels)
    query_dac = InputDAC(
        0.0, 1.0, query_levels, config.clip_inputs, config.quantize_inputs, "Q"
    )
    key_dac = InputDAC(
        point.stored_min_V, point.stored_max_V, stored_levels, config.clip_inputs,
        config.quantize_inputs, "K"
    )
    value_dac = replace(key_dac, name="V")
    return query_dac.convert(q4), key_dac.convert(k4), value_dac.convert(v4)


def draw_mismatch(model: HardwareModel, seed: int, heads: int, head_dim: int, config, window):
    """Draws per-cell mismatch once for the K and V arrays of every head (None if not modelled)."""
    if model.mismatch is None:
        return None
    rng = np.random.default_rng(seed)
    n_arrays = -(-window // config.array_size)
    a = config.array_size
    # K arrays: head_dim on rows, tokens on columns; V arrays: tokens on rows, head_dim on columns.
    k_sample = model.mismatch.draw(rng, (heads, n_arrays, head_dim, a))
    v_sample = model.mismatch.draw(rng, (heads, n_arrays, a, head_dim))
    return k_sample, v_sample


def _per_token(sample: MismatchSample, head: int, n_tokens: int, keys_on_columns: bool, array_size):
    """Maps tokens onto the physical cells of a circular buffer of arrays: (T, D) gain and shift."""
    n_arrays = sample.gain.shape[1]
    j = np.arange(n_tokens)
    array_index = (j // array_size) % n_arrays
    column = j % array_size
    if keys_on_columns:
        gain = sample.gain[head][array_index, :, column]
        shift = sample.vt_shift_V[head][array_index, :, column]
    else:
        gain = sample.gain[head][array_index, column, :]
        shift = sample.vt_shift_V[head][array_index, column, :]
    return gain, shift


def simulate_attention(
    q,
    k,
    v,
    mode: str = "paper",
    *,
    model: HardwareModel | None = None,
    fits_dir: str | Path | None = None,
    config: SimulationConfig | None = None,
) -> AttentionResult:
    """Runs attention over Q, K, V ((T, D), (H, T, D) or (B, H, T, D)) in one of MODES.

    `model` overrides the mode's default hardware model (e.g. a fitted model built in code);
    the inputs go through its operating point's DACs. In ideal mode a given model only sets
    the operating point (the stored range and the mid-rail the weights are signed about).
    """
    config = config or SimulationConfig()
    config.validate()
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "ideal":
        point = model.operating_point if model is not None else PAPER_OPERATING_POINT
        # The ideal reference sees the (clipped) values themselves, not their DAC levels.
        exact = replace(config, quantize_inputs=False)
        qd, kd, vd = prepare_inputs(q, k, v, exact, point)
        return ideal_attention(qd, kd, vd, config, output_shape=np.shape(q),
                               mid_rail_V=point.mid_rail_V)
    model = model or model_for_mode(mode, fits_dir)
    qd, kd, vd = prepare_inputs(q, k, v, config, model.operating_point)
    keep_freed_memory()   # the blocks' temporaries, reused rather than faulted in anew
    return _simulate_hardware(qd, kd, vd, model, config, output_shape=np.shape(q))


@dataclass(frozen=True)
class _Run:
    """What every block of a hardware run shares: the window and sub-tile layout, the decay
    per token, the cell's power coefficients, and which intermediates are kept."""

    window: int
    band: int
    array_size: int
    block: int
    n_slots: int
    decay_factor: float
    power_coefficients_A: np.ndarray
    dtype: np.dtype
    keep: bool
    quantize_output: bool
    loading: ReadoutLoading | None
    correction_dtype: np.dtype
    masks: BlockMasks
    write_error: WriteError | None
    decay: ExponentialDecay
    warnings: tuple[str, ...]
    # Physical arrays of the ring buffer when one conversion reads each (see `on_ring`); None:
    # each aligned sub-tile is converted on its own, the published model.
    ring_arrays: int | None = None

    def on_ring(self, n_tokens: int) -> _Run:
        """This run with each physical array of the ring buffer converted once per query."""
        n_arrays = ring_arrays(self.window, self.array_size)
        return replace(self, ring_arrays=n_arrays,
                       n_slots=n_subtile_slots(n_tokens, self.window, self.array_size,
                                               n_arrays))

    @classmethod
    def plan(cls, model: HardwareModel, config: SimulationConfig, n_tokens: int) -> _Run:
        window = config.window or n_tokens
        a_size = config.array_size
        decay = model.decay
        if config.temperature_C is not None:
            decay = decay.at_temperature(config.temperature_C)
            model = replace(model, decay=decay)
        decay_factor = (
            model.resolve_decay_factor(config.decay_factor, config.token_period_s)
            if config.decay
            else 0.0
        )
        dtype = np.dtype(config.dtype)
        warnings = _check_decay_ages(decay, decay_factor, min(window, n_tokens), config)
        decay = applied_decay(model, decay, decay_factor, config)
        return cls(
            window=window,
            band=min(window, n_tokens),
            array_size=a_size,
            block=max(a_size, (config.block_queries // a_size) * a_size),  # keys align to tiles
            n_slots=n_subtile_slots(n_tokens, window, a_size),
            decay_factor=decay_factor,
            power_coefficients_A=model.cell.power_coefficients_A(model.read_on_V),
            dtype=dtype,
            keep=config.keep_intermediates,
            quantize_output=config.quantize_output,
            loading=model.loading if config.readout_loading else None,
            correction_dtype=np.dtype(config.loading_dtype),
            masks=BlockMasks(window, dtype),
            write_error=model.write_error if config.write_error else None,
            decay=decay,
            warnings=warnings,
        )


def applied_decay(model: HardwareModel, decay: ExponentialDecay, decay_factor: float,
                  config: SimulationConfig) -> ExponentialDecay:
    """The decay a run applies: `decay` (the model's, at the run's temperature) with the
    read disturb of one read per token folded in, when the model has it and the run decays."""
    if decay_factor and config.read_disturb and model.read_disturb is not None:
        return decay.with_read_disturb(model.read_disturb, decay_factor * decay.time_constant_s)
    return decay


def _check_decay_ages(decay: ExponentialDecay, decay_factor: float, band: int,
                      config: SimulationConfig) -> tuple[str, ...]:
    """The oldest key a query reads is band - 1 tokens old: refused (ValueError) when that is
    beyond the ages the decay was fitted over, unless the config allows extrapolation, and
    then returned as a warning."""
    fitted = decay.fitted_age_max_s
    if not decay_factor or fitted is None or band < 2:
        return ()
    oldest_s = (band - 1) * decay_factor * decay.time_constant_s
    if oldest_s <= fitted * (1 + 1e-9):
        return ()
    message = (f"the oldest key read is {oldest_s:.4g} s old (window {band} tokens), beyond "
               f"the ages 0 ... {fitted:.4g} s the decay fit covers")
    if not config.extrapolate:
        raise ValueError(f"{message}; shorten the window or the token period, or allow "
                         "extrapolation")
    return (f"{message}: the decay extrapolates",)


@dataclass
class _Signals:
    """The run's output (B, H, T, D) and, when kept, its intermediates (see AttentionResult)."""

    output: np.ndarray
    S: np.ndarray | None
    phi: np.ndarray | None
    subtiles: np.ndarray | None

    @classmethod
    def allocate(cls, shape: tuple[int, int, int, int], run: _Run) -> _Signals:
        batch, heads, n_tokens, head_dim = shape
        output = np.zeros(shape)
        if not run.keep:
            return cls(output, None, None, None)
        # Every entry of these is written block by block (zeros included), so no need to clear.
        S = np.empty((batch, heads, n_tokens, run.band), dtype=run.dtype)
        subtiles = np.empty((batch, heads, n_tokens, run.n_slots, head_dim), dtype=run.dtype)
        return cls(output, S, np.empty_like(S), subtiles)


def _gain_cell_arrays(k_written_V, v_written_V, model: HardwareModel, run: _Run,
                      k_cells=(None, None), v_cells=(None, None)):
    """Writing K and V: one head's K array (head_dim rows, tokens on columns) and V array
    (tokens on rows), holding the DAC voltages where the write leaves them (the model's write
    error, when it has one and the run applies it), decaying from when each token was written,
    with each cell's (gain, threshold shift) mismatch when drawn; read through loading
    integrators when the model has readout loading."""
    array_args = dict(
        power_coefficients_A=run.power_coefficients_A,
        v_mid_V=model.cell.v_mid_V,
        decay_factor=run.decay_factor,
        dtype=run.dtype,
    )
    (k_gain, k_shift), (v_gain, v_shift) = k_cells, v_cells
    if run.write_error is not None:
        k_written_V = run.write_error.written_V(k_written_V)
        v_written_V = run.write_error.written_V(v_written_V)
    # Each cell's asymptote follows from where it was written (one value without per-level
    # asymptotes); with no decay it plays no part.
    k_asymptote = run.decay.asymptote_of(k_written_V) if run.decay_factor else 0.0
    v_asymptote = run.decay.asymptote_of(v_written_V) if run.decay_factor else 0.0
    if run.loading is not None:
        k_array = run.loading.build(k_written_V, run.correction_dtype, cell_gain=k_gain,
                                    vt_shift_V=k_shift, asymptote_V=k_asymptote, **array_args)
        v_array = run.loading.build(v_written_V, run.correction_dtype, cell_gain=v_gain,
                                    vt_shift_V=v_shift, asymptote_V=v_asymptote, **array_args)
        return k_array, v_array
    k_array = GainCellArray(k_written_V, cell_gain=k_gain, vt_shift_V=k_shift,
                            asymptote_V=k_asymptote, **array_args)
    v_array = GainCellArray(v_written_V, cell_gain=v_gain, vt_shift_V=v_shift,
                            asymptote_V=v_asymptote, **array_args)
    return k_array, v_array


def _query_pulses_s(query, model: HardwareModel, dtype) -> np.ndarray:
    """Query DAC and word-line drivers: (T, D) query levels -> read pulse widths in seconds,
    each lengthened by the model's edge time when it has one (an edge drives charge too)."""
    widths = query_pulse_width_s(query, model.charge_to_pulse.t_max_s).astype(dtype)
    edge = model.pulse_edge_time_s
    if edge:
        widths += edge * (widths > 0)
    return widths


def _key_scores(k_array, widths_s, query_start: int, key_start: int, n_keys: int,
                model: HardwareModel, loading: ReadoutLoading | None):
    """First array product, in the K array: each key column's charge from the query pulses on
    its rows (every cell at its decayed voltage), read out as the score S (n_queries, n_keys).
    Also returns the charge as the HardSigmoid converter meets it: with readout loading the
    resting cells slow the converter down, so it converts as if the charge were larger."""
    key_stop = key_start + n_keys
    if loading is None:
        charge = k_array.column_charges_C(widths_s, query_start, key_start, key_stop)
    else:
        charge, rest = k_array.column_charges_and_rest_C(widths_s, query_start, key_start,
                                                         key_stop)
    score = model.readout.convert(charge, out=charge)
    if loading is None:
        return score, score
    return score, score * loading.conversion_scale(rest, score, loading.k_conversion_current_A)


def _hardsigmoid_pulses_s(converted_C, mask, model: HardwareModel) -> np.ndarray:
    """HardSigmoid conversion: each key column's charge-to-pulse converter turns its charge
    into the pulse phi that drives that token's V-array row; keys outside the query's window
    are not read and give no pulse."""
    pulses = model.charge_to_pulse.convert(converted_C)
    pulses *= mask
    return pulses


def _ring_rest_totals(array, n_queries: int, query_start: int, key_start: int, n_keys: int,
                      run: _Run) -> np.ndarray:
    """Each physical array's resting cells, (arrays, query, D) as `fold_ring` orders them:
    the unit-width sum over the rows it holds when the query reads (`ring_held_keys`). Not
    the sum over its sub-tiles' rows: once the ring has wrapped, the newest keys have
    overwritten the oldest, and a cell sits on the bitline once, whichever key it holds. Rows
    older than the window (when it is not a whole number of arrays) still load the bitline."""
    a_size, n_arrays = run.array_size, run.ring_arrays
    # Blocks start on a sub-tile boundary, so the rows still held start at or after the
    # block's first key, except when the window is one key more than whole arrays: then up
    # to a sub-tile before it.
    start = max(0, key_start - a_size)
    held = ring_held_keys(np.arange(query_start, query_start + n_queries), n_arrays, a_size)
    sums = array.row_totals_C(n_queries, query_start, start, a_size,
                              n_keys + key_start - start, held)
    if start == key_start:
        return fold_ring(sums, n_arrays)
    folded = fold_ring(sums[1:], n_arrays)
    # The sub-tile before the block's first shares its array with the block's sub-tile
    # n_arrays - 1 (a block starting past the first sub-tile reaches at least n_arrays).
    folded[n_arrays - 1] += sums[0]
    return folded


def _subtile_charges(v_array, pulses_s, query_start: int, key_start: int, run: _Run, mask):
    """Second array product, in the V array, per sub-tile of `array_size` tokens: the charge
    each column of each sub-tile collects from the pulses on its rows, (n_subtiles, n_queries,
    D); with readout loading, as the sub-tile's signed converter meets it (see _key_scores).
    On a ring buffer, per physical array instead (`fold_ring`): the keys of a query's window
    in sub-tiles s and s + n_arrays sit on one bitline, so their charges add before the one
    converter clips and quantises them (keys outside the window get no pulse, so summing
    congruent sub-tiles is exact). Also returns which of them each query reads, (n, n_q)."""
    loading, a_size = run.loading, run.array_size
    fold = None if run.ring_arrays is None else partial(fold_ring, n_arrays=run.ring_arrays)
    n_q, n_k = np.shape(pulses_s)
    read = subtiles_read(query_start, n_q, key_start, -(-n_k // a_size), run.window, a_size)
    if fold is not None:
        read = fold(read.astype(np.uint8)) > 0
    if loading is None:
        charge = v_array.row_charges_C(pulses_s, query_start, key_start, a_size)
        return (charge if fold is None else fold(charge)), read
    rest_totals = None
    if fold is not None:
        rest_totals = partial(_ring_rest_totals, n_queries=n_q, query_start=query_start,
                              key_start=key_start, n_keys=n_k, run=run)
    charge, rest = v_array.row_charges_and_rest_C(pulses_s, query_start, key_start, a_size,
                                                  read=mask, fold=fold,
                                                  rest_totals=rest_totals)
    charge *= loading.conversion_scale(rest, charge, loading.v_conversion_current_A)
    return charge, read


def _output_counts(subtile_charges_C, model: HardwareModel, run: _Run) -> np.ndarray:
    """Output conversion: each sub-tile column's signed converter and counter, in [-1, 1]
    (in place on the charges)."""
    return model.output_converter.convert(
        subtile_charges_C, quantize=run.quantize_output, out=subtile_charges_C
    )


def _run_block(k_array, v_array, widths_s, t0: int, t1: int, model: HardwareModel, run: _Run,
               signals: _Signals, b: int, h: int) -> None:
    """One block of queries t0...t1 of head (b, h) through the signal chain, against the keys of
    the sub-tiles their windows reach; writes the block's output and kept intermediates."""
    a_size, band = run.array_size, run.band
    n_q = t1 - t0
    k0 = (max(0, t0 - run.window + 1) // a_size) * a_size
    n_k = -(-(t1 - k0) // a_size) * a_size
    mask = run.masks(t0, n_q, k0, n_k)
    offset = t0 - band + 1 - k0   # band column 0 of query t0 is key t0 - band + 1

    score, converted = _key_scores(k_array, widths_s[t0:t1], t0, k0, n_k, model, run.loading)
    pulses = _hardsigmoid_pulses_s(converted, mask, model)
    edge = model.pulse_edge_time_s
    if edge:
        if run.keep:  # φ is the converter's pulse; the edges only add drive charge
            signals.phi[b, h, t0:t1] = band_view(pulses, offset, band)
        # (a masked add, `where=pulses > 0`, is ten times slower than adding a 0/1 product)
        pulses += (pulses > 0) * pulses.dtype.type(edge)
    charges, read = _subtile_charges(v_array, pulses, t0, k0, run, mask)
    counts = _output_counts(charges, model, run)
    # A sub-tile (array) outside a token's window is neither integrated nor converted: its
    # zero charge would still read as minus the converter's offset.
    counts *= read[:, :, None]
    signals.output[b, h, t0:t1] = subtile_sum(counts, axis=0)

    if run.keep:
        score *= mask
        signals.S[b, h, t0:t1] = band_view(score, offset, band)
        if not edge:
            signals.phi[b, h, t0:t1] = band_view(pulses, offset, band)
        signals.subtiles[b, h, t0:t1] = subtile_slots(counts, t0, k0, run.window, a_size,
                                                      run.n_slots, run.ring_arrays)


def _simulate_hardware(qd, kd, vd, model: HardwareModel, config, output_shape) -> AttentionResult:
    """The hardware modes: every head, batch entry and block of queries through the signal
    chain of `model` (inputs already through their DACs: (B, H, T, D) float64)."""
    batch, heads, n_tokens, head_dim = qd.shape
    run = _Run.plan(model, config, n_tokens)
    if model.ring_buffer:
        run = run.on_ring(n_tokens)
    mismatch = None
    if config.mismatch_seed is not None:
        mismatch = draw_mismatch(model, config.mismatch_seed, heads, head_dim, config,
                                 run.window)
    signals = _Signals.allocate(qd.shape, run)
    per_head = [((None, None), (None, None))] * heads
    if mismatch is not None:
        per_head = [(_per_token(mismatch[0], h, n_tokens, True, run.array_size),
                     _per_token(mismatch[1], h, n_tokens, False, run.array_size))
                    for h in range(heads)]

    def head_arrays(b: int, h: int):
        k_cells, v_cells = per_head[h]
        k_array, v_array = _gain_cell_arrays(kd[b, h], vd[b, h], model, run, k_cells, v_cells)
        return k_array, v_array, _query_pulses_s(qd[b, h], model, run.dtype)

    def block(arrays, b: int, h: int, t0: int) -> None:
        _run_block(*arrays, t0, min(n_tokens, t0 + run.block), model, run, signals, b, h)

    def one_head(b: int, h: int) -> None:
        arrays = head_arrays(b, h)
        for t0 in range(0, n_tokens, run.block):
            block(arrays, b, h, t0)

    pairs = [(b, h) for h in range(heads) for b in range(batch)]
    workers = config.threads or os.cpu_count() or 1
    # The block products are too small for BLAS's own threads to pay: they wait on each
    # other, and on a busy machine a spinning BLAS thread slows a block tenfold. So BLAS runs
    # single-threaded and the threads take whole heads, or, with fewer heads than threads,
    # the blocks of one head (NumPy releases the GIL in its kernels). Each head and each
    # block writes only its own slices of `signals`.
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1:
            for b, h in pairs:
                one_head(b, h)
        elif len(pairs) >= workers:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for done in [pool.submit(one_head, b, h) for b, h in pairs]:
                    done.result()
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for b, h in pairs:
                    arrays = head_arrays(b, h)
                    for done in [pool.submit(block, arrays, b, h, t0)
                                 for t0 in range(0, n_tokens, run.block)]:
                        done.result()

    return AttentionResult(
        mode=model.name,
        label=model.label,
        output=signals.output.reshape(output_shape),
        window=run.window,
        array_size=run.array_size,
        decay_factor=run.decay_factor,
        S=signals.S,
        phi=signals.phi,
        subtile_outputs=signals.subtiles,
        warnings=run.warnings,
        ring_arrays=run.ring_arrays,
    )


def ideal_attention(qd, kd, vd, config: SimulationConfig, output_shape=None,
                    mid_rail_V: float = PAPER.mid_rail_V) -> AttentionResult:
    """Softmax attention in float64 on the signed values: softmax(q (k - m)^T / sqrt(D)) (v - m),
    with m the operating point's mid-rail (`mid_rail_V`).

    Same causal sliding window; no DAC levels, decay or converters. Computed in blocks of queries.
    """
    batch, heads, n_tokens, head_dim = qd.shape
    window = config.window or n_tokens
    band = min(window, n_tokens)
    block = config.block_queries
    keys = kd - mid_rail_V
    values = vd - mid_rail_V
    scale = 1.0 / math.sqrt(head_dim)
    output = np.zeros((batch, heads, n_tokens, head_dim))
    keep = config.keep_intermediates
    S = np.zeros((batch, heads, n_tokens, band)) if keep else None
    phi = np.zeros_like(S) if keep else None
    for b in range(batch):
        for h in range(heads):
            for t0 in range(0, n_tokens, block):
                t1 = min(n_tokens, t0 + block)
                k0 = max(0, t0 - window + 1)
                dots = qd[b, h, t0:t1] @ keys[b, h, k0:t1].T
                age = np.arange(t0, t1)[:, None] - np.arange(k0, t1)[None, :]
                inside = (age >= 0) & (age < window)
                logits = np.where(inside, dots * scale, -np.inf)
                logits -= logits.max(axis=1, keepdims=True)
                weights = np.exp(logits)
                weights /= weights.sum(axis=1, keepdims=True)
                output[b, h, t0:t1] = weights @ values[b, h, k0:t1]
                if keep:
                    offset = t0 - band + 1 - k0
                    S[b, h, t0:t1] = band_view(np.where(inside, dots, 0.0), offset, band)
                    phi[b, h, t0:t1] = band_view(weights, offset, band)
    return AttentionResult(
        mode="ideal",
        label="ideal (float64 softmax attention)",
        output=output.reshape(output_shape or output.shape),
        window=window,
        array_size=config.array_size,
        decay_factor=0.0,
        S=S,
        phi=phi,
    )


def compare_outputs(output: np.ndarray, reference: np.ndarray) -> dict:
    """Accuracy of `output` against `reference`: RMSE, RMSE after the best single scale factor
    (the hardware's output scale differs from softmax attention's), and per-token cosine similarity
    over the head dimension (tokens where either vector is zero are left out and counted).
    """
    out = np.asarray(output, dtype=np.float64).reshape(-1, np.shape(output)[-1])
    ref = np.asarray(reference, dtype=np.float64).reshape(out.shape)
    rmse = float(np.sqrt(np.mean((out - ref) ** 2)))
    denominator = float(np.sum(out * out))
    best_scale = float(np.sum(out * ref) / denominator) if denominator > 0 else 0.0
    rmse_scaled = float(np.sqrt(np.mean((best_scale * out - ref) ** 2)))
    norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
    valid = norms > 0
    cosine = np.sum(out * ref, axis=1)[valid] / norms[valid]
    summary = {
        "rmse": rmse,
        "best_scale": best_scale,
        "rmse_after_scale": rmse_scaled,
        "cosine_mean": float(cosine.mean()) if cosine.size else float("nan"),
        "cosine_median": float(np.median(cosine)) if cosine.size else float("nan"),
        "cosine_min": float(cosine.min()) if cosine.size else float("nan"),
        "tokens_compared": int(valid.sum()),
        "tokens_with_zero_vector": int((~valid).sum()),
    }
    return summary
