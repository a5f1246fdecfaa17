"""Behavioural hardware models: the components (cell, decay, mismatch, readout, converters,
loading), the published model as one named object, and the model built from a fits bundle."""

from gcsim.fit.basis import degree_for_terms, polynomial_basis
from gcsim.hw.bundle import hardware_model
from gcsim.hw.components import (
    CellMismatch,
    ExponentialDecay,
    HardwareModel,
    MismatchSample,
    PolynomialCell,
    ReadDisturb,
    WriteError,
    linear_gain_A_per_V,
)
from gcsim.hw.operating import OperatingPoint
from gcsim.hw.modes import FitsBundleError, default_fits_dir, load_fitted_models, model_for_mode
from gcsim.hw.published import (
    MICROAMPERE,
    PAPER,
    PAPER_OPERATING_POINT,
    PublishedConstants,
    at_operating_point,
    fitted_model_from_paper_coefficients,
    linear_model,
    paper_cell,
    paper_model,
    published_readout_chain,
)

__all__ = [
    "MICROAMPERE", "PAPER", "PAPER_OPERATING_POINT", "CellMismatch", "ExponentialDecay", "FitsBundleError",
    "HardwareModel", "MismatchSample", "OperatingPoint", "PolynomialCell", "PublishedConstants",
    "at_operating_point", "default_fits_dir", "degree_for_terms", "fitted_model_from_paper_coefficients",
    "hardware_model", "linear_gain_A_per_V", "linear_model", "load_fitted_models",
    "model_for_mode", "paper_cell", "paper_model", "polynomial_basis", "published_readout_chain",
    "ReadDisturb", "WriteError",
]  # fmt: skip
