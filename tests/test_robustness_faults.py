"""Robustness catalogue, part 2: faults during a run, on real ngspice. A point that does not
converge or whose worker crashes is listed and the others are saved (exit 3); SIGINT or
SIGKILL mid-sweep loses only unfinished runs, and the resumed table equals an uninterrupted
one; a damaged cache entry is recomputed; a full disk keeps the previous output.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gcsim.cli import main

from test_robustness import SPEC, TEMPLATE

# 48 transient runs of about 0.06 s each (about 1.5 s on 2 workers): long enough to interrupt
# half-way even on a loaded machine.
SLOW_SPEC = """\
netlist = "gain_cell_pulse.cir"
[analysis]
type = "tran"
step = "100p"
stop = "18n"
max_step = "1n"
batch = 1
[parameters]
v_in = 0.9
t_edge = "100p"
[[axes]]
param = "v_store"
column = "stored_voltage_V"
start = 0.0
stop = 0.9
num = 8
[[axes]]
param = "t_pulse"
column = "t_pulse_s"
start = 0.0
stop = "15n"
num = 6
[[measure]]
column = "charge_C"
vector = "v(q_int)"
scale = 1e-12
"""
SLOW_RUNS = 48


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def stderr_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def work(tmp_path, monkeypatch):
    (tmp_path / "robust.cir").write_text(TEMPLATE)
    (tmp_path / "robust.toml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def listing(folder: Path) -> list[str]:
    """The files in ``folder``, but for the test's result cache."""
    return sorted(p.name for p in folder.iterdir() if p.name != "cache")


def cache_entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("runs/*/*.npz"))


# ----------------------------------------------------------------------------- failed points
def test_a_point_that_does_not_converge_is_listed(work):
    result = invoke("sweep", "robust.toml", "-o", "out.csv", "-j", "2")
    assert result.exit_code == 3, result.output
    line = stderr_line(result)
    assert "1 of 5 points failed (first: gain=1: failed:" in line and "singular matrix" in line
    assert list(pd.read_csv(work / "out.csv").gain_1) == [0.0, 0.5, 2.0, 3.0]
    failed = json.loads((work / "out.json").read_text())["failed_points"]
    assert [f["gain"] for f in failed] == [1.0] and "singular matrix" in failed[0]["message"]


def test_a_crashed_ngspice_worker_is_listed(work, monkeypatch):
    """A worker killed by a signal while ngspice loads the gain = 1 point: that point is
    reported as crashed, and the other points of its batch are rerun and saved."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared

    real_load = NgSpiceShared.load_circuit

    def crashing_load(self, text):
        if "gain=1.0" in text:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_load(self, text)

    # Workers are forked from this process, so they inherit the patched method.
    monkeypatch.setattr(NgSpiceShared, "load_circuit", crashing_load)
    result = invoke("sweep", "robust.toml", "-o", "out.csv", "-j", "2")
    assert result.exit_code == 3, result.output
    line = stderr_line(result)
    assert "1 of 5 points failed (first: gain=1: crashed: ngspice worker died" in line
    assert list(pd.read_csv(work / "out.csv").gain_1) == [0.0, 0.5, 2.0, 3.0]
    failed = json.loads((work / "out.json").read_text())["failed_points"]
    assert failed[0]["message"].startswith("crashed:") and "-9" in failed[0]["message"]


# ----------------------------------------------------------------------------- signals
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The slow sweep's table, run without interruption and without the cache."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "slow.toml").write_text(SLOW_SPEC)
    result = invoke("sweep", folder / "slow.toml", "-o", folder / "slow.parquet", "--no-cache",
                    "-j", "2")
    assert result.exit_code == 0, result.output
    return pd.read_parquet(folder / "slow.parquet")


def interrupt_mid_sweep(folder: Path, cache: Path, how: signal.Signals):
    """Start `gcsim sweep` in its own process group; once some (not all) runs are cached,
    send `how` to the group, as Ctrl-C in a terminal does, or SIGKILL to the CLI alone."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gcsim", "sweep", "slow.toml", "-o", "out.parquet", "-j", "2"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "GCSIM_CACHE_DIR": str(cache)})
    deadline = time.monotonic() + 60
    while not cache_entries(cache):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    if how == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(how)
    out, err = process.communicate(timeout=60)
    # Nothing of the run is left behind: its workers end with it (SIGINT, and SIGKILL on Linux
    # through PR_SET_PDEATHSIG; elsewhere orphans finish, find nobody to answer, and exit).
    for _ in range(200):
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("worker processes outlived the interrupted sweep")
    done = len(cache_entries(cache))
    assert 0 < done < SLOW_RUNS, f"{done} runs finished: the signal came too late to test"
    return process.returncode, out, err, done


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_interrupted_sweep_resumes_to_the_same_table(work, isolated_cache, uninterrupted, how):
    (work / "slow.toml").write_text(SLOW_SPEC)
    code, _out, err, done = interrupt_mid_sweep(work, isolated_cache, how)
    if how in (signal.SIGINT, signal.SIGTERM):   # SIGTERM, as `timeout` sends, is Ctrl-C
        assert code == 1
        assert err.strip() == ("Error: interrupted: finished runs are cached; run the same "
                               "command again to resume"), err
    else:
        assert code == -signal.SIGKILL
    # No output, half-written or otherwise, and no temporary file.
    assert listing(work) == ["robust.cir", "robust.toml", "slow.toml"]
    result = invoke("sweep", "slow.toml", "-o", "out.parquet", "-j", "2")
    assert result.exit_code == 0, result.output
    stats = json.loads((work / "out.json").read_text())["stats"]
    assert stats["cache_hits"] == done and stats["runs"] == SLOW_RUNS - done
    pd.testing.assert_frame_equal(pd.read_parquet(work / "out.parquet"), uninterrupted,
                                  check_exact=True)


# ----------------------------------------------------------------------------- damaged cache
def test_damaged_cache_entries_are_recomputed(work, isolated_cache):
    (work / "robust.toml").write_text(SPEC.replace("1.0, 2.0, 3.0", "2.0, 3.0, 4.0")
                                      .replace("batch = 8", "batch = 1"))
    first = invoke("sweep", "robust.toml", "-o", "first.csv", "-j", "2")
    assert first.exit_code == 0, first.output
    entries = cache_entries(isolated_cache)
    assert len(entries) == 5
    flipped, truncated, garbage, foreign, _intact = entries
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF           # a bit flip inside the stored array: bad CRC-32
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:100])    # a full disk or a kill mid-write
    garbage.write_bytes(b"not an npz at all")
    with open(foreign, "wb") as stream:                     # well-formed, wrong content
        np.savez(stream, something_else=np.arange(3.0))
    second = invoke("sweep", "robust.toml", "-o", "second.csv", "-j", "2")
    assert second.exit_code == 0, second.output
    assert "note: 4 damaged cache entries were found, removed and recomputed" in second.stderr
    stats = json.loads((work / "second.json").read_text())["stats"]
    assert stats["runs"] == 4 and stats["cache_hits"] == 1
    pd.testing.assert_frame_equal(pd.read_csv(work / "second.csv"), pd.read_csv(work / "first.csv"),
                                  check_exact=True)
    # The recomputed entries were stored again: a third run is all from the cache.
    third = invoke("sweep", "robust.toml", "-o", "third.csv")
    assert third.exit_code == 0 and not third.stderr
    assert json.loads((work / "third.json").read_text())["stats"]["cache_hits"] == 5


# ----------------------------------------------------------------------------- full disk
def full_disk(table, path, *args, **kwargs):
    """Write a few bytes, then fail as a full disk does."""
    with open(path, "wb") as stream:
        stream.write(b"PAR1 half a")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("part", ["table", "sidecar"])
def test_full_disk_keeps_the_previous_output(work, monkeypatch, part):
    (work / "robust.toml").write_text(SPEC.replace("1.0, 2.0, 3.0", "2.0"))
    assert invoke("sweep", "robust.toml", "-o", "out.parquet").exit_code == 0
    before = {name: (work / name).read_bytes() for name in ("out.parquet", "out.json")}
    if part == "table":
        monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    else:
        def dump(obj, stream, **kwargs):
            stream.write('{"half": ')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(json, "dump", dump)
    result = invoke("sweep", "robust.toml", "-o", "out.parquet", "--set", "v_in=0.2")
    assert result.exit_code == 1
    assert stderr_line(result).endswith("cannot write out.parquet: No space left on device")
    assert {name: (work / name).read_bytes() for name in before} == before
    assert listing(work) == ["out.json", "out.parquet", "robust.cir", "robust.toml"]


def test_full_disk_keeps_the_previous_fit(tmp_path, monkeypatch):
    v_store, v_in = np.meshgrid(np.linspace(0, 0.9, 10), np.linspace(0.45, 0.9, 4))
    table = tmp_path / "iv.csv"
    pd.DataFrame({"stored_voltage_V": v_store.ravel(), "v_in_V": v_in.ravel(),
                  "i_out_A": 1e-5 * (v_store.ravel() - 0.45) * (v_in.ravel() - 0.45)}
                 ).to_csv(table, index=False)
    output = tmp_path / "fit.json"
    assert invoke("fit", "nonlinearity", table, "-o", output).exit_code == 0
    before = output.read_bytes()
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def full(*args, **kwargs):
        handle, path = real_mkstemp(*args, **kwargs)
        os.write(handle, b'{"half": ')
        os.close(handle)
        os.unlink(path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    result = invoke("fit", "nonlinearity", table, "-o", output, "--order", "2")
    assert result.exit_code == 1
    assert "No space left on device" in stderr_line(result)
    assert output.read_bytes() == before
    assert listing(tmp_path) == ["fit.json", "fit.png", "iv.csv"]


def test_full_disk_keeps_the_previous_energy_report(tmp_path, monkeypatch):
    from gcsim.core import resources

    out = tmp_path / "energy"
    args = ["energy", "--fits", resources.FITS, "--out", out]
    assert invoke(*args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    result = invoke(*args, "--window", "256")
    assert result.exit_code == 1
    assert "No space left on device" in stderr_line(result)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_unusable_cache_folder_is_skipped(work, monkeypatch):
    """The cache is an optimisation: a cache folder that cannot be created (a file in its
    place) is neither read nor written, and the sweep runs."""
    blocker = work / "not_a_folder"
    blocker.write_text("a file where the cache folder should be\n")
    monkeypatch.setenv("GCSIM_CACHE_DIR", str(blocker))
    (work / "robust.toml").write_text(SPEC.replace("1.0, 2.0, 3.0", "2.0"))
    for _ in range(2):
        result = invoke("sweep", "robust.toml", "-o", "out.csv")
        assert result.exit_code == 0 and not result.stderr, result.output
        assert json.loads((work / "out.json").read_text())["stats"]["runs"] == 1
    assert len(pd.read_csv(work / "out.csv")) == 3


def test_a_stop_request_whose_exception_was_dropped_still_stops_the_pool():
    """Python drops an exception raised inside a finaliser or fork hook; the SIGTERM handler
    also records the request, and the pool's loop raises it at its next turn."""
    from gcsim.core import interrupts
    from gcsim.spice import engine

    netlist = "* op\nV1 a 0 1\nR1 a 0 1k\n.op\n.end\n"
    requests = [engine.RunRequest(netlist, ["a"]) for _ in range(3)]
    interrupts.request("SIGTERM")
    try:
        with pytest.raises(interrupts.Interrupted):
            list(engine.run_many(requests, workers=1))
    finally:
        interrupts.clear()
    assert all(result.ok for _, result in engine.run_many(requests[:1], workers=1))
