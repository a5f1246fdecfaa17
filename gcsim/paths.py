"""Where gcsim's own netlists, specs and fits live, and where its cache goes."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ROOT = Path(__file__).resolve().parent.parent
NETLISTS = ROOT / "netlists"
MODELS = NETLISTS / "models"
CHARACTERIZATION = ROOT / "characterization"
FITS = ROOT / "fits"


def cache_dir() -> Path:
    """The result cache: $GCSIM_CACHE_DIR, else the user's cache folder."""
    override = os.environ.get("GCSIM_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("gcsim"))
