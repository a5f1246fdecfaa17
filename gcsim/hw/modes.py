"""The hardware model of each simulator mode: the published ones, or one built from a fits bundle."""

from __future__ import annotations

from pathlib import Path

from gcsim.core import resources
from gcsim.fit.bundle import load_bundle
from gcsim.fit.schema import FitFileError
from gcsim.hw.bundle import hardware_model
from gcsim.hw.components import HardwareModel
from gcsim.hw.published import linear_model, paper_model


class FitsBundleError(ValueError):
    """The fits bundle is missing or malformed."""


def default_fits_dir() -> Path | None:
    """The repository's committed bundle (fits/), when it holds one."""
    return resources.FITS if (resources.FITS / "decay.json").is_file() else None


def load_fitted_models(directory: str | Path) -> HardwareModel:
    """Build the `fitted` mode's model from a fits bundle directory (see gcsim.fit.bundle)."""
    try:
        return hardware_model(load_bundle(directory))
    except FitFileError as exc:
        raise FitsBundleError(str(exc)) from None


def model_for_mode(mode: str, fits_dir: str | Path | None = None) -> HardwareModel:
    """The hardware model of a non-ideal mode; `fitted` needs the bundle directory."""
    if mode == "paper":
        return paper_model()
    if mode == "linear":
        return linear_model()
    if mode == "fitted":
        if fits_dir is None:
            fits_dir = default_fits_dir()
            if fits_dir is None:
                raise FitsBundleError("mode 'fitted' needs a fits bundle (--fits DIR); the "
                                      "repository's fits/builtin/ holds none (run gcsim regen)")
        return load_fitted_models(fits_dir)
    raise ValueError(f"unknown mode {mode!r}; choose ideal, linear, paper or fitted")
