"""The signal chain's hardware stages, each a small function or object: DACs, pulses, gain-cell
arrays, readout, HardSigmoid charge-to-pulse, signed conversion. SI units throughout. (The
simulator's window and sub-tile bookkeeping, and the digital sub-tile sum, are in
gcsim.simulate.windows.)
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from gcsim.core.quantize import quantize, quantize_levels


_quantize = quantize  # for methods whose `quantize` flag shadows the function


@dataclass
class InputDAC:
    """A DAC writing values into [lo, hi] with `levels` levels (CrossSim-style set_limits/convert).

    With `clip` off, values outside the range are an error: the hardware cannot represent them.
    """

    lo: float
    hi: float
    levels: int
    clip: bool = True
    quantize: bool = True
    name: str = "input"

    def set_limits(self, lo: float, hi: float) -> None:
        if not hi > lo:
            raise ValueError(f"{self.name} DAC limits must satisfy lo < hi, got [{lo}, {hi}]")
        self.lo, self.hi = float(lo), float(hi)

    def convert(self, x) -> np.ndarray:
        x = np.array(x, dtype=np.float64, copy=True)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{self.name} contains NaN or infinite values")
        if self.clip:
            np.clip(x, self.lo, self.hi, out=x)
        elif x.size and (x.min() < self.lo or x.max() > self.hi):
            raise ValueError(
                f"{self.name} values span [{x.min():.4g}, {x.max():.4g}], outside the physical "
                f"range [{self.lo:g}, {self.hi:g}] (clipping is off)"
            )
        if self.quantize:
            quantize_levels(x, self.lo, self.hi, self.levels, out=x)
        return x


def query_pulse_width_s(query, t_max_s: float) -> np.ndarray:
    """Query element q in [0, 1] -> read word-line pulse width q * T_max, in seconds."""
    return np.multiply(query, t_max_s)


def _output_buffer(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is not None:
        return out
    x = np.asarray(x)
    return np.empty(x.shape, dtype=x.dtype if x.dtype.kind == "f" else np.float64)


@dataclass(frozen=True)
class Readout:
    """Column readout: S = gain * Q + offset, clipped to +-saturation_C when that is set."""

    gain: float = 1.0
    offset_C: float = 0.0
    saturation_C: float | None = None

    def convert(self, charge_C: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Read-out charge; `out` may be `charge_C` itself to work in place."""
        out = _output_buffer(charge_C, out)
        if self.gain != 1.0:
            np.multiply(charge_C, self.gain, out=out)
        elif out is not charge_C:
            np.copyto(out, charge_C)
        if self.offset_C != 0.0:
            np.add(out, self.offset_C, out=out)
        if self.saturation_C is not None:
            np.clip(out, -self.saturation_C, self.saturation_C, out=out)
        return out


@dataclass(frozen=True)
class ChargeToPulse:
    """HardSigmoid charge-to-pulse converter: width = clip(slope * (S - offset), 0, t_max),
    and zero below `threshold_C` when set (a comparator's minimum overdrive)."""

    slope_s_per_C: float
    t_max_s: float
    offset_C: float = 0.0
    threshold_C: float | None = None

    @property
    def saturation_charge_C(self) -> float:
        """Charge above the offset at which the pulse reaches t_max."""
        return self.t_max_s / self.slope_s_per_C

    def convert(self, charge_C: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Pulse width in seconds; `out` may be `charge_C` itself to work in place."""
        out = _output_buffer(charge_C, out)
        if self.offset_C != 0.0:
            np.subtract(charge_C, self.offset_C, out=out)
            np.multiply(out, self.slope_s_per_C, out=out)
        else:
            np.multiply(charge_C, self.slope_s_per_C, out=out)
        if self.threshold_C is not None:
            # `out` may alias `charge_C`: recover the charge from the width before masking.
            below = out < self.slope_s_per_C * (self.threshold_C - self.offset_C)
            np.clip(out, 0.0, self.t_max_s, out=out)
            np.multiply(out, ~below, out=out)   # (a masked copy, where=, is far slower)
            return out
        return np.clip(out, 0.0, self.t_max_s, out=out)


@dataclass(frozen=True)
class SignedConverter:
    """Signed charge-to-pulse converter and counter: A -> clip((A - charge_offset) / full_scale,
    -1, 1), quantised.

    Quantisation follows the published `step * round(x / step)` with step = 2 / (levels - 1).
    """

    full_scale_C: float
    levels: int = 32
    charge_offset_C: float = 0.0    # the input charge that reads as zero (readout offset)

    def convert(self, charge_C: np.ndarray, quantize: bool = True, out=None) -> np.ndarray:
        """Counter output in [-1, 1] (dimensionless); `out` may be `charge_C` itself."""
        out = _output_buffer(charge_C, out)
        if self.charge_offset_C:
            np.subtract(charge_C, self.charge_offset_C, out=out)
            np.divide(out, self.full_scale_C, out=out)
        else:
            np.divide(charge_C, self.full_scale_C, out=out)
        np.clip(out, -1.0, 1.0, out=out)
        if quantize:
            _quantize(out, -1.0, 1.0, self.levels, out=out)
        return out




# Largest |exponent| allowed in the per-block decay factors before falling back to an explicit
# decay matrix: the query and key factors are exp(-x) and exp(+x), so both must stay normal.
_DECAY_EXPONENT_LIMIT = {np.dtype(np.float64): 600.0, np.dtype(np.float32): 40.0}


@dataclass
class _Term:
    power: int  # m: the term decays as exp(-decay_factor * age) ** m
    constant: float | None  # the feature when it is the same for every cell
    feature: np.ndarray | None  # (tokens, head_dim) otherwise


def _derivative_coefficient(a: np.ndarray, m: int, u):
    """sum_{i>=m} a_i binom(i, m) u^(i-m) (the m-th Taylor coefficient of I at u), by Horner:
    u is a scalar or one value per cell, and array powers would dominate building the array."""
    coefficients = [a[i] * math.comb(i, m) for i in range(m, len(a))]
    if np.isscalar(u) or np.ndim(u) == 0:
        return float(np.polynomial.polynomial.polyval(float(u), coefficients))
    total = np.full(np.shape(u), coefficients[-1], dtype=np.float64)
    for c in reversed(coefficients[:-1]):
        total *= u
        total += c
    return total


# Cells per pass when building features: the work buffers are allocated once and stay in the
# caches (fresh arrays for every pass cost more in page faults than in arithmetic).
_CHUNK_CELLS = 1 << 13


def _flat_cells(values, shape) -> np.ndarray | float:
    """`values` (a scalar, or anything that broadcasts to `shape`) as a scalar or one value per
    cell in C order."""
    if np.ndim(values) == 0:
        return float(values)
    return np.ascontiguousarray(np.broadcast_to(values, shape), dtype=np.float64).reshape(-1)


def _decay_terms(written_V: np.ndarray, coefficient_sets, v_mid_V: float, asymptote_V, gain,
                 shift, dtypes) -> list[list[_Term]]:
    """The terms of GainCellArray's regrouping, F_m = gain b^m sum_{i>=m} a_i binom(i, m)
    u^(i-m), for each polynomial a of `coefficient_sets` on the same cells. Built a chunk of
    cells at a time, with b^m shared by every polynomial and, when u differs between cells,
    each polynomial's Taylor coefficients as one small product with u's powers."""
    shape = written_V.shape
    scalar_u = np.ndim(asymptote_V) == 0 and shift is None
    u_scalar = float(asymptote_V) - v_mid_V if scalar_u else None
    layouts: list[list[_Term]] = []
    for a, dtype in zip(coefficient_sets, dtypes):
        terms = []
        for m in range(len(a)):
            if scalar_u:
                g_m = _derivative_coefficient(a, m, u_scalar)
                if g_m == 0.0:
                    continue  # e.g. the linear cell has only the m = 1 term
                if m == 0 and gain is None:
                    terms.append(_Term(0, g_m, None))
                    continue
            terms.append(_Term(m, None, np.empty(shape, dtype=dtype)))
        layouts.append(terms)
    order = max((len(a) for a in coefficient_sets), default=0)
    # taylor[p][m, k] = a_(m+k) binom(m+k, m): row m of taylor @ (u^k) is g_m of polynomial p
    taylor = []
    for a in coefficient_sets:
        matrix = np.zeros((len(a), order))
        for m in range(len(a)):
            for k in range(len(a) - m):
                matrix[m, k] = a[m + k] * math.comb(m + k, m)
        taylor.append(matrix)
    # per power m, the (polynomial, term) pairs that have a feature there
    by_power = [[(p, term) for p, terms in enumerate(layouts) for term in terms
                 if term.power == m and term.feature is not None] for m in range(order)]
    written = np.ascontiguousarray(written_V, dtype=np.float64).reshape(-1)
    asymptote = _flat_cells(asymptote_V, shape)
    shifts = None if shift is None else _flat_cells(shift, shape)
    gains = None if gain is None else _flat_cells(gain, shape)
    n_cells = written.size
    chunk = min(_CHUNK_CELLS, max(n_cells, 1))
    b_all, b_power_all = np.empty(chunk), np.empty(chunk)
    feature_all = np.empty(chunk)
    u_powers_all = None if scalar_u else np.empty((order, chunk))
    coefficients_all = None if scalar_u else [np.empty((len(a), chunk)) for a in taylor]
    for c0 in range(0, n_cells, chunk):
        cut = slice(c0, min(c0 + chunk, n_cells))
        n = cut.stop - c0
        b, b_power, feature = b_all[:n], b_power_all[:n], feature_all[:n]
        inf = asymptote if np.ndim(asymptote) == 0 else asymptote[cut]
        np.subtract(written[cut], inf, out=b)
        if not scalar_u:
            u_powers = u_powers_all[:, :n]
            u_powers[0] = 1.0
            if order > 1:
                np.subtract(inf, v_mid_V, out=u_powers[1])
                if shifts is not None:
                    u_powers[1] += shifts[cut]
            for k in range(2, order):
                np.multiply(u_powers[k - 1], u_powers[1], out=u_powers[k])
            for matrix, out in zip(taylor, coefficients_all):
                np.matmul(matrix, u_powers, out=out[:, :n])
        for m in range(order):
            if m == 1:
                b_power[:] = b
            elif m > 1:
                b_power *= b
            for p, term in by_power[m]:
                if scalar_u:
                    g_m = _derivative_coefficient(coefficient_sets[p], m, u_scalar)
                else:
                    g_m = coefficients_all[p][m, :n]
                if m:
                    np.multiply(b_power, g_m, out=feature)
                else:
                    feature[:] = g_m
                if gains is not None:
                    feature *= gains[cut]
                term.feature.reshape(-1)[cut] = feature
    return layouts


class GainCellArray:
    """The gain cells holding one head's keys or values, written at `written_V` (tokens, head_dim).

    The polynomial cell current I(x) = sum_i a_i x^i, x = V_store - V_mid, with the stored voltage
    decaying as V = V_inf + (V_written - V_inf) * e, e = exp(-decay_factor * age), is regrouped in
    powers of e:  I = gain * sum_m F_m e^m,  F_m = b^m sum_{i>=m} a_i binom(i, m) u^(i-m),
    b = V_written - V_inf, u = V_inf - V_mid + vt_shift. Because e^m at age t - j equals
    exp(-m f (t - base)) * exp(m f (j - base)), the decay splits into a query factor and a key
    factor, and each block of queries needs one matrix product for all powers together.
    """

    def __init__(
        self,
        written_V: np.ndarray,
        power_coefficients_A: np.ndarray,
        v_mid_V: float,
        decay_factor: float,
        asymptote_V: float,
        cell_gain: np.ndarray | None = None,
        vt_shift_V: np.ndarray | None = None,
        dtype=np.float64,
    ):
        written_V = self._setup(written_V, decay_factor, dtype)
        a = np.asarray(power_coefficients_A, dtype=np.float64)
        gain = None if cell_gain is None else np.asarray(cell_gain, dtype=np.float64)
        shift = None if vt_shift_V is None else np.asarray(vt_shift_V, dtype=np.float64)
        if self.decay_factor == 0.0:
            # No decay: e = 1, the stored value is the written one and I(x) is a single feature.
            x = written_V - v_mid_V if shift is None else written_V - v_mid_V + shift
            current = np.polynomial.polynomial.polyval(x, a)
            if gain is not None:
                current *= gain
            self.terms = [_Term(0, None, current.astype(self.dtype))]
            return
        self.terms = _decay_terms(written_V, [a], v_mid_V, asymptote_V, gain, shift,
                                  [self.dtype])[0]

    def _setup(self, written_V, decay_factor: float, dtype) -> np.ndarray:
        written_V = np.asarray(written_V, dtype=np.float64)
        if written_V.ndim != 2:
            raise ValueError("a gain-cell array holds a (tokens, head_dim) block of voltages")
        if decay_factor < 0 or not math.isfinite(decay_factor):
            raise ValueError(f"decay factor must be finite and >= 0, got {decay_factor}")
        self.dtype = np.dtype(dtype)
        self.n_tokens, self.head_dim = written_V.shape
        self.decay_factor = float(decay_factor)
        self.terms: list[_Term] = []
        self._global_keys: np.ndarray | None = None
        self._global_sums: np.ndarray | None = None   # (tokens, terms), see _term_sums
        self._running_sums: tuple[int, np.ndarray] | None = None   # see _block_running_sums
        self._lock = threading.Lock()
        return written_V

    @classmethod
    def family(cls, written_V: np.ndarray, coefficient_sets, dtypes, v_mid_V: float,
               decay_factor: float, asymptote_V, cell_gain=None, vt_shift_V=None
               ) -> list[GainCellArray]:
        """One array per polynomial of `coefficient_sets`, each in its dtype of `dtypes`, all on
        the same cells: as building each alone, with the powers of b and u shared (a cell's
        current and its conductances are polynomials of one stored voltage)."""
        if decay_factor == 0.0:
            return [cls(written_V, a, v_mid_V, decay_factor, asymptote_V, cell_gain, vt_shift_V,
                        dtype) for a, dtype in zip(coefficient_sets, dtypes)]
        arrays = []
        for dtype in dtypes:
            array = cls.__new__(cls)
            written = array._setup(written_V, decay_factor, dtype)
            arrays.append(array)
        gain = None if cell_gain is None else np.asarray(cell_gain, dtype=np.float64)
        shift = None if vt_shift_V is None else np.asarray(vt_shift_V, dtype=np.float64)
        sets = [np.asarray(a, dtype=np.float64) for a in coefficient_sets]
        for array, terms in zip(arrays, _decay_terms(written, sets, v_mid_V, asymptote_V, gain,
                                                     shift, [a.dtype for a in arrays])):
            array.terms = terms
        return arrays

    @property
    def _global_base(self) -> bool:
        """Whether one set of decay factors, based at token 0, stays finite for the sequence."""
        return self._factorisable(self.n_tokens)

    @property
    def max_power(self) -> int:
        return max((t.power for t in self.terms), default=0)

    @property
    def _width(self) -> int:
        return sum(1 if t.constant is not None else self.head_dim for t in self.terms)

    def _factorisable(self, span: int) -> bool:
        exponent = self.decay_factor * self.max_power * span
        return exponent <= _DECAY_EXPONENT_LIMIT.get(self.dtype, 40.0)

    def _choose_base(self, last_query: int, key_start: int, key_stop: int) -> int | None:
        """Reference position of the decay factors for a block; None if they would overflow.

        Position 0 for every block when the whole sequence fits (the key matrix is then built
        once), else the block's first key.
        """
        if self._global_base:
            return 0
        if self._factorisable(max(last_query, key_stop) - key_start):
            return key_start
        return None

    def _build_keys(self, start: int, stop: int, base: int | None) -> np.ndarray:
        width = self._width
        out = np.zeros((stop - start, width), dtype=self.dtype)
        real = min(stop, self.n_tokens) - start
        positions = np.arange(start, start + real, dtype=np.float64) - (base or 0)
        col = 0
        for term in self.terms:
            scale = None
            if term.power and base is not None:
                scale = np.exp(self.decay_factor * term.power * positions)
            if term.constant is not None:
                out[:real, col] = term.constant if scale is None else term.constant * scale
                col += 1
            else:
                block = out[:real, col : col + self.head_dim]
                np.copyto(block, term.feature[start : start + real])
                if scale is not None:
                    block *= scale[:, None].astype(self.dtype)
                col += self.head_dim
        return out

    def _key_features(self, start: int, stop: int, base: int | None) -> np.ndarray:
        """(stop - start, N) key-side matrix, all terms side by side; zero rows past the sequence.

        With a `base`, term m carries the key factor exp(m f (j - base)); without, no decay.
        """
        if base != 0 or not self._global_base:
            return self._build_keys(start, stop, base)
        if self._global_keys is None:
            with self._lock:   # blocks of one array may run in parallel threads
                if self._global_keys is None:
                    self._global_keys = self._build_keys(0, self.n_tokens, 0)
        if stop <= self.n_tokens:
            return self._global_keys[start:stop]
        out = np.zeros((stop - start, self._global_keys.shape[1]), dtype=self.dtype)
        out[: self.n_tokens - start] = self._global_keys[start:]
        return out

    def _query_scales(self, query_start: int, n_queries: int, base: int) -> list[np.ndarray | None]:
        positions = np.arange(query_start, query_start + n_queries, dtype=np.float64) - base
        return [
            np.exp(-self.decay_factor * t.power * positions).astype(self.dtype) if t.power else None
            for t in self.terms
        ]

    def _decay_matrix(self, query_start: int, n_queries: int, key_start: int, n_keys: int):
        age = np.subtract.outer(
            np.arange(query_start, query_start + n_queries),
            np.arange(key_start, key_start + n_keys),
        )
        # Future keys (negative age) are masked by the caller; clamp so they cannot overflow.
        return np.exp(-self.decay_factor * np.maximum(age, 0)).astype(self.dtype)

    def _single_feature(self) -> bool:
        return len(self.terms) == 1 and self.terms[0].power == 0

    def column_charges_C(
        self, pulse_widths_s: np.ndarray, query_start: int, key_start: int, key_stop: int
    ) -> np.ndarray:
        """K array: charge on each key's column, Q[t, j] = sum_d width[t, d] I(k[j, d], age t - j).

        `pulse_widths_s` is (n_queries, head_dim) for queries query_start...; keys past the end of
        the sequence give zero charge. A stack of widths (n_weights, n_queries, head_dim), for
        the same queries, gives (n_weights, n_queries, n_keys) from one product: the key
        matrix is read once for all of them.
        """
        widths = np.asarray(pulse_widths_s, dtype=self.dtype)
        n_q = widths.shape[-2]
        n_k = key_stop - key_start
        if not self.terms:
            return np.zeros(widths.shape[:-1] + (n_k,), dtype=self.dtype)
        if self._single_feature() and self.terms[0].feature is not None:
            return widths @ self._key_features(key_start, key_stop, 0).T
        base = self._choose_base(query_start + n_q - 1, key_start, key_stop)
        if base is not None:
            scales = self._query_scales(query_start, n_q, base)
            queries = np.empty(widths.shape[:-1] + (self._width,), dtype=self.dtype)
            col = 0
            for term, scale in zip(self.terms, scales):
                if term.constant is not None:  # the key side carries the constant
                    total = widths.sum(axis=-1)
                    queries[..., col] = total if scale is None else total * scale
                    col += 1
                    continue
                part = queries[..., col:col + self.head_dim]
                if scale is None:
                    np.copyto(part, widths)
                else:
                    np.multiply(widths, scale[:, None], out=part)
                col += self.head_dim
            keys = self._key_features(key_start, key_stop, base)
            flat = queries.reshape(-1, self._width) @ keys.T
            return flat.reshape(widths.shape[:-1] + (n_k,))
        if widths.ndim == 3:
            return np.stack([self.column_charges_C(w, query_start, key_start, key_stop)
                             for w in widths])
        # Decay too strong to factorise over this span: explicit decay matrix per power.
        decay = self._decay_matrix(query_start, n_q, key_start, n_k)
        keys = self._key_features(key_start, key_stop, None)
        total = np.zeros((n_q, n_k), dtype=self.dtype)
        col = 0
        for term in self.terms:
            if term.constant is not None:
                product = np.multiply.outer(widths.sum(axis=1), keys[:, col])
                col += 1
            else:
                product = widths @ keys[:, col : col + self.head_dim].T
                col += self.head_dim
            total += product * decay**term.power if term.power else product
        return total

    def _term_sums(self, keys: np.ndarray) -> np.ndarray:
        """(n_keys, terms): each key's sum over its head_dim cells of every term's feature."""
        sums = np.empty((keys.shape[0], len(self.terms)), dtype=self.dtype)
        col = 0
        for index, term in enumerate(self.terms):
            if term.constant is not None:   # one key column standing for head_dim equal cells
                np.multiply(keys[:, col], self.head_dim, out=sums[:, index])
                col += 1
            else:
                keys[:, col:col + self.head_dim].sum(axis=1, out=sums[:, index])
                col += self.head_dim
        return sums

    def column_totals_C(self, n_queries: int, query_start: int, key_start: int,
                        key_stop: int) -> np.ndarray:
        """`column_charges_C` with every width 1: each column's sum over all its cells (a
        conductance array's resting conductance). The unit widths factor out of the product,
        so this sums the key features once (once per array when one set of decay factors
        serves the whole sequence) and weighs the sums by each query's decay factors."""
        n_k = key_stop - key_start
        if not self.terms:
            return np.zeros((n_queries, n_k), dtype=self.dtype)
        single = self._single_feature() and self.terms[0].feature is not None
        base = 0 if single else self._choose_base(query_start + n_queries - 1, key_start,
                                                  key_stop)
        if base is None:
            return self.column_charges_C(np.ones((n_queries, self.head_dim), self.dtype),
                                         query_start, key_start, key_stop)
        if base == 0 and self._global_base and key_stop <= self.n_tokens:
            if self._global_sums is None:
                keys = self._key_features(0, self.n_tokens, 0)
                with self._lock:
                    if self._global_sums is None:
                        self._global_sums = self._term_sums(keys)
            sums = self._global_sums[key_start:key_stop]
        else:
            sums = self._term_sums(self._key_features(key_start, key_stop, base))
        if single:
            return np.broadcast_to(sums[:, 0], (n_queries, n_k)).copy()
        scales = self._query_scales(query_start, n_queries, base)
        weights = np.stack([np.ones(n_queries, self.dtype) if scale is None else scale
                            for scale in scales], axis=1)
        return weights @ sums.T

    def row_totals_C(self, n_queries: int, query_start: int, key_start: int,
                     array_size: int, n_keys: int, key_ranges=None) -> np.ndarray:
        """`row_charges_C` with every width 1 over `n_keys` keys: each sub-tile column's sum
        over all its cells, (n_subtiles, n_queries, head_dim), without the product.
        `key_ranges` (lo, hi), each (n_queries,): per query, only keys lo <= j < hi count."""
        if key_start % array_size:
            raise ValueError("V-array blocks must start on a sub-tile boundary")
        n_sub = -(-n_keys // array_size)
        padded = n_sub * array_size
        key_stop = key_start + padded
        if not self.terms:
            return np.zeros((n_sub, n_queries, self.head_dim), dtype=self.dtype)
        single = self._single_feature()
        base = 0 if single else self._choose_base(query_start + n_queries - 1, key_start,
                                                  key_stop)
        if base is None:
            ones = np.ones((n_queries, n_keys), self.dtype)
            if key_ranges is not None:
                j = key_start + np.arange(n_keys)
                ones *= (j >= key_ranges[0][:, None]) & (j < key_ranges[1][:, None])
            return self.row_charges_C(ones, query_start, key_start, array_size)
        # Keys counted per sub-tile: past n_keys the cells are not there, as in the padded
        # product.
        counts = np.minimum(array_size, n_keys - np.arange(n_sub) * array_size)
        if base == 0 and self._global_base:
            # One set of running sums per sub-tile serves every block (a ring reads them
            # twice per query: the total, and the sub-tiles that hold its range's ends).
            running_tiles = self._block_running_sums(key_start, n_sub, array_size)
            sums = running_tiles[np.arange(n_sub), counts]   # (sub, N)
        else:
            running_tiles = None
            keys = self._key_features(key_start, key_stop, base)[:n_keys]
            sums = np.zeros((n_sub * array_size, keys.shape[1]), dtype=self.dtype)
            sums[:n_keys] = keys
            by_tile = sums.reshape(n_sub, array_size, -1)
            sums = by_tile.sum(axis=1)   # (sub, N)
        # Every query sees the same sums; only the decay scales differ between queries.
        totals = self._weigh_sums(sums, query_start, n_queries, base)
        if key_ranges is None:
            return totals
        # A query's range cuts at most the sub-tiles holding its ends: those two get their kept
        # keys' sums (differences of running sums: the key factors grow along a sub-tile, so
        # taking the cut-off part off the total instead would cancel), the ones outside none.
        lo = np.clip(np.asarray(key_ranges[0]) - key_start, 0, padded)
        hi = np.clip(np.asarray(key_ranges[1]) - key_start, lo, padded)
        first, last = lo // array_size, -(-hi // array_size)   # sub-tiles first...last - 1
        tile = np.arange(n_sub)[:, None]
        totals *= ((tile >= first) & (tile < last))[:, :, None]
        cut = first < last
        head = np.where(cut, first, 0)
        tail = np.where(cut, last - 1, 0)
        # Running sums of the few sub-tiles that hold a range's end.
        ends, where = np.unique(np.concatenate([head, tail]), return_inverse=True)
        if running_tiles is not None:
            running = running_tiles[ends]
        else:
            running = np.zeros((len(ends), array_size + 1, sums.shape[1]), dtype=self.dtype)
            np.cumsum(by_tile[ends], axis=1, out=running[:, 1:])

        def local(position, tile):   # within the sub-tile (clipped: uncut queries too)
            return np.clip(position - tile * array_size, 0, counts[tile])

        h, t = where[:n_queries], where[n_queries:]
        kept = np.stack([
            running[h, local(hi, head)] - running[h, local(lo, head)],
            running[t, local(hi, tail)] - running[t, local(lo, tail)],
        ]) * cut[None, :, None]
        kept = self._weigh_row_terms(kept, query_start, base)
        queries = np.arange(n_queries)
        totals[head[cut], queries[cut]] = kept[0][cut]
        totals[tail[cut], queries[cut]] = kept[1][cut]
        return totals

    def _block_running_sums(self, key_start: int, n_sub: int, array_size: int) -> np.ndarray:
        """(n_sub, array_size + 1, N): running sums along each sub-tile of the key features
        based at token 0, for the sub-tiles from `key_start` (zero past the sequence); the
        whole sequence's are built once per array."""
        cached = self._running_sums
        if cached is None or cached[0] != array_size:
            keys = self._key_features(0, self.n_tokens, 0)
            n_tiles = -(-self.n_tokens // array_size)
            padded = np.zeros((n_tiles * array_size, keys.shape[1]), dtype=self.dtype)
            padded[:self.n_tokens] = keys
            running = np.zeros((n_tiles, array_size + 1, keys.shape[1]), dtype=self.dtype)
            np.cumsum(padded.reshape(n_tiles, array_size, -1), axis=1, out=running[:, 1:])
            with self._lock:
                self._running_sums = cached = (array_size, running)
        running = cached[1]
        first = key_start // array_size
        if first + n_sub <= running.shape[0]:
            return running[first:first + n_sub]
        block = np.zeros((n_sub,) + running.shape[1:], dtype=self.dtype)
        held = running[first:]
        block[:len(held)] = held
        return block

    def _weigh_sums(self, sums: np.ndarray, query_start: int, n_queries: int, base: int
                    ) -> np.ndarray:
        """`_weigh_row_terms` of sums every query shares, (sub, N) -> (sub, query, head_dim):
        one small product of the queries' decay scales with the sums, not a pass over a
        (sub, query, N) broadcast."""
        n_sub = sums.shape[0]
        if self._single_feature() and self.terms[0].feature is not None:
            return np.repeat(sums[:, None, :], n_queries, axis=1)
        scales = self._query_scales(query_start, n_queries, base)
        weights = np.stack([np.ones(n_queries, self.dtype) if s is None else s
                            for s in scales], axis=1)   # (query, terms)
        # Per term: (sub, head_dim); a constant term's one column stands for every cell.
        per_term = np.empty((len(self.terms), n_sub, self.head_dim), dtype=self.dtype)
        col = 0
        for index, term in enumerate(self.terms):
            width = 1 if term.constant is not None else self.head_dim
            per_term[index] = sums[:, col:col + width]
            col += width
        out = weights @ per_term.reshape(len(self.terms), -1)   # (query, sub * head_dim)
        return out.reshape(n_queries, n_sub, self.head_dim).transpose(1, 0, 2)   # a view

    def _weigh_row_terms(self, products: np.ndarray, query_start: int, base: int) -> np.ndarray:
        """sum_m scale_m[t] P_m[s, t, :] from the per-term products P (sub, query, N) of the
        key features based at `base` (see _key_features), giving (sub, query, head_dim)."""
        if self._single_feature() and self.terms[0].feature is not None:
            return products
        n_sub, n_q = products.shape[:2]
        scales = self._query_scales(query_start, n_q, base)
        # A constant term can only be the m = 0 term, which comes first (one column).
        first = 1 if self.terms[0].constant is not None else 0
        n_arrays = len(self.terms) - first
        if n_arrays == 0:
            return np.repeat(products, self.head_dim, axis=2)
        weights = np.stack(
            [np.ones(n_q, self.dtype) if s is None else s for s in scales[first:]], axis=1
        )
        parts = products[:, :, first:].reshape(n_sub, n_q, n_arrays, self.head_dim)
        # One pass over the products: sum_m scale_m[t] * P_m[s, t, :].
        out = np.einsum("sqmd,qm->sqd", parts, weights)
        if first:
            out += products[:, :, :1]
        return out

    def row_charges_C(
        self, pulse_widths_s: np.ndarray, query_start: int, key_start: int, array_size: int
    ) -> np.ndarray:
        """V array: sub-tile charges A[s, t, d] = sum_{j in tile s} width[t, j] I(v[j, d], t - j).

        `pulse_widths_s` is (n_queries, n_keys) for keys key_start...; `key_start` must sit on a
        sub-tile boundary. Returns (n_subtiles, n_queries, head_dim). A stack of widths
        (n_weights, n_queries, n_keys), for the same queries, gives (n_weights, n_subtiles,
        n_queries, head_dim) from one product per sub-tile.
        """
        if key_start % array_size:
            raise ValueError("V-array blocks must start on a sub-tile boundary")
        widths = np.asarray(pulse_widths_s, dtype=self.dtype)
        if widths.ndim == 2:
            return self.row_charges_C(widths[None], query_start, key_start, array_size)[0]
        n_w, n_q, n_k = widths.shape
        n_sub = -(-n_k // array_size)
        padded = n_sub * array_size
        if padded != n_k:
            widths = np.concatenate(
                [widths, np.zeros((n_w, n_q, padded - n_k), dtype=self.dtype)], axis=2
            )
        key_stop = key_start + padded
        if not self.terms:
            return np.zeros((n_w, n_sub, n_q, self.head_dim), dtype=self.dtype)
        single = self._single_feature()
        base = 0 if single else self._choose_base(query_start + n_q - 1, key_start, key_stop)
        if base is None:
            return np.stack([self._row_charges_decay_matrix(w, query_start, key_start,
                                                            array_size) for w in widths])
        # (sub, weights * query, key): a view, so every weight rides in one product per tile
        tiles = (widths.reshape(n_w, n_q, n_sub, array_size).transpose(2, 0, 1, 3)
                 .reshape(n_sub, n_w * n_q, array_size))
        keys = self._key_features(key_start, key_stop, base)
        products = tiles @ keys.reshape(n_sub, array_size, -1)  # (sub, weight * query, N)
        products = products.reshape(n_sub * n_w, n_q, -1)
        out = self._weigh_row_terms(products, query_start, base)
        return out.reshape(n_sub, n_w, n_q, self.head_dim).transpose(1, 0, 2, 3)

    def _row_charges_decay_matrix(self, widths, query_start: int, key_start: int,
                                  array_size: int) -> np.ndarray:
        """`row_charges_C` of one (n_queries, padded keys) widths, for a decay too strong to
        factorise over the block's span: explicit decay matrix per power."""
        n_q, padded = widths.shape
        n_sub = padded // array_size
        key_stop = key_start + padded
        decay = self._decay_matrix(query_start, n_q, key_start, padded)
        keys = self._key_features(key_start, key_stop, None)
        out = np.zeros((n_sub, n_q, self.head_dim), dtype=self.dtype)
        col = 0
        for term in self.terms:
            weighted = widths * decay**term.power if term.power else widths
            weighted = weighted.reshape(n_q, n_sub, array_size).transpose(1, 0, 2)
            width = 1 if term.constant is not None else self.head_dim
            out += weighted @ keys[:, col : col + width].reshape(n_sub, array_size, width)
            col += width
        return out
