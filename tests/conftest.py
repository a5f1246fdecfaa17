"""Shared fixtures: every test gets its own result cache, so no run depends on another's."""

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GCSIM_CACHE_DIR", str(cache))
    return cache
