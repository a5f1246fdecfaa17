"""Learned input scalers that bring a model's projections into the hardware's ranges, and a
self-attention layer that drops GainCellAttention into a transformer in place of softmax."""

from __future__ import annotations

import torch
from torch import nn

from gcsim.hw import OperatingPoint
from gcsim.nn.attention import GainCellAttention


class HardwareInputScaler(nn.Module):
    """y = scale[h] * x + offset[h], one learned affine map per head on (batch, heads, tokens,
    dim) inputs: what brings a projection's output into a DAC's range [lo, hi] (the DAC then
    clips what still falls outside). Initialised so that inputs of unit spread span the middle
    half of the range (two standard deviations to each end), centred on `centre`, as the
    published training code's scalers start on normalised inputs."""

    def __init__(self, heads: int, lo: float, hi: float, centre: float | None = None,
                 trainable: bool = True):
        super().__init__()
        if not hi > lo:
            raise ValueError(f"the range must satisfy lo < hi, got [{lo}, {hi}]")
        self.lo, self.hi = float(lo), float(hi)
        centre = 0.5 * (lo + hi) if centre is None else float(centre)
        self.scale = nn.Parameter(torch.full((1, heads, 1, 1), (hi - lo) / 4.0),
                                  requires_grad=trainable)
        self.offset = nn.Parameter(torch.full((1, heads, 1, 1), centre), requires_grad=trainable)

    @classmethod
    def for_queries(cls, heads: int, **kwargs) -> HardwareInputScaler:
        """Queries: pulse fractions in [0, 1]."""
        return cls(heads, 0.0, 1.0, **kwargs)

    @classmethod
    def for_stored(cls, heads: int, point: OperatingPoint, **kwargs) -> HardwareInputScaler:
        """Keys or values: stored voltages over the operating point's range, centred on the
        mid-rail the signed weights are read about."""
        return cls(heads, point.stored_min_V, point.stored_max_V, centre=point.mid_rail_V,
                   **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale.to(x.dtype) * x + self.offset.to(x.dtype)

    def extra_repr(self) -> str:
        return f"heads={self.scale.shape[1]}, range=[{self.lo:g}, {self.hi:g}]"


class GainCellSelfAttention(nn.Module):
    """Multi-head causal self-attention whose attention runs on gain-cell arrays: (batch,
    tokens, d_model) -> (batch, tokens, d_model).

    x -> q, k, v projections -> per-head normalisation (no affine: the scalers are the affine
    part) -> HardwareInputScaler into [0, 1] and the stored range -> `attention` (a
    GainCellAttention) -> a learned gain per head -> output projection. The normalisation keeps
    the projections' spread near one, which is what the scalers' initialisation assumes.
    """

    def __init__(self, d_model: int, heads: int, attention: GainCellAttention,
                 bias: bool = False, normalize: bool = True):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
        self.d_model, self.heads, self.head_dim = d_model, heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.norm = (nn.LayerNorm(self.head_dim, elementwise_affine=False) if normalize
                     else nn.Identity())
        point = attention.operating_point
        self.q_scaler = HardwareInputScaler.for_queries(heads)
        self.k_scaler = HardwareInputScaler.for_stored(heads, point)
        self.v_scaler = HardwareInputScaler.for_stored(heads, point)
        self.output_gain = nn.Parameter(torch.ones(1, heads, 1, 1))
        self.attention = attention
        # The arrays' per-cell mismatch (when the attention has a seed) is drawn for these heads
        # now, so a state_dict carries it from the start.
        attention.draw_cells(heads, self.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_tokens, _ = x.shape
        q, k, v = (self.norm(part.view(batch, n_tokens, self.heads, self.head_dim)
                             .transpose(1, 2))
                   for part in self.qkv(x).split(self.d_model, dim=-1))
        y = self.attention(self.q_scaler(q), self.k_scaler(k), self.v_scaler(v))
        y = (self.output_gain.to(y.dtype) * y).transpose(1, 2).reshape(batch, n_tokens,
                                                                       self.d_model)
        return self.out(y.to(x.dtype))
