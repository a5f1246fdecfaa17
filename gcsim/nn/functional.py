"""The torch twin's differentiable pieces: straight-through rounding and clipping, np.interp's
piecewise-linear tables, the gain cell's features per decay power (GainCellArray's expansion),
and the two array products against a dense decay matrix per power."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch


class _RoundToGrid(torch.autograd.Function):
    """step * round(x / step) forward (the published quantiser, gcsim.core.quantize), identity
    backward: the straight-through estimator of the published training code."""

    @staticmethod
    def forward(ctx, x, step):
        return torch.round(x / step) * step

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _ClampStraightThrough(torch.autograd.Function):
    """clamp forward, identity backward."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def quantize(x: torch.Tensor, lo: float, hi: float, levels: int) -> torch.Tensor:
    """gcsim.core.quantize in torch: step * round(x / step), step = (hi - lo) / (levels - 1)
    (a grid through zero), with a straight-through gradient."""
    if levels < 2:
        raise ValueError(f"quantisation needs at least 2 levels, got {levels}")
    return _RoundToGrid.apply(x, (hi - lo) / (levels - 1))


def clip(x: torch.Tensor, lo: float, hi: float, straight_through: bool = False) -> torch.Tensor:
    """Clamp to [lo, hi]; the gradient is zero outside (a hard clamp, as the published training
    code's torch.clamp) unless `straight_through`, then it passes unchanged."""
    if straight_through:
        return _ClampStraightThrough.apply(x, lo, hi)
    return torch.clamp(x, lo, hi)


def interp(x: torch.Tensor, xp, fp) -> torch.Tensor:
    """np.interp(x, xp, fp) in torch (xp increasing; held constant beyond its ends), with the
    piecewise slope as gradient."""
    xp_t = torch.as_tensor(np.asarray(xp, dtype=np.float64), dtype=x.dtype, device=x.device)
    fp_t = torch.as_tensor(np.asarray(fp, dtype=np.float64), dtype=x.dtype, device=x.device)
    n = xp_t.numel()
    if n == 1:
        return fp_t[0] + 0.0 * x
    j = (torch.searchsorted(xp_t, x.detach().contiguous(), right=True) - 1).clamp(0, n - 2)
    x0, y0 = xp_t[j], fp_t[j]
    slope = (fp_t[j + 1] - y0) / (xp_t[j + 1] - x0)
    y = slope * (x - x0) + y0
    y = torch.where(x < xp_t[0], fp_t[0], y)
    return torch.where(x >= xp_t[-1], fp_t[-1], y)


class CellFeatures(NamedTuple):
    """One array's cells as the products take them: I = sum over `powers` m of F_m e^m, with
    e = exp(-decay_factor * age); `values` (..., T, len(powers), D) holds F_m."""

    powers: list[int]
    values: torch.Tensor


def _power_table(x: torch.Tensor, degree: int) -> torch.Tensor:
    """(..., degree + 1): 1, x, x^2, ... by repeated multiplication."""
    table = [torch.ones_like(x), x]
    for _ in range(degree - 1):
        table.append(table[-1] * x)
    return torch.stack(table[:degree + 1], dim=-1)


def _taylor_matrix(a: np.ndarray, degree: int) -> np.ndarray:
    """M[k, m] = a_(m+k) binom(m + k, m): the m-th Taylor coefficient of sum_i a_i x^i at u is
    sum_k M[k, m] u^k (gcsim.hw.stages._derivative_coefficient)."""
    matrix = np.zeros((degree + 1, degree + 1))
    for m in range(degree + 1):
        for k in range(degree + 1 - m):
            matrix[k, m] = a[m + k] * math.comb(m + k, m)
    return matrix


def cell_features(written_V: torch.Tensor, polynomials, v_mid_V: float, decay_factor: float,
                  asymptote_V, gain: torch.Tensor | None = None,
                  shift_V: torch.Tensor | None = None) -> list[CellFeatures]:
    """The cells' current (or conductance) I = sum_i a_i x^i, x = V - v_mid + shift, for each
    coefficient vector a in `polynomials`, with V decaying from `written_V` (..., T, D) to
    `asymptote_V` as V_inf + b e, regrouped in powers of e = exp(-decay_factor * age) as
    gcsim.hw.stages.GainCellArray does: I = gain * sum_m F_m e^m with
    F_m = b^m sum_{i>=m} a_i binom(i, m) u^(i-m), b = V - V_inf, u = V_inf - v_mid + shift.
    Terms whose coefficient is exactly zero for every cell are left out. Without decay, one
    term m = 0: the current at the written voltage. The polynomials share the power tables."""
    coefficients = [np.asarray(a, dtype=np.float64) for a in polynomials]
    degree = max(len(a) for a in coefficients) - 1
    padded = [np.pad(a, (0, degree + 1 - len(a))) for a in coefficients]
    out = []
    if decay_factor == 0.0:
        x = written_V - v_mid_V if shift_V is None else written_V - v_mid_V + shift_V
        table = _power_table(x, degree)
        for a in padded:
            current = torch.matmul(table, torch.as_tensor(a, dtype=x.dtype, device=x.device))
            current = current if gain is None else current * gain
            out.append(CellFeatures([0], current.unsqueeze(-2)))
        return out
    b = written_V - asymptote_V
    u = asymptote_V - v_mid_V
    if shift_V is not None:
        u = u + shift_V
    b_table = _power_table(b, degree)          # (..., T, D, degree + 1)
    u_table = _power_table(u, degree) if torch.is_tensor(u) else None
    for a in padded:
        taylor = _taylor_matrix(a, degree)
        if u_table is None:   # one u for every cell: the coefficients are numbers
            g = np.polynomial.polynomial.polyval(float(u), taylor)   # (degree + 1,) per m
            powers = [m for m in range(degree + 1) if g[m] != 0.0]   # e.g. linear: m = 1
            values = b_table[..., powers] * torch.as_tensor(g[powers], dtype=b.dtype,
                                                            device=b.device)
        else:
            powers = list(range(degree + 1))
            g = torch.matmul(u_table, torch.as_tensor(taylor, dtype=b.dtype, device=b.device))
            values = g * b_table
        if gain is not None:
            values = values * gain.unsqueeze(-1)
        out.append(CellFeatures(powers, values.transpose(-1, -2)))
    return out


class DecayPowers:
    """exp(-m f (t - j)) for query t, key j and the powers m = 0...M: either factorised, as
    query scales exp(-m f t) (M + 1, T) and key scales exp(m f j) (M + 1, K) that ride on the
    products' operands (the simulator's global base; each factor stays within exp(+-limit)),
    or dense, (M + 1, T, K), for a decay too strong to factorise over the sequence."""

    def __init__(self, query_scales=None, key_scales=None, dense=None):
        self.query_scales, self.key_scales, self.dense = query_scales, key_scales, dense

    @property
    def factorised(self) -> bool:
        return self.dense is None

    def keys(self, n_keys: int) -> DecayPowers:
        """The same decay against the first `n_keys` keys."""
        if self.factorised:
            return DecayPowers(self.query_scales, self.key_scales[:, :n_keys])
        return DecayPowers(dense=self.dense[:, :, :n_keys])

    def powers(self, powers: list[int]) -> DecayPowers:
        if self.factorised:
            return DecayPowers(self.query_scales[powers], self.key_scales[powers])
        return DecayPowers(dense=self.dense[powers])


class _ColumnProduct(torch.autograd.Function):
    """The K array's product against a dense decay: S[..., t, j] = sum_m (W @ F_m^T)[..., t, j]
    * decay[m, t, j]. widths W (..., T, D), features F (..., J, M, D), decay (M, T, J) a
    constant. Backward recomputes from W, F and the decay instead of keeping an (T, J) product
    per power."""

    @staticmethod
    def forward(ctx, widths, features, decay):
        out = None
        for m in range(features.shape[-2]):
            term = torch.matmul(widths, features[..., m, :].transpose(-1, -2)) * decay[m]
            out = term if out is None else out + term
        ctx.save_for_backward(widths, features, decay)
        return out

    @staticmethod
    def backward(ctx, grad):
        widths, features, decay = ctx.saved_tensors
        grad_w = grad_f = None
        need_w, need_f = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if need_f:
            grad_f = torch.empty_like(features)
        for m in range(features.shape[-2]):
            g = grad * decay[m]
            if need_w:
                term = torch.matmul(g, features[..., m, :])
                grad_w = term if grad_w is None else grad_w + term
            if need_f:
                grad_f[..., m, :] = torch.matmul(g.transpose(-1, -2), widths)
        return grad_w, grad_f, None


class _FactorisedColumnProduct(torch.autograd.Function):
    """The K array's product with the decay factorised: one product for every power,
    [W q_0 | W q_1 | ...] @ [F_0 k_0 | F_1 k_1 | ...]^T, with q_m = exp(-m f t) and
    k_m = exp(m f j) constants. widths W (..., T, D), features F (..., J, M, D), query_scales
    (M, T), key_scales (M, J). Backward rebuilds the scaled operands from W and F rather than
    keeping the queries' side, M times the widths."""

    @staticmethod
    def forward(ctx, widths, features, query_scales, key_scales):
        ctx.save_for_backward(widths, features, query_scales, key_scales)
        queries, keys = _scaled_operands(widths, features, query_scales, key_scales)
        return torch.matmul(queries, keys.transpose(-1, -2))

    @staticmethod
    def backward(ctx, grad):
        widths, features, query_scales, key_scales = ctx.saved_tensors
        queries, keys = _scaled_operands(widths, features, query_scales, key_scales)
        grad_w = grad_f = None
        if ctx.needs_input_grad[0]:
            grad_q = torch.matmul(grad, keys).unflatten(-1, features.shape[-2:])
            grad_w = (grad_q * query_scales.T.unsqueeze(-1)).sum(dim=-2)
        if ctx.needs_input_grad[1]:
            grad_k = torch.matmul(grad.transpose(-1, -2), queries)
            grad_f = grad_k.unflatten(-1, features.shape[-2:]) * key_scales.T.unsqueeze(-1)
        return grad_w, grad_f, None, None


def _scaled_operands(widths, features, query_scales, key_scales):
    """(..., T, M D) widths times each power's query scale, (..., J, M D) features times its
    key scale."""
    queries = (widths.unsqueeze(-2) * query_scales.T.unsqueeze(-1)).flatten(-2)
    keys = (features * key_scales.T.unsqueeze(-1)).flatten(-2)
    return queries, keys


def column_product(widths: torch.Tensor, cells: CellFeatures,
                   decay: DecayPowers) -> torch.Tensor:
    """sum over the cells' powers m of (widths @ F_m^T) * exp(-m f (t - j)): each key column's
    charge from the query pulses (..., T, D) on its rows, (..., T, J)."""
    features = cells.values
    decay = decay.powers(cells.powers)
    widths = widths.expand(features.shape[:-3] + widths.shape[-2:])
    if not decay.factorised:
        return _ColumnProduct.apply(widths, features, decay.dense)
    return _FactorisedColumnProduct.apply(widths, features, decay.query_scales,
                                          decay.key_scales)


def column_totals(cells: CellFeatures, decay: DecayPowers) -> torch.Tensor:
    """`column_product` with every width 1: each key column's sum over its cells at each
    query's ages, (..., T, J)."""
    decay = decay.powers(cells.powers)
    sums = cells.values.sum(dim=-1).transpose(-1, -2)   # (..., M, J)
    if decay.factorised:
        return torch.matmul(decay.query_scales.T, sums * decay.key_scales)
    return (decay.dense * sums.unsqueeze(-2)).sum(dim=-3)


class _RowProduct(torch.autograd.Function):
    """The V array's product per sub-tile of `array_size` keys against a dense decay:
    Y[..., s, t, d] = sum_m sum_a (P * decay[m])[..., t, s A + a] F_m[..., s A + a, d].

    pulses P (..., T, K), features F (..., K, M, D), decay (M, T, K) a constant, K a whole
    number of sub-tiles. Backward recomputes each power's weighted pulses."""

    @staticmethod
    def forward(ctx, pulses, features, decay, array_size):
        out = None
        n_sub = pulses.shape[-1] // array_size
        for m in range(features.shape[-2]):
            weighted = _tiles(pulses * decay[m], n_sub, array_size)     # (..., s, T, A)
            f = features[..., m, :].unflatten(-2, (n_sub, array_size))   # (..., s, A, D)
            term = torch.matmul(weighted, f)
            out = term if out is None else out + term
        ctx.save_for_backward(pulses, features, decay)
        ctx.array_size = array_size
        return out

    @staticmethod
    def backward(ctx, grad):
        pulses, features, decay = ctx.saved_tensors
        a_size = ctx.array_size
        n_sub = pulses.shape[-1] // a_size
        need_p, need_f = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_p = grad_f = None
        if need_f:
            grad_f = torch.empty(torch.broadcast_shapes(
                features.shape, grad.shape[:-3] + features.shape[-3:]),
                dtype=features.dtype, device=features.device)
        for m in range(features.shape[-2]):
            f = features[..., m, :].unflatten(-2, (n_sub, a_size))   # (..., s, A, D)
            if need_p:
                g = torch.matmul(grad, f.transpose(-1, -2))   # (..., s, T, A)
                g = g.transpose(-3, -2).flatten(-2) * decay[m]   # (..., T, K)
                grad_p = g if grad_p is None else grad_p + g
            if need_f:
                weighted = _tiles(pulses * decay[m], n_sub, a_size)   # (..., s, T, A)
                grad_f[..., m, :] = torch.matmul(weighted.transpose(-1, -2),
                                                 grad).flatten(-3, -2)
        if need_p:
            grad_p = _sum_to(grad_p, pulses.shape)
        if need_f:
            grad_f = _sum_to(grad_f, features.shape)
        return grad_p, grad_f, None, None


def _tiles(x: torch.Tensor, n_sub: int, array_size: int) -> torch.Tensor:
    """(..., T, K) -> (..., n_sub, T, array_size): the keys cut into sub-tiles."""
    return x.unflatten(-1, (n_sub, array_size)).transpose(-3, -2)


def _sum_to(x: torch.Tensor, shape) -> torch.Tensor:
    """A broadcast gradient summed back to an input's shape."""
    if x.shape == shape:
        return x
    lead = x.dim() - len(shape)
    x = x.sum(dim=tuple(range(lead))) if lead else x
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return x.sum(dim=dims, keepdim=True) if dims else x


def row_product(pulses: torch.Tensor, cells: CellFeatures, decay: DecayPowers,
                array_size: int) -> torch.Tensor:
    """sum over the cells' powers m of each sub-tile's (pulses * exp(-m f (t - j))) @ F_m: the
    V columns' charge per sub-tile, (..., n_sub, T, D). `pulses` (..., T, K) and the cells'
    K keys (zero rows past the sequence) are a whole number of sub-tiles."""
    features = cells.values
    decay = decay.powers(cells.powers)
    if not decay.factorised:
        return _RowProduct.apply(pulses, features, decay.dense, array_size)
    n_sub = pulses.shape[-1] // array_size
    n_terms, head_dim = features.shape[-2:]
    # Each sub-tile: pulses (T, A) @ [F_0 k_0 | F_1 k_1 | ...] (A, M D), then the query scales
    # weigh the powers' columns.
    keys = (features * decay.key_scales.T.unsqueeze(-1)).flatten(-2)   # (..., K, M D)
    products = torch.matmul(_tiles(pulses, n_sub, array_size),
                            keys.unflatten(-2, (n_sub, array_size)))   # (..., s, T, M D)
    products = products.unflatten(-1, (n_terms, head_dim))
    return (products * decay.query_scales.T.unsqueeze(-1)).sum(dim=-2)
