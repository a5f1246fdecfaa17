"""PyTorch twin of the array simulator (the optional `ml` extra): GainCellAttention, and the
learned scalers that bring a model's projections into the hardware's input ranges."""

from gcsim.nn.attention import AttentionSignals, GainCellAttention
from gcsim.nn.layers import GainCellSelfAttention, HardwareInputScaler

__all__ = ["AttentionSignals", "GainCellAttention", "GainCellSelfAttention",
           "HardwareInputScaler"]
