"""Energy and latency per generated token: the model (model), where its per-operation
quantities come from (sources), the published figures (reference) and SI formatting."""

from gcsim.energy.formatting import format_si
from gcsim.energy.model import (OPERATIONS, EnergyConfig, EnergyError, Estimate, Operation,
                                Quantity, estimate, gpu_comparison, paper_comparison, sweep)
from gcsim.energy.reference import (GPU_REFERENCES, PAPER_ENERGY_PER_HEAD_J, PAPER_HEADS,
                                    PAPER_LATENCY_S, PAPER_WINDOW)
from gcsim.energy.sources import check_models, resolve, settling_from_sweep

__all__ = [
    "GPU_REFERENCES", "OPERATIONS", "PAPER_ENERGY_PER_HEAD_J", "PAPER_HEADS", "PAPER_LATENCY_S",
    "PAPER_WINDOW", "EnergyConfig", "EnergyError", "Estimate", "Operation", "Quantity",
    "check_models", "estimate", "format_si", "gpu_comparison", "paper_comparison", "resolve",
    "settling_from_sweep", "sweep",
]
