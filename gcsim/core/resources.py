"""Where gcsim's own netlists, specs and fits live, and where its cache goes.

In a source checkout they are the repository's top-level `netlists/`, `characterization/` and
`fits/` folders; an installed wheel carries the same folders as package data (`gcsim._data`),
found through importlib.resources, so a Dask worker set up with `pip install` has them too.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import platformdirs

_FOLDERS = ("netlists", "characterization", "fits")


def _data_root() -> Path:
    """The folder that holds netlists/, characterization/ and fits/."""
    installed = Path(str(importlib.resources.files("gcsim._data")))
    if (installed / "netlists").is_dir():
        return installed
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "netlists").is_dir():
        return checkout
    raise RuntimeError("gcsim's data folders (netlists/, characterization/, fits/) are neither "
                       f"installed in {installed} nor in the checkout {checkout}; reinstall gcsim")


ROOT = _data_root()
NETLISTS = ROOT / "netlists"
MODELS = NETLISTS / "models"
CHARACTERIZATION = ROOT / "characterization"
FITS_ROOT = ROOT / "fits"
# The default design's committed bundle; fits/NAME/ holds design NAME's (fits_for).
FITS = FITS_ROOT / "builtin"


def fits_for(design: str) -> Path:
    """The committed fits bundle of a shipped design (fits/NAME/)."""
    return FITS_ROOT / design


def cache_dir() -> Path:
    """The result cache: $GCSIM_CACHE_DIR, else the user's cache folder."""
    override = os.environ.get("GCSIM_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("gcsim"))
