"""GainCellAttention: gcsim's array simulator as a differentiable PyTorch module, built from the
same hardware model and run plan as gcsim.simulate.attention, so its forward pass gives the
simulator's numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.utils.checkpoint
from torch import nn

from gcsim.hw import (PAPER_OPERATING_POINT, HardwareModel, OperatingPoint, at_operating_point,
                      load_fitted_models, model_for_mode)
from gcsim.nn import functional as fn
from gcsim.simulate.attention import MODES, SimulationConfig, _Run, draw_mismatch

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}

# SimulationConfig fields a module takes as keyword options (the rest are the simulator's own
# bookkeeping: blocks of queries, kept intermediates, dtype, which the module sets).
_CONFIG_OPTIONS = ("clip_inputs", "quantize_inputs", "quantize_output", "decay_factor",
                   "query_levels", "stored_levels", "readout_loading", "write_error",
                   "temperature_C", "extrapolate", "read_disturb")
_ALIASES = {"clip": "clip_inputs", "temperature": "temperature_C"}
_CLIP_GRADIENTS = ("clamp", "straight_through")

# Largest exponent m f T of the decay's query and key scales (exp(-m f t), exp(m f j)) for
# which the products take them as factors (one product for every power, as the simulator's
# global base); past it, a dense decay matrix per power. Charges (~1e-13 C) times exp(-limit)
# stay normal numbers in either dtype.
FACTORISE_EXPONENT_LIMIT = {torch.float32: 30.0, torch.float64: 300.0}
# Largest exponent of the dense decay matrix for rows not yet written (their decay runs
# backwards, exp(+m f age), as the simulator's factorised decay has it): past it the resting
# conductance of a row written in the future is meaningless anyway, and it must stay finite.
_BACKWARD_DECAY_EXPONENT_LIMIT = 60.0


class AttentionSignals(NamedTuple):
    """A forward pass with its intermediates, as gcsim.simulate's AttentionResult has them but
    dense: S (B, H, T, T) read-out column charge in coulombs (ideal: q . (k - mid-rail)), phi
    (B, H, T, T) HardSigmoid pulse width in seconds (ideal: softmax weight), both zero outside
    the window; output (B, H, T, D)."""

    output: torch.Tensor
    S: torch.Tensor
    phi: torch.Tensor


@dataclass
class _Geometry:
    """What a forward pass of T tokens needs besides the inputs, shared by every head: the
    decay per power for the window's keys and for the rows that load a V integrator; the
    window mask; which sub-tile (or physical array) each query reads."""

    mask: torch.Tensor          # (T, K) window mask, keys padded to whole sub-tiles
    decay: fn.DecayPowers       # exp(-m f age) (dense: zero outside the window)
    held: torch.Tensor | None   # (T, K) the rows on each V integrator's bitline (loading)
    held_decay: fn.DecayPowers | None   # exp(-m f age) on those rows
    read: torch.Tensor          # (slots, T, 1) whether a query reads a slot (sub-tile / array)
    n_sub: int


class GainCellAttention(nn.Module):
    """Attention on gain-cell arrays, differentiable: q in [0, 1], k and v in the operating
    point's stored range (volts), all (batch, heads, tokens, head_dim); the output has the same
    shape (the sum of the per-array counter outputs, each in [-1, 1]).

    Modes as gcsim.simulate: `ideal` (softmax), `linear`, `paper` (no fits bundle needed) and
    `fitted` (`from_fits`, or the repository's bundle by default). The forward pass equals
    `simulate_attention(q, k, v, mode, model=self.model, config=self.config)`.
    """

    def __init__(self, mode: str = "paper", *, window: int, array: int | None = None,
                 token_period: float | None = None, quantize: bool = True, decay: bool = True,
                 mismatch_seed: int | None = None, dtype: torch.dtype = torch.float64,
                 model: HardwareModel | None = None, heads: int | None = None,
                 head_dim: int | None = None, clip_gradient: str = "clamp", **options):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if clip_gradient not in _CLIP_GRADIENTS:
            raise ValueError(f"clip_gradient must be one of {', '.join(_CLIP_GRADIENTS)}, "
                             f"got {clip_gradient!r}")
        if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        config_options = {}
        for name, value in options.items():
            name = _ALIASES.get(name, name)
            if name not in _CONFIG_OPTIONS:
                raise TypeError(f"unknown option {name!r}; options: "
                                f"{', '.join(sorted(_CONFIG_OPTIONS + tuple(_ALIASES)))}")
            config_options[name] = value
        if mode == "ideal":
            self.model = model
            point = model.operating_point if model is not None else PAPER_OPERATING_POINT
        else:
            self.model = model if model is not None else model_for_mode(mode)
            point = self.model.operating_point
        self.mode = mode
        self.operating_point: OperatingPoint = point
        self._config = SimulationConfig(
            window=int(window), array_size=array if array is not None else point.array_size,
            quantize_inputs=config_options.pop("quantize_inputs", quantize),
            quantize_output=config_options.pop("quantize_output", quantize),
            decay=decay, token_period_s=token_period, mismatch_seed=mismatch_seed,
            dtype=_DTYPES[dtype], **config_options)
        self._config.validate()
        self.straight_through_clip = clip_gradient == "straight_through"
        # Tracks the module's dtype and device through .to(), .double(), .cuda().
        self.register_buffer("_reference", torch.zeros((), dtype=dtype), persistent=False)
        self.run = None
        if mode != "ideal":
            # The simulator's own plan, for the whole window: decay factor (temperature, token
            # period), decay law with the read disturb folded in, write error, loading; it
            # refuses a window older than the decay fit unless `extrapolate`.
            run = _Run.plan(self.model, self._config, int(window))
            self.run = run.on_ring(window) if self.model.ring_buffer else run
        self._geometry_cache: dict = {}
        self._powers = None
        for name in ("k_cell_gain", "k_cell_shift_V", "v_cell_gain", "v_cell_shift_V"):
            self.register_buffer(name, None)
        self._mismatch_shape = None
        if heads is not None and head_dim is not None:
            self.draw_cells(heads, head_dim)

    @classmethod
    def from_fits(cls, fits_dir: str | Path, *, window: int, array: int | None = None,
                  token_period: float | None = None, quantize: bool = True, decay: bool = True,
                  mismatch_seed: int | None = None, mode: str = "fitted",
                  dtype: torch.dtype = torch.float64, **options) -> GainCellAttention:
        """The module on a fits bundle's hardware model (gcsim.hw.load_fitted_models). With
        mode `paper` or `linear`, the published law at the bundle's operating point; with
        `ideal`, softmax over the bundle's stored range and mid-rail."""
        fitted = load_fitted_models(fits_dir)
        if mode in ("paper", "linear"):
            model = at_operating_point(model_for_mode(mode), fitted.operating_point)
        else:
            model = fitted
        return cls(mode, window=window, array=array, token_period=token_period,
                   quantize=quantize, decay=decay, mismatch_seed=mismatch_seed, dtype=dtype,
                   model=model, **options)

    # -- the module's state ------------------------------------------------------------------

    @property
    def config(self) -> SimulationConfig:
        """The simulator's options this module runs with (its dtype the module's now):
        `simulate_attention(q, k, v, self.mode, model=self.model, config=self.config)` gives
        its forward pass."""
        return replace(self._config, dtype=_DTYPES[self._reference.dtype])

    @property
    def decay_factor(self) -> float:
        """The decay exponent per token of age the module applies (0 without decay)."""
        return self.run.decay_factor if self.run is not None else 0.0

    @property
    def warnings(self) -> tuple[str, ...]:
        """Where the run takes a fit beyond its range (with `extrapolate=True`)."""
        return self.run.warnings if self.run is not None else ()

    def extra_repr(self) -> str:
        c = self.config
        return (f"mode={self.mode!r}, window={c.window}, array={c.array_size}, "
                f"decay_factor={self.decay_factor:.4g}, quantize_inputs={c.quantize_inputs}, "
                f"quantize_output={c.quantize_output}, mismatch_seed={c.mismatch_seed}")

    def draw_cells(self, heads: int, head_dim: int) -> None:
        """Fixes the module to `heads` heads of `head_dim` and, with a mismatch seed, draws the
        per-cell mismatch of every head's K and V arrays once, with the simulator's own draw
        (gcsim.simulate.attention.draw_mismatch), into buffers (k_cell_gain, k_cell_shift_V,
        v_cell_gain, v_cell_shift_V: heads x arrays x rows x head_dim). The first forward pass
        does it when not done before; do it first to load a state_dict that holds them."""
        if self._mismatch_shape is not None:
            if self._mismatch_shape != (heads, head_dim):
                raise ValueError(f"the module's cells are for {self._mismatch_shape[0]} heads "
                                 f"of dim {self._mismatch_shape[1]}, got {heads} x {head_dim}")
            return
        self._mismatch_shape = (heads, head_dim)
        self._powers = None   # per-cell shifts change which decay powers the cells have
        if self._config.mismatch_seed is None or self.run is None:
            return
        drawn = draw_mismatch(self.model, self._config.mismatch_seed, heads, head_dim,
                              self._config, self.run.window)
        if drawn is None:
            return
        k_sample, v_sample = drawn
        ref = self._reference

        def held(x):
            return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)

        # K arrays: (heads, arrays, head_dim rows, token columns); stored as (heads, arrays,
        # token, head_dim) like the V arrays', so one gather maps tokens onto both.
        self.k_cell_gain = held(k_sample.gain.transpose(0, 1, 3, 2))
        self.k_cell_shift_V = held(k_sample.vt_shift_V.transpose(0, 1, 3, 2))
        self.v_cell_gain = held(v_sample.gain)
        self.v_cell_shift_V = held(v_sample.vt_shift_V)

    def _cells(self, heads: int, head_dim: int, n_tokens: int):
        """Each token's physical cells on the ring of arrays, (heads, T, D) gain and shift for
        K and for V; Nones without mismatch."""
        self.draw_cells(heads, head_dim)
        if self.k_cell_gain is None:
            return (None, None), (None, None)
        a_size = self._config.array_size
        n_arrays = self.k_cell_gain.shape[1]
        j = torch.arange(n_tokens, device=self.k_cell_gain.device)
        array_index, row = (j // a_size) % n_arrays, j % a_size

        def per_token(x):
            return x[:, array_index, row, :]

        return ((per_token(self.k_cell_gain), per_token(self.k_cell_shift_V)),
                (per_token(self.v_cell_gain), per_token(self.v_cell_shift_V)))

    def _geometry(self, n_tokens: int) -> _Geometry:
        ref = self._reference
        key = (n_tokens, ref.dtype, ref.device)
        if key not in self._geometry_cache:
            self._geometry_cache = {key: self._build_geometry(n_tokens)}
        return self._geometry_cache[key]

    def _build_geometry(self, n_tokens: int) -> _Geometry:
        ref = self._reference
        window, a_size = self.run.window, self.run.array_size
        n_sub = -(-n_tokens // a_size)
        n_keys = n_sub * a_size
        t = torch.arange(n_tokens, dtype=torch.float64)[:, None]
        j = torch.arange(n_keys, dtype=torch.float64)[None, :]
        age = t - j
        inside = (age >= 0) & (age < window) & (j < n_tokens)
        f = self.run.decay_factor
        max_power = self._max_power()
        powers = torch.arange(max_power + 1, dtype=torch.float64)[:, None, None]
        factorised = f * max_power * n_keys <= FACTORISE_EXPONENT_LIMIT[ref.dtype]
        if factorised:
            decay = fn.DecayPowers(torch.exp(-f * powers[:, :, 0] * t.T).to(ref),
                                   torch.exp(f * powers[:, :, 0] * j).to(ref))
        else:
            decay = fn.DecayPowers(dense=(torch.exp(-f * powers * age.clamp(min=0))
                                          * inside).to(ref))
        held = held_decay = None
        if self.run.loading is not None:
            if self.run.ring_arrays is not None:
                # Each row of the ring holds the newest key written to it (rows not yet
                # written: the key that will be), windows not a whole number of arrays
                # included; past the sequence there are no cells.
                rows = self.run.ring_arrays * a_size
                lo = (t - rows + 1).clamp(min=0)
                held = (j >= lo) & (j < lo + rows) & (j < n_tokens)
            else:
                held = (j < n_tokens).expand(n_tokens, n_keys)   # every cell of its sub-tile
            if factorised:
                held_decay = decay
            else:
                exponent = (-f * powers * age).clamp(max=_BACKWARD_DECAY_EXPONENT_LIMIT)
                held_decay = fn.DecayPowers(dense=(torch.exp(exponent) * held).to(ref))
            held = held.to(ref)
        first = (t - window + 1).clamp(min=0) // a_size
        last = t // a_size
        tiles = torch.arange(n_sub, dtype=torch.float64)[None, :]
        read = (tiles >= first) & (tiles <= last)   # (T, n_sub)
        if self.run.ring_arrays is not None:
            read = self._fold(read.T.to(torch.float64)).T > 0
        return _Geometry(mask=inside.to(ref), decay=decay, held=held,
                         held_decay=held_decay, read=read.T.unsqueeze(-1).to(ref), n_sub=n_sub)

    def _max_power(self) -> int:
        orders = [len(self.run.power_coefficients_A)]
        loading = self.run.loading
        if loading is not None:
            orders.append(max(len(loading.on_conductance_S), len(loading.off_conductance_S)))
        return max(orders) - 1

    def _fold(self, per_subtile: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Per-sub-tile values summed per physical array of the ring (sub-tile s lives in
        array s % n): the keys of a window in one array share its bitline and converter."""
        n = self.run.ring_arrays
        if n is None:
            return per_subtile
        dim = dim % per_subtile.dim()
        n_sub = per_subtile.shape[dim]
        laps = -(-n_sub // n)
        pad = [0, 0] * (per_subtile.dim() - dim - 1) + [0, laps * n - n_sub]
        padded = torch.nn.functional.pad(per_subtile, pad)
        return padded.unflatten(dim, (laps, n)).sum(dim=dim)

    # -- the signal chain ----------------------------------------------------------------------

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The attention output (B, H, T, D) for q, k, v (B, H, T, D), returned in q's dtype."""
        return self.signals(q, k, v, keep=False).output

    def signals(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                keep: bool = True) -> AttentionSignals:
        """The forward pass with its S and phi (see AttentionSignals); without `keep`, only
        the output (S and phi None)."""
        if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
            raise ValueError("q, k and v must have one shape (batch, heads, tokens, head_dim); "
                             f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        if 0 in q.shape:
            raise ValueError(f"q, k and v are empty (shape {tuple(q.shape)})")
        out_dtype = q.dtype if q.dtype.is_floating_point else self._reference.dtype
        ref = self._reference
        q, k, v = (x.to(dtype=ref.dtype, device=ref.device) for x in (q, k, v))
        qd, kd, vd = self._dacs(q, k, v)
        if self.mode == "ideal":
            result = self._ideal(qd, kd, vd, keep)
        else:
            result = self._hardware(qd, kd, vd, keep)
        return AttentionSignals(result.output.to(out_dtype), result.S, result.phi)

    def _dac(self, x, lo: float, hi: float, levels: int, quantize: bool, name: str):
        """An InputDAC (gcsim.hw.stages) in torch: clip (or refuse values outside the range),
        then quantise with a straight-through gradient."""
        if self._config.clip_inputs:
            x = fn.clip(x, lo, hi, self.straight_through_clip)
        else:
            with torch.no_grad():
                low, high = float(x.min()), float(x.max())
            if low < lo or high > hi:
                raise ValueError(f"{name} values span [{low:.4g}, {high:.4g}], outside the "
                                 f"physical range [{lo:g}, {hi:g}] (clipping is off)")
        return fn.quantize(x, lo, hi, levels) if quantize else x

    def _dacs(self, q, k, v):
        point, config = self.operating_point, self._config
        # The ideal reference sees the (clipped) values themselves, not their DAC levels.
        quantize = config.quantize_inputs and self.mode != "ideal"
        query_levels = config.query_levels or point.query_levels
        stored_levels = config.stored_levels or point.stored_levels
        stored = (point.stored_min_V, point.stored_max_V, stored_levels, quantize)
        return (self._dac(q, 0.0, 1.0, query_levels, quantize, "Q"),
                self._dac(k, *stored, "K"), self._dac(v, *stored, "V"))

    def _ideal(self, qd, kd, vd, keep: bool) -> AttentionSignals:
        """Softmax attention on the signed values, over the causal sliding window."""
        n_tokens, head_dim = qd.shape[-2:]
        mid = self.operating_point.mid_rail_V
        dots = torch.matmul(qd, (kd - mid).transpose(-1, -2))
        t = torch.arange(n_tokens, device=qd.device)
        age = t[:, None] - t[None, :]
        inside = (age >= 0) & (age < self._config.window)
        logits = torch.where(inside, dots / math.sqrt(head_dim), -math.inf)
        weights = torch.softmax(logits, dim=-1)
        output = torch.matmul(weights, vd - mid)
        if not keep:
            return AttentionSignals(output, None, None)
        return AttentionSignals(output, torch.where(inside, dots, 0.0), weights)

    def _arrays(self, written_V, cells):
        """One array's cells (K or V) written at the DAC voltages: where the writes land, each
        cell's asymptote, and its features for the current and, with loading, the resting and
        the pulsed-minus-resting conductances (gcsim.hw.loading.ReadoutLoading.arrays), as
        {"current", "rest", "extra"}: fn.CellFeatures. Recomputed in the backward pass rather
        than kept: the float64 power tables behind them are several times their size."""
        gain, shift = cells
        values = torch.utils.checkpoint.checkpoint(self._cell_values, written_V, gain, shift,
                                                   use_reentrant=False)
        powers = self._cell_powers()
        return {name: fn.CellFeatures(p, v)
                for name, p, v in zip(("current", "rest", "extra"), powers, values)}

    def _polynomials(self) -> list:
        """The cell current's power coefficients and, with loading, the resting and the
        pulsed-minus-resting conductances' (gcsim.hw.loading.ReadoutLoading.arrays)."""
        run = self.run
        polynomials = [run.power_coefficients_A]
        loading = run.loading
        if loading is not None:
            order = max(len(loading.on_conductance_S), len(loading.off_conductance_S))
            on = list(loading.on_conductance_S) + [0.0] * (order - len(loading.on_conductance_S))
            off = (list(loading.off_conductance_S)
                   + [0.0] * (order - len(loading.off_conductance_S)))
            polynomials += [off, [a - b for a, b in zip(on, off)]]
        return polynomials

    def _cell_features(self, written_V, gain, shift) -> list[fn.CellFeatures]:
        run, model = self.run, self.model
        # In float64 whatever the module's dtype, then cast, as the simulator builds its
        # features: the terms of the decay expansion cancel (by about three digits on sky130,
        # whose fitted asymptotes lie far beyond its levels).
        dtype = written_V.dtype
        written_V = written_V.to(torch.float64)
        gain, shift = (None if x is None else x.to(torch.float64) for x in (gain, shift))
        if run.write_error is not None:
            written_V = written_V + fn.interp(written_V, run.write_error.levels_V,
                                              run.write_error.values)
        asymptote = 0.0
        if run.decay_factor:
            decay = run.decay
            asymptote = (decay.asymptote_V if decay.asymptote_levels_V is None else
                         fn.interp(written_V, decay.asymptote_levels_V,
                                   decay.asymptote_by_level_V))
        cells = fn.cell_features(written_V, self._polynomials(), model.cell.v_mid_V,
                                 run.decay_factor, asymptote, gain, shift)
        return [fn.CellFeatures(c.powers, c.values.to(dtype)) for c in cells]

    def _cell_values(self, written_V, gain, shift) -> tuple[torch.Tensor, ...]:
        return tuple(c.values for c in self._cell_features(written_V, gain, shift))

    def _cell_powers(self) -> list[list[int]]:
        """Which decay powers each polynomial's features have (they depend on the model and
        on whether the cells have per-cell asymptotes, not on the values written)."""
        if self._powers is None:
            ref = self._reference
            probe = torch.full((1, 1), self.operating_point.mid_rail_V, dtype=torch.float64,
                               device=ref.device)
            cells = None if self.k_cell_gain is None else torch.ones_like(probe)
            self._powers = [c.powers for c in self._cell_features(probe, cells, cells)]
        return self._powers

    def _hardware(self, qd, kd, vd, keep: bool) -> AttentionSignals:
        """The hardware modes' signal chain (gcsim.simulate.attention._run_block, dense over the
        whole sequence): query pulses, K array, readout, HardSigmoid, V array per sub-tile or
        physical array, signed converters and counters, digital sum."""
        run, model = self.run, self.model
        batch, heads, n_tokens, head_dim = qd.shape
        geometry = self._geometry(n_tokens)
        k_cells, v_cells = self._cells(heads, head_dim, n_tokens)
        k_arrays = self._arrays(kd, k_cells)
        v_arrays = self._arrays(vd, v_cells)
        decay_keys = geometry.decay.keys(n_tokens)
        mask = geometry.mask[:, :n_tokens]

        # Query DAC and word-line drivers: pulses q T_max, each lengthened by the edge time.
        widths = qd * model.charge_to_pulse.t_max_s
        edge = model.pulse_edge_time_s
        if edge:
            widths = widths + edge * (widths > 0).to(widths.dtype)

        # First array product, read out as S; with loading, the converter meets it stretched.
        # Keys outside a query's window are not read: their charges are masked before the
        # converters (a factorised decay leaves them finite but meaningless).
        loading = run.loading
        if loading is None:
            charge = fn.column_product(widths, k_arrays["current"], decay_keys) * mask
        else:
            charge, rest = self._loaded(
                lambda arrays, w: fn.column_product(w, k_arrays[arrays], decay_keys) * mask,
                fn.column_totals(k_arrays["rest"], decay_keys) * mask, widths,
                loading.k_window_s, loading.k_pulse_start_s)
        score = self._readout(charge)
        converted = score
        if loading is not None:
            converted = score * self._conversion_scale(rest, score,
                                                       loading.k_conversion_current_A)

        # HardSigmoid converters: each key column's pulse phi drives its V-array row.
        phi = self._hardsigmoid(converted) * mask
        drive = phi + edge * (phi > 0).to(phi.dtype) if edge else phi

        # Second array product per sub-tile (per physical array on a ring buffer).
        a_size = run.array_size
        drive = torch.nn.functional.pad(drive, (0, geometry.n_sub * a_size - n_tokens))
        v_cells = {name: fn.CellFeatures(cells.powers, torch.nn.functional.pad(
            cells.values, (0, 0, 0, 0, 0, drive.shape[-1] - n_tokens)))
            for name, cells in v_arrays.items()}

        def v_product(arrays, pulses, decay=geometry.decay):
            return self._fold(fn.row_product(pulses, v_cells[arrays], decay, a_size), dim=-3)

        if loading is None:
            charge = v_product("current", drive)
        else:
            rest_totals = v_product("rest", geometry.held, geometry.held_decay)
            charge, rest = self._loaded(v_product, rest_totals, drive, loading.v_window_s,
                                        loading.v_pulse_start_s)
            # A sub-tile (array) outside a query's window is neither integrated nor converted.
            charge = charge * geometry.read
            charge = charge * self._conversion_scale(rest, charge,
                                                     loading.v_conversion_current_A)
        counts = self._output_counts(charge) * geometry.read
        output = counts.sum(dim=-3)
        if not keep:
            return AttentionSignals(output, None, None)
        return AttentionSignals(output, score * mask, phi)

    def _loaded(self, product, rest_S, widths, window_s: float, start_s: float):
        """gcsim.hw.loading.LoadedArray._loaded: the charge with what the moving virtual ground
        costs taken off, and the resting conductance `rest_S` (the unit-width totals of the
        "rest" features). `product(arrays, weights)` is the array product through the
        "current" or "extra" features."""
        loading = self.run.loading
        charge = product("current", widths)
        w = torch.clamp(widths, max=max(window_s - start_s, 0.0))
        hold = w * (window_s - start_s) - 0.5 * w * w   # per cell: integral of its charge dt
        moving = product("current", loading.charge_coefficient_V_per_C * hold
                         + loading.current_coefficient_V_per_A * widths)
        conductance = rest_S + product("extra", w) / window_s
        return charge - conductance * (loading.offset_V * window_s + moving), rest_S

    def _readout(self, charge):
        """gcsim.hw.stages.Readout: gain, offset, saturation."""
        readout = self.model.readout
        out = charge * readout.gain if readout.gain != 1.0 else charge
        if readout.offset_C != 0.0:
            out = out + readout.offset_C
        if readout.saturation_C is not None:
            out = torch.clamp(out, -readout.saturation_C, readout.saturation_C)
        return out

    def _conversion_scale(self, rest_S, charge_C, current_A):
        """ReadoutLoading.conversion_scale: how much longer a converter emptying a loaded
        integrator at `current_A` takes (the sign of the charge has no gradient)."""
        if current_A is None:
            return 1.0
        loading = self.run.loading
        rate = (1.0 - rest_S * loading.current_coefficient_V_per_A
                + torch.sign(charge_C) * rest_S * loading.offset_V / current_A)
        return 1.0 / rate

    def _hardsigmoid(self, charge_C):
        """gcsim.hw.stages.ChargeToPulse: clip(slope (S - offset), 0, t_max), zero below the
        comparator's threshold when it has one."""
        c2p = self.model.charge_to_pulse
        if c2p.offset_C != 0.0:
            width = (charge_C - c2p.offset_C) * c2p.slope_s_per_C
        else:
            width = charge_C * c2p.slope_s_per_C
        pulses = torch.clamp(width, 0.0, c2p.t_max_s)
        if c2p.threshold_C is not None:
            below = width < c2p.slope_s_per_C * (c2p.threshold_C - c2p.offset_C)
            pulses = torch.where(below, 0.0, pulses)
        return pulses

    def _output_counts(self, charge_C):
        """gcsim.hw.stages.SignedConverter: clip((A - offset) / full scale, -1, 1), quantised
        by the counter (straight-through) unless the output quantisation is off."""
        converter = self.model.output_converter
        if converter.charge_offset_C:
            x = (charge_C - converter.charge_offset_C) / converter.full_scale_C
        else:
            x = charge_C / converter.full_scale_C
        x = torch.clamp(x, -1.0, 1.0)
        if self._config.quantize_output:
            x = fn.quantize(x, -1.0, 1.0, converter.levels)
        return x
