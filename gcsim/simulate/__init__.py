"""NumPy array simulator: attention heads run through behavioural gain-cell array models.

Modes: `ideal` (softmax), `linear`, `paper` (the published model) and `fitted` (a fits bundle).
"""

from gcsim.simulate.attention import (
    MODES,
    AttentionResult,
    SimulationConfig,
    compare_outputs,
    ideal_attention,
    simulate_attention,
)
from gcsim.hw import (
    PAPER,
    CellMismatch,
    ExponentialDecay,
    FitsBundleError,
    HardwareModel,
    PolynomialCell,
    PublishedConstants,
    fitted_model_from_paper_coefficients,
    linear_model,
    load_fitted_models,
    model_for_mode,
    paper_model,
)
from gcsim.hw.stages import (
    ChargeToPulse,
    GainCellArray,
    InputDAC,
    Readout,
    SignedConverter,
    quantize,
    query_pulse_width_s,
)
from gcsim.simulate.windows import subtile_sum, window_mask

__all__ = [
    "MODES", "PAPER", "AttentionResult", "CellMismatch", "ChargeToPulse", "ExponentialDecay",
    "FitsBundleError", "GainCellArray", "HardwareModel", "InputDAC", "PolynomialCell",
    "PublishedConstants", "Readout", "SignedConverter", "SimulationConfig", "compare_outputs",
    "fitted_model_from_paper_coefficients", "ideal_attention", "linear_model",
    "load_fitted_models", "model_for_mode", "paper_model", "quantize", "query_pulse_width_s",
    "simulate_attention", "subtile_sum", "window_mask",
]  # fmt: skip
