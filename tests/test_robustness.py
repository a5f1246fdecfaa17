"""Robustness catalogue, part 1: bad input. Every case ends in one `Error: ...` line and a
non-zero exit, with no traceback (unless --debug), before any netlist is written, and leaves
no output file behind. The README's "Robustness" table lists the same cases.

Faults during a run (non-convergence, crashes, signals, a damaged cache, a full disk) are in
test_robustness_faults.py.
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gcsim.spice import engine
from gcsim.core import resources
from gcsim.cli import main
from gcsim.fit import schema

TEMPLATE = """\
* robust.cir: a tiny testbench for the robustness tests (no solution at gain = 1)
.param gain=0.5 v_in=0.1 r_load=1k c_load=1p
VIN in 0 {v_in}
E1 out in out 0 {gain}
R1 out 0 {r_load}
C1 out 0 {c_load}
.options gminsteps=0 srcsteps=0 noopiter
.op
.end
"""

SPEC = """\
netlist = "robust.cir"
[analysis]
type = "op"
batch = 8
[[axes]]
param = "gain"
column = "gain_1"
values = [0.0, 0.5, 1.0, 2.0, 3.0]
[[measure]]
column = "v_out_V"
vector = "v(out)"
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, code=1):
    """The single `Error:` line of a failed command (asserts there is nothing else)."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert len(lines[0]) < 600, lines[0]     # long input is cut, not echoed whole
    return lines[0]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with the tiny template and its spec; running a netlist is a test failure."""
    (tmp_path / "robust.cir").write_text(TEMPLATE)
    (tmp_path / "robust.toml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)

    def no_ngspice(*args, **kwargs):
        raise AssertionError("bad input reached ngspice")

    monkeypatch.setattr(engine, "run_many", no_ngspice)
    monkeypatch.setattr(engine, "ngspice_version", lambda: "ngspice-test")   # no netlist
    return tmp_path


def nothing_written(folder: Path):
    names = {p.name for p in folder.iterdir()} - {"robust.cir", "robust.toml", "cache"}
    assert not {n for n in names if n.endswith((".csv", ".parquet", ".json", ".tmp"))}, names


def spec_with(folder: Path, text: str) -> Path:
    path = folder / "case.toml"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- spec files
SPEC_CASES = {
    "malformed TOML": ("netlist = [unclosed\n", "not valid TOML"),
    "unknown top-level key": ("colour = 'red'\n" + SPEC, "colour: unknown key"),
    "unknown axis key": (SPEC.replace('param = "gain"', 'param = "gain"\nstep = 1'),
                         "axes[0].step: unknown key"),
    "missing netlist": (SPEC.replace("robust.cir", "nowhere.cir"), "'nowhere.cir' not found"),
    "no netlist key": (SPEC.replace('netlist = "robust.cir"', ""), "netlist: required"),
    "undeclared fixed parameter": (SPEC + "[parameters]\nr_laod = 1\n",
                                   "declares no parameter 'r_laod'"),
    "undeclared swept parameter": (SPEC.replace('param = "gain"', 'param = "gian"'),
                                   "declares no parameter 'gian'"),
    "non-numeric value": (SPEC.replace("[0.0, 0.5,", '["half", 0.5,'), "is not a number"),
    "NaN (TOML literal)": (SPEC.replace("[0.0, 0.5,", "[nan, 0.5,"), "is not finite"),
    "NaN (string)": (SPEC.replace("[0.0, 0.5,", '["NaN", 0.5,'), "is not a number"),
    "infinite value": (SPEC.replace("[0.0, 0.5,", "[inf, 0.5,"), "is not finite"),
    "huge exponent": (SPEC.replace("[0.0, 0.5,", '["1e99999999999999999999", 0.5,'),
                      "out of range"),
    "boolean value": (SPEC.replace("[0.0, 0.5,", "[true, 0.5,"), "boolean"),
    "negative timeout": (SPEC.replace("batch = 8", "timeout_s = -1"), "timeout_s: must be > 0"),
    "negative batch": (SPEC.replace("batch = 8", "batch = -8"), "expected an integer >= 1"),
    "zero points": (SPEC.replace("values = [0.0, 0.5, 1.0, 2.0, 3.0]",
                                 "start = 0\nstop = 1\nnum = 0"), "expected an integer >= 1"),
    "empty value list": (SPEC.replace("[0.0, 0.5, 1.0, 2.0, 3.0]", "[]"), "non-empty list"),
    "empty range": (SPEC.replace("values = [0.0, 0.5, 1.0, 2.0, 3.0]",
                                 "start = 1\nstop = 1\nnum = 5"), "the range is empty"),
    "repeated values": (SPEC.replace("[0.0, 0.5,", "[0.5, 0.5,"), "values repeat"),
    "log scale through zero": (SPEC.replace("values = [0.0, 0.5, 1.0, 2.0, 3.0]",
                                            "start = 0\nstop = 1\nnum = 3\nscale = 'log'"),
                               "log scale needs start and stop > 0"),
    "below absolute zero": (SPEC.replace("[analysis]", "temperatures = [-300]\n[analysis]"),
                            "below absolute zero"),
    "negative transient step": (SPEC.replace('type = "op"', 'type = "tran"\nstep = -1\nstop = 1'),
                                "need 0 < step <= stop"),
    "negative resistor": (SPEC + "[parameters]\nr_load = '-1k'\n",
                          "r1 has a negative value (-1000 ohm)"),
    "negative capacitor": (SPEC + "[parameters]\nc_load = '-1p'\n",
                           "c1 has a negative value (-1e-12 F)"),
    "one axis too long": (SPEC.replace("values = [0.0, 0.5, 1.0, 2.0, 3.0]",
                                       "start = 0\nstop = 1\nnum = 5000000"),
                          "more than the 1,000,000 values one axis may have"),
    "grid too large to build": (
        SPEC + "[[axes]]\nparam = 'v_in'\ncolumn = 'v_in_V'\nstart = 0\nstop = 1\nnum = 1000\n"
        "[[axes]]\nparam = 'r_load'\ncolumn = 'r_load_ohm'\nstart = 1\nstop = 2\nnum = 10000\n",
        "50,000,000 points is more than one sweep may have"),
}


@pytest.mark.parametrize("case", SPEC_CASES)
def test_bad_spec_is_one_line(work, case):
    text, expected = SPEC_CASES[case]
    line = one_line_error(invoke("sweep", spec_with(work, text), "-o", "out.csv"))
    assert expected in line, line
    nothing_written(work)


def test_measurement_times_must_lie_in_the_transient(work):
    text = SPEC.replace('type = "op"', 'type = "tran"\nstep = "1n"\nstop = "10n"') + 'at = "20n"\n'
    line = one_line_error(invoke("sweep", spec_with(work, text), "-o", "out.csv"))
    assert "times must lie in the transient" in line


def test_a_huge_grid_needs_yes(work, monkeypatch):
    from gcsim.characterize import spec

    grid = SPEC + "[[axes]]\nparam = 'v_in'\ncolumn = 'v_in_V'\nstart = 0\nstop = 1\nnum = 400001\n"
    line = one_line_error(invoke("sweep", spec_with(work, grid), "-o", "out.csv"))
    assert "2,000,005 points" in line and "--yes" in line
    # With --yes the size check passes and the sweep starts (ngspice is refused here). The
    # threshold is lowered so that the test does not build two million points.
    monkeypatch.setattr(spec, "LARGE_SWEEP_POINTS", 4)
    line = one_line_error(invoke("sweep", work / "robust.toml", "-o", "out.csv"))
    assert "5 points (more than 4)" in line
    line = one_line_error(invoke("sweep", work / "robust.toml", "-o", "out.csv", "--yes"))
    assert "bad input reached ngspice" in line
    nothing_written(work)


# ----------------------------------------------------------------------------- injection
PAYLOADS = {
    "newline and .control shell": "1\n.control\nshell touch {marker}\n.endc",
    ".include of a path": "1\n.include /etc/passwd",
    "semicolon shell": "1;shell touch {marker}",
    "quotes": "1' .include '/etc/passwd",
    "double quotes": '"1" shell touch {marker}',
    "very long": "9" * 100_000,
    "very long garbage": "x" * 100_000,
}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injected_values_never_reach_a_netlist(work, payload):
    marker = work / "pwned"
    text = PAYLOADS[payload].format(marker=marker)
    where = [("--set", f"v_in={text}")]
    results = [invoke("sweep", work / "robust.toml", "--set", f"v_in={text}", "-o", "out.csv")]
    # The same text as a fixed parameter and as a swept value in the spec.
    toml_text = json.dumps(text)    # a valid TOML basic string
    results.append(invoke("sweep", spec_with(work, SPEC + f"[parameters]\nv_in = {toml_text}\n"),
                          "-o", "out.csv"))
    results.append(invoke("sweep", spec_with(work, SPEC.replace("[0.0, 0.5,", f"[{toml_text}, 0.5,")),
                          "-o", "out.csv"))
    for result in results:
        line = one_line_error(result)
        assert "is not a number" in line or "is not finite" in line, (where, line)
    assert not marker.exists()
    nothing_written(work)


NAME_PAYLOADS = {
    "newline": "v_in\n.control",
    "trailing newline": "v_in\n",
    "shell": "v_in;shell touch pwned",
    "include": ".include /etc/passwd",
    "quote": "v_in'",
    "space": "v in",
    "unicode": "v_\u0131n",
    "very long": "a" * 100_000,
}


@pytest.mark.parametrize("name", NAME_PAYLOADS)
def test_injected_names_never_reach_a_netlist(work, name):
    text = NAME_PAYLOADS[name]
    key = json.dumps(text)
    attempts = {
        "[parameters] key": spec_with(work, SPEC + f"[parameters]\n{key} = 1\n"),
        "axis param": spec_with(work, SPEC.replace('param = "gain"', f"param = {key}")),
        "column": spec_with(work, SPEC.replace('column = "gain_1"', f"column = {key}")),
        "corner": spec_with(work, f"corners = [{key}]\n" + SPEC),
        "montecarlo device": spec_with(work, SPEC + "[montecarlo]\nruns = 2\nseed = 0\n"
                                       f"[montecarlo.devices.m1]\nrole = 'read_nmos'\n"
                                       f"dvth = {key}\nw = 'w'\nl = 'l'\n"),
    }
    if not text.isidentifier():     # v(NAME) is a well-formed vector for any identifier
        attempts["measure vector"] = spec_with(
            work, SPEC.replace('"v(out)"', json.dumps(f"v({text})")))
    for where, spec in attempts.items():
        result = invoke("sweep", spec, "-o", "out.csv")
        assert result.exit_code == 1, (where, result.output)
        one_line_error(result)
    if text.strip() != "v_in":      # --set strips blanks around NAME, as a shell user expects
        one_line_error(invoke("sweep", work / "robust.toml", "--set", f"{text}=1"))
    one_line_error(invoke("sweep", work / "robust.toml", "--models", f"builtin:{text}"))
    assert not (work / "pwned").exists()
    nothing_written(work)


def test_a_template_control_block_with_a_command_is_refused(tmp_path, monkeypatch):
    """A template's .control block that does more than run and plot (say, `shell`) is refused
    with its file and line before any ngspice run (it was silently dropped before; see
    tests/test_security.py for the rest of the catalogue)."""
    marker = tmp_path / "pwned"
    (tmp_path / "robust.cir").write_text(
        TEMPLATE.replace(".end\n", f".control\nshell touch {marker}\n.endc\n.end\n"))
    (tmp_path / "robust.toml").write_text(SPEC.replace("1.0, 2.0, 3.0", "2.0"))
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", "robust.toml", "-o", "out.csv", "-j", "1")
    assert result.exit_code == 1, result.output
    assert "robust.cir:" in result.output and "'shell'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


# ----------------------------------------------------------------------------- bad files
@pytest.fixture
def sweep_table(tmp_path_factory):
    """A real nonlinearity table (synthetic numbers) to damage."""
    folder = tmp_path_factory.mktemp("tables")
    v_store, v_in = np.meshgrid(np.linspace(0, 0.9, 10), np.linspace(0.45, 0.9, 4))
    table = pd.DataFrame({"stored_voltage_V": v_store.ravel(), "v_in_V": v_in.ravel(),
                          "i_out_A": 1e-5 * (v_store.ravel() - 0.45) * (v_in.ravel() - 0.45)})
    path = folder / "iv.parquet"
    table.to_parquet(path, index=False)
    return path


def damaged_tables(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    cases = {
        "corrupt": (b"PAR1" + bytes(range(256)) * 4 + b"PAR1", "cannot read it"),
        "truncated": (data[: len(data) // 2], "cannot read it"),
        "empty file": (b"", "cannot read it"),
        "text, not parquet": (b"stored_voltage_V,i_out_A\n0,1\n", "cannot read it"),
    }
    out = {}
    for name, (content, expected) in cases.items():
        path = folder / f"{name.replace(' ', '_').replace(',', '')}.parquet"
        path.write_bytes(content)
        out[name] = (path, expected)
    foreign = folder / "foreign.parquet"
    pd.DataFrame({"name": ["a", "b"], "price": [1.0, 2.0]}).to_parquet(foreign)
    out["foreign columns"] = (foreign, "needs columns")
    strings = folder / "strings.parquet"
    pd.DataFrame({"stored_voltage_V": ["x", "y"], "v_in_V": [0.9, 0.9],
                  "i_out_A": [1.0, 2.0]}).to_parquet(strings)
    out["non-numeric column"] = (strings, "non-numeric")
    nans = folder / "nans.parquet"
    pd.DataFrame({"stored_voltage_V": [0.1, math.inf], "v_in_V": [0.9, 0.9],
                  "i_out_A": [1.0, 2.0]}).to_parquet(nans)
    out["infinite value"] = (nans, "infinite")
    return out


def test_damaged_tables_are_one_line(tmp_path, sweep_table):
    for name, (path, expected) in damaged_tables(sweep_table, tmp_path).items():
        output = tmp_path / f"fit_{path.stem}.json"
        line = one_line_error(invoke("fit", "nonlinearity", path, "-o", output))
        assert expected in line, (name, line)
        assert not output.exists() and not output.with_suffix(".png").exists()


def fit_file_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    good = json.loads((resources.FITS / "nonlinearity.json").read_text())
    text = (resources.FITS / "nonlinearity.json").read_text()
    newer = dict(good, schema_version=schema.SCHEMA_VERSION + 1)
    nan = json.loads(text)
    nan["parameters"]["coefficients"]["value"][0] = "NaN"
    cases = {
        "truncated": (text[: len(text) // 2], "not valid JSON"),
        "not JSON": ("\x00\x01binary", "not valid JSON"),
        "empty": ("", "not valid JSON"),
        "foreign JSON": (json.dumps({"name": "something else"}), "not a gcsim fit file"),
        "a JSON list": ("[1, 2, 3]", "not a gcsim fit file"),
        "newer schema": (json.dumps(newer), "newer than this gcsim understands"),
        "parameter missing": (json.dumps(dict(good, parameters={})), "missing"),
        "non-finite parameter": (json.dumps(nan), "not a finite number"),
    }
    out = {}
    for name, (content, expected) in cases.items():
        path = folder / f"{name.replace(' ', '_')}.json"
        path.write_text(content)
        out[name] = (path, expected)
    return out


def test_damaged_fit_files_are_one_line(tmp_path):
    for name, (path, expected) in fit_file_cases(tmp_path).items():
        line = one_line_error(invoke("export", "paper-coefficients", path))
        assert expected in line, (name, line)


def test_damaged_fits_bundle_is_one_line(tmp_path):
    (tmp_path / "cases").mkdir()
    for name, (path, expected) in fit_file_cases(tmp_path / "cases").items():
        bundle = tmp_path / f"bundle_{path.stem}"
        shutil.copytree(resources.FITS, bundle)
        shutil.copy(path, bundle / "nonlinearity.json")
        line = one_line_error(invoke("simulate", "attention", "--mode", "fitted", "--fits", bundle,
                                     "--tokens", "8", "--dim", "4", "--window", "8",
                                     "--array", "4"))
        assert expected in line, (name, line)


def npy_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    def save(name, array, **kwargs):
        path = folder / f"{name}.npy"
        np.save(path, array, **kwargs)
        return path

    good = save("q_good", np.full(8, 0.5))
    truncated = folder / "q_truncated.npy"
    truncated.write_bytes(good.read_bytes()[:-20])
    garbage = folder / "q_garbage.npy"
    garbage.write_bytes(b"\x93NUMPY garbage")
    text = folder / "q_text.npy"
    text.write_text("0.5 0.5 0.5\n")
    return {
        "truncated": (truncated, "cannot read Q"),
        "garbage": (garbage, "cannot read Q"),
        "not npy": (text, "cannot read Q"),
        "object array (pickle)": (save("q_object", np.array([{"a": 1}] * 8, dtype=object),
                                       allow_pickle=True), "cannot read Q"),
        "NaN": (save("q_nan", np.full(8, np.nan)), "NaN"),
        "wrong shape": (save("q_shape", np.zeros((2, 3, 4))), "must be 1-D"),
        "strings": (save("q_strings", np.array(["a"] * 8)), "Q"),
    }


def test_damaged_npy_inputs_are_one_line(tmp_path):
    k = tmp_path / "k.npy"
    np.save(k, np.full((8, 8), 0.4))
    report = tmp_path / "report"
    for name, (path, expected) in npy_cases(tmp_path).items():
        line = one_line_error(invoke("validate", "tile", "--q", path, "--k", k, "--v", k,
                                     "--report", report))
        assert expected in line, (name, line)
    assert not report.exists()


# ----------------------------------------------------------------------------- environment
@pytest.fixture
def fresh_ngspice_probe():
    engine.ngspice_version.cache_clear()
    yield
    engine.ngspice_version.cache_clear()


@pytest.mark.parametrize("library, expected", [
    ("missing", "does not exist"),
    ("text file", "cannot load ngspice library"),
    ("folder", "cannot load ngspice library"),
    ("another library", "cannot load ngspice library"),
])
def test_ngspice_missing_or_unloadable(tmp_path, monkeypatch, fresh_ngspice_probe, library,
                                       expected):
    (tmp_path / "robust.cir").write_text(TEMPLATE)
    (tmp_path / "robust.toml").write_text(SPEC)
    fake = tmp_path / "libngspice.so"
    if library == "text file":
        fake.write_text("not a shared library\n")
    elif library == "folder":
        fake.mkdir()
    elif library == "another library":
        import ctypes.util

        found = ctypes.util.find_library("m")
        fake = Path("/lib/x86_64-linux-gnu") / found if found else None
        if not fake or not fake.exists():
            pytest.skip("no libm to load in place of ngspice")
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", str(fake))
    line = one_line_error(invoke("sweep", tmp_path / "robust.toml", "-o", tmp_path / "out.csv",
                                 "--no-cache"))
    assert expected in line and str(fake) in line, line
    assert not (tmp_path / "out.csv").exists()


# ----------------------------------------------------------------------------- --debug
def test_debug_shows_the_traceback(work):
    bad = spec_with(work, "netlist = [unclosed\n")
    quiet = one_line_error(invoke("sweep", bad))
    loud = invoke("--debug", "sweep", bad)
    assert loud.exit_code == 1
    assert "Traceback" in loud.output and loud.output.rstrip().endswith(quiet)


def test_unexpected_errors_are_one_line_too(work, monkeypatch):
    from gcsim.characterize import spec

    def broken(path):
        raise RuntimeError("something gcsim did not foresee\nsecond line")

    monkeypatch.setattr(spec, "load", broken)
    line = one_line_error(invoke("sweep", work / "robust.toml"))
    assert "internal error: RuntimeError: something gcsim did not foresee" in line
    assert "--debug" in line
    loud = invoke("--debug", "sweep", work / "robust.toml")
    assert loud.exit_code == 1 and isinstance(loud.exception, RuntimeError)
