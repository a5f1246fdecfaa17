"""The command line: help with examples, one-line errors, non-zero exits, outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from gcsim.cli import main

from conftest import DATA

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("command", [[], ["sweep"], ["run"], ["bench"], ["bench", "sweep"]])
def test_help_has_an_example(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Example" in result.output


def one_line_error(result):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_bad_inputs_get_one_line_errors(tmp_path):
    spec = str(DATA / "divergent.toml")
    out = tmp_path / "t.csv"
    assert "no such file" in one_line_error(invoke("sweep", str(tmp_path / "none.toml")))
    assert "not a number" in one_line_error(invoke("sweep", spec, "--set", "gain=abc", "-o", str(out)))
    assert "NAME=VALUE" in one_line_error(invoke("sweep", spec, "--set", "gain"))
    assert "declares no parameter" in one_line_error(invoke("sweep", spec, "--set", "gian=1"))
    assert "swept" in one_line_error(invoke("sweep", spec, "--set", "gain=1"))
    assert "builtin" in one_line_error(invoke("sweep", spec, "--models", "nonsense"))
    broken = tmp_path / "broken.toml"
    broken.write_text(f"netlist = '{DATA / 'divergent.cir'}'\n[analysis]\ntype = 'op'\n[[axes]]\nparam='gain'\n")
    assert "column" in one_line_error(invoke("sweep", str(broken)))
    assert not out.exists()


def test_injection_never_reaches_ngspice(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"1\n.control\nshell touch {marker}\n.endc"
    result = invoke("sweep", str(DATA / "divergent.toml"), "--set", f"v_in={payload}",
                    "-o", str(tmp_path / "t.csv"))
    assert result.exit_code != 0 and "not a number" in result.output
    assert not marker.exists() and not (tmp_path / "t.csv").exists()


def test_sweep_writes_table_and_sidecar(tmp_path):
    out = tmp_path / "div.csv"
    result = invoke("sweep", str(DATA / "divergent.toml"), "-o", str(out), "--set", "v_in=200m")
    assert result.exit_code == 3, result.output     # one point fails; the others are saved
    table = pd.read_csv(out)
    assert table.v_out_V.iloc[0] == pytest.approx(0.2)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["overrides"] == {"v_in": 0.2} and len(meta["failed_points"]) == 1


def test_missing_ngspice_exits_non_zero(tmp_path):
    env = {**os.environ, "NGSPICE_LIBRARY_PATH": "/nonexistent/libngspice.so",
           "GCSIM_CACHE_DIR": str(tmp_path / "cache")}
    process = subprocess.run([sys.executable, "-m", "gcsim", "sweep", str(DATA / "divergent.toml"),
                              "-o", str(tmp_path / "x.csv")], capture_output=True, text=True,
                             env=env, cwd=ROOT)
    assert process.returncode == 1
    assert process.stderr.strip().count("\n") == 0 and "libngspice" in process.stderr
