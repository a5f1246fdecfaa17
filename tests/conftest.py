"""Shared fixtures: every test gets its own result cache, so no run depends on another's."""

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GCSIM_CACHE_DIR", str(cache))
    return cache


def invoke(*args, **kwargs):
    """Run `gcsim ARGS...` in this process (click's test runner)."""
    from click.testing import CliRunner

    from gcsim.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def error_line(result) -> str:
    """The single `Error: ...` line of a refused command (asserts there is nothing else)."""
    assert result.exit_code not in (0, None), result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output and "internal error" not in lines[0]
    return lines[0]
