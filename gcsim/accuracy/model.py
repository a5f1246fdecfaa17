"""A small decoder-only transformer whose attention is pluggable: softmax for training, the
gain-cell twin (behind learned scalers) for evaluation and adaptation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ModelConfig:
    vocab: int
    seq_len: int
    layers: int = 2
    heads: int = 2
    head_dim: int = 64  # one head fills a 64-row array
    mlp_ratio: int = 2
    window: int | None = None  # sliding window in tokens; None: the whole sequence
    # Queries, keys and values also see the previous token (a causal convolution of width 2,
    # as in H3 and Based): associative recall then needs one attention layer, not an induction
    # circuit of two, and trains in minutes on a CPU.
    token_shift: bool = True

    @property
    def width(self) -> int:
        return self.heads * self.head_dim

    def describe(self) -> dict:
        return asdict(self)


def window_mask(n_tokens: int, window: int, device=None) -> torch.Tensor:
    """(T, T) bool, True where query t may read key j: t - window < j <= t."""
    t = torch.arange(n_tokens, device=device)
    age = t[:, None] - t[None, :]
    return (age >= 0) & (age < window)


class SoftmaxCore(nn.Module):
    """Softmax attention over a causal sliding window, softmax(q k^T / sqrt(D)) v."""

    kind = "softmax"

    def __init__(self, window: int):
        super().__init__()
        self.window = window

    def forward(self, q, k, v):
        mask = window_mask(q.shape[-2], self.window, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Attention(nn.Module):
    """Multi-head attention whose core (q, k, v) -> out, each (B, H, T, D), is swappable."""

    def __init__(self, config: ModelConfig, core: nn.Module):
        super().__init__()
        self.heads, self.head_dim = config.heads, config.head_dim
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.qkv_shift = (nn.Linear(config.width, 3 * config.width, bias=False)
                          if config.token_shift else None)
        self.proj = nn.Linear(config.width, config.width)
        self.core = core
        self.record = False   # keep the last q, k, v and core output (calibration, checks)
        self.recorded: dict[str, torch.Tensor] = {}

    def forward(self, x):
        B, T, _ = x.shape
        qkv = self.qkv(x)
        if self.qkv_shift is not None:
            qkv = qkv + self.qkv_shift(F.pad(x, (0, 0, 1, -1)))   # x[t - 1], zero at t = 0
        q, k, v = qkv.view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = self.core(q, k, v)
        if self.record:
            self.recorded = {"q": q.detach(), "k": k.detach(), "v": v.detach(),
                             "out": out.detach()}
        return self.proj(out.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, core: nn.Module):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.width)
        self.attn = Attention(config, core)
        self.ln2 = nn.LayerNorm(config.width)
        hidden = config.mlp_ratio * config.width
        self.mlp = nn.Sequential(nn.Linear(config.width, hidden), nn.GELU(),
                                 nn.Linear(hidden, config.width))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """Token and learned position embeddings, pre-norm blocks, a linear read-out."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        window = config.window or config.seq_len
        self.embed = nn.Embedding(config.vocab, config.width)
        self.position = nn.Embedding(config.seq_len, config.width)
        self.blocks = nn.ModuleList(Block(config, SoftmaxCore(window))
                                    for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab)
        self.apply(self._init)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def attentions(self) -> list[Attention]:
        return [block.attn for block in self.blocks]

    def set_cores(self, cores) -> None:
        """Replace every layer's attention core (one per layer, in order)."""
        cores = list(cores)
        if len(cores) != len(self.blocks):
            raise ValueError(f"{len(cores)} cores for {len(self.blocks)} layers")
        for attention, core in zip(self.attentions, cores):
            attention.core = core

    def cores(self) -> list[nn.Module]:
        return [attention.core for attention in self.attentions]

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.embed(tokens) + self.position(torch.arange(T, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())



class Scaler(nn.Module):
    """a * x + b with one (a, b) per head: the published method's range scaler, for the inputs
    and the output alike. gcsim.nn.HardwareInputScaler is the same map on a plain gain; this
    one keeps log a (a > 0), so that training moves the gain by ratios: the calibrated gains
    run from about 0.2 (inputs) to 30 (sky130's output) and one learning rate must suit all."""

    def __init__(self, heads: int, a: float = 1.0, b: float = 0.0):
        super().__init__()
        self.log_a = nn.Parameter(torch.full((1, heads, 1, 1), math.log(a)))
        self.b = nn.Parameter(torch.full((1, heads, 1, 1), float(b)))

    @property
    def a(self) -> torch.Tensor:
        return self.log_a.exp()

    @torch.no_grad()
    def set(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.log_a.copy_(a.clamp(min=1e-30).log())
        self.b.copy_(b)

    def forward(self, x):
        return self.a * x + self.b


class HardwareCore(nn.Module):
    """Attention on the gain-cell twin (gcsim.nn.GainCellAttention) behind learned scalers:
    queries into [0, 1], keys and values into the DAC's stored range about the mid-rail; the
    output, in counter units (each array's in [-1, 1]), is scaled back after."""

    kind = "hardware"

    def __init__(self, twin: nn.Module, heads: int):
        super().__init__()
        point = twin.operating_point
        self.twin = twin
        self.q_scaler = Scaler(heads, 1.0, 0.0)
        self.k_scaler = Scaler(heads, 1.0, point.mid_rail_V)
        self.v_scaler = Scaler(heads, 1.0, point.mid_rail_V)
        self.out_scaler = Scaler(heads, 1.0, 0.0)
        self.record = False   # keep each scaled tensor (calibration statistics, checks)
        self.recorded: dict[str, torch.Tensor] = {}

    @property
    def scalers(self) -> dict[str, Scaler]:
        return {"q": self.q_scaler, "k": self.k_scaler, "v": self.v_scaler,
                "out": self.out_scaler}

    def hardware_inputs(self, q, k, v):
        """q, k, v as the twin receives them (before its DACs clip and quantise)."""
        return self.q_scaler(q), self.k_scaler(k), self.v_scaler(v)

    def forward(self, q, k, v):
        qh, kh, vh = self.hardware_inputs(q, k, v)
        counts = self.twin(qh, kh, vh).to(q.dtype)
        out = self.out_scaler(counts)
        if self.record:
            self.recorded = {"q": qh.detach(), "k": kh.detach(), "v": vh.detach(),
                             "out": out.detach()}
        return out
