"""Every command's output files go through gcsim.core.atomic: a target that is a FIFO, a
device or a symlink is refused and left as it was, two outputs of one command never name one
file, a command's files are written all together or not at all (and checked before any long
run), the files it names are the files it wrote, and new files honour the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest


from conftest import error_line, invoke, iv_table

TEMPLATE = """\
* tiny.cir: one resistive divider
.param r_top=1k v_in=1
VIN in 0 {v_in}
R1 in out {r_top}
R2 out 0 1k
.op
.end
"""

SPEC = """\
netlist = "tiny.cir"
[analysis]
type = "op"
[[axes]]
param = "r_top"
column = "r_top_ohm"
values = [1000.0, 3000.0]
[[measure]]
column = "v_out_V"
vector = "v(out)"
"""

SIMULATE = ["simulate", "attention", "--tokens", "64", "--window", "64", "--dim", "8"]
VALIDATE = ["validate", "tile", "--rows", "2", "--cols", "2", "--jobs", "1"]




def listing(folder: Path) -> list[str]:
    """What is in `folder`, but the test's result cache."""
    return sorted(p.name for p in folder.iterdir() if p.name != "cache")


def is_fifo(path: Path) -> bool:
    return stat.S_ISFIFO(os.lstat(path).st_mode)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def work(tmp_path, monkeypatch):
    (tmp_path / "tiny.cir").write_text(TEMPLATE)
    (tmp_path / "tiny.toml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_sweep(monkeypatch):
    """Fails the test if a sweep starts: a refusal must come before any ngspice run."""
    from gcsim.characterize.sweep import Sweep

    def run(self):
        raise AssertionError("the sweep ran before its outputs were checked")

    monkeypatch.setattr(Sweep, "run", run)


# ----------------------------------------------------------------------------- gcsim sweep
def test_sweep_to_a_json_table_is_refused_before_running(work, no_sweep):
    """`-o t.json`: the table and its sidecar would be one file."""
    line = error_line(invoke("sweep", "tiny.toml", "-o", "t.json"))
    assert line == ("Error: output t.json: a table named .json would be overwritten by its "
                    "JSON sidecar; name it .parquet or .csv")
    assert listing(work) == ["tiny.cir", "tiny.toml"]


def test_sweep_to_a_fifo_is_refused_and_the_fifo_kept(work, no_sweep):
    os.mkfifo(work / "pipe.csv")
    line = error_line(invoke("sweep", "tiny.toml", "-o", "pipe.csv"))
    assert line == ("Error: output pipe.csv: exists and is a device, FIFO or socket, not a "
                    "regular file; gcsim will not replace it")
    assert is_fifo(work / "pipe.csv")
    assert listing(work) == ["pipe.csv", "tiny.cir", "tiny.toml"]


def test_sweep_whose_sidecar_is_a_fifo_is_refused(work, no_sweep):
    os.mkfifo(work / "out.json")
    line = error_line(invoke("sweep", "tiny.toml", "-o", "out.parquet"))
    assert "output out.json: exists and is a device, FIFO or socket" in line
    assert is_fifo(work / "out.json") and not (work / "out.parquet").exists()


def test_sweep_to_a_symlink_is_refused_and_its_file_kept(work, no_sweep):
    (work / "precious.csv").write_text("keep me\n")
    (work / "link.csv").symlink_to(work / "precious.csv")
    line = error_line(invoke("sweep", "tiny.toml", "-o", "link.csv"))
    assert line == ("Error: output link.csv: exists and is a symlink, not a regular file; "
                    "gcsim will not replace it")
    assert (work / "link.csv").is_symlink()
    assert (work / "precious.csv").read_text() == "keep me\n"


def test_sweep_to_a_device_is_refused(work, no_sweep):
    line = error_line(invoke("sweep", "tiny.toml", "-o", "/dev/null"))
    assert "output /dev/null: exists and is a device, FIFO or socket" in line
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_sweep_outputs_and_cache_entries_honour_the_umask(work, isolated_cache, umask_022):
    result = invoke("sweep", "tiny.toml", "-o", "out.csv")
    assert result.exit_code == 0, result.output
    assert "wrote out.csv and out.json" in result.output
    assert listing(work) == ["out.csv", "out.json", "tiny.cir", "tiny.toml"]
    assert mode_of(work / "out.csv") == mode_of(work / "out.json") == 0o644
    entries = sorted(isolated_cache.glob("runs/*/*.npz"))
    assert entries and {mode_of(path) for path in entries} == {0o644}
    assert not list(isolated_cache.glob("runs/*/*.tmp"))


def test_a_failed_sidecar_leaves_no_table(work, monkeypatch):
    import json

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", full_disk)
    line = error_line(invoke("sweep", "tiny.toml", "-o", "out.csv"))
    assert line == "Error: cannot write out.csv: No space left on device"
    assert listing(work) == ["tiny.cir", "tiny.toml"]


# ----------------------------------------------------------------------------- gcsim validate
@pytest.fixture
def no_tile(monkeypatch):
    """Fails the test if the tile is simulated: a refusal must come before ngspice."""
    import gcsim.validate.scenarios as scenarios

    def validate_tile(*args, **kwargs):
        raise AssertionError("the tile ran before the report files were checked")

    monkeypatch.setattr(scenarios, "validate_tile", validate_tile)


@pytest.mark.parametrize("name", ["report.json", "stages.png", "inputs.npz"])
def test_validate_report_with_a_fifo_is_refused_before_running(tmp_path, no_tile, name):
    report = tmp_path / "report"
    report.mkdir()
    os.mkfifo(report / name)
    line = error_line(invoke(*VALIDATE, "--report", report))
    assert line == (f"Error: report file {report / name}: exists and is a device, FIFO or "
                    "socket, not a regular file; gcsim will not replace it")
    assert listing(report) == [name] and is_fifo(report / name)


def test_validate_report_names_the_three_files_it_wrote(tmp_path, umask_022):
    report = tmp_path / "report"
    result = invoke(*VALIDATE, "--report", report)
    assert result.exit_code in (0, 3), result.output
    written = [report / "report.json", report / "stages.png", report / "inputs.npz"]
    assert f"wrote {written[0]}, {written[1]} and {written[2]}" in result.output
    assert listing(report) == ["inputs.npz", "report.json", "stages.png"]
    assert {mode_of(path) for path in written} == {0o644}
    with np.load(report / "inputs.npz") as inputs:
        assert sorted(inputs.files) == ["k", "q", "v"]


def test_validate_report_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A plot that fails to save leaves no report.json (written first) and no temporary."""
    from matplotlib.figure import Figure

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    report = tmp_path / "report"
    line = error_line(invoke(*VALIDATE, "--report", report))
    assert line == f"Error: cannot write the report in {report}: No space left on device"
    assert listing(report) == []


# ----------------------------------------------------------------------------- gcsim simulate
@pytest.fixture
def no_simulation(monkeypatch):
    import gcsim.cli.simulate as command

    def simulate_attention(*args, **kwargs):
        raise AssertionError("the simulation ran before its outputs were checked")

    monkeypatch.setattr(command, "simulate_attention", simulate_attention)


def test_simulate_save_and_plot_on_one_name_are_refused(tmp_path, no_simulation):
    target = tmp_path / "run.png"
    line = error_line(invoke(*SIMULATE, "--save", target, "--plot", target))
    assert line == (f"Error: --save {target}: expected a .npz file name (the arrays are saved "
                    "as a NumPy .npz archive)")
    line = error_line(invoke(*SIMULATE, "--save", tmp_path / "run.npz", "--plot",
                             tmp_path / "run.npz"))
    assert line == (f"Error: --plot {tmp_path / 'run.npz'}: expected a .png file name (the "
                    "plot is a PNG)")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("option, name", [("--save", "run.npz"), ("--plot", "run.png")])
def test_simulate_to_a_fifo_or_a_symlink_is_refused(tmp_path, no_simulation, option, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    line = error_line(invoke(*SIMULATE, option, fifo))
    assert line == (f"Error: {option} {fifo}: exists and is a device, FIFO or socket, not a "
                    "regular file; gcsim will not replace it")
    assert is_fifo(fifo)
    fifo.unlink()
    (tmp_path / "precious").write_text("keep me")
    fifo.symlink_to(tmp_path / "precious")
    line = error_line(invoke(*SIMULATE, option, fifo))
    assert "exists and is a symlink" in line
    assert fifo.is_symlink() and (tmp_path / "precious").read_text() == "keep me"


def test_simulate_names_the_files_it_wrote_with_the_umask(tmp_path, umask_022):
    result = invoke(*SIMULATE, "--save", tmp_path / "run", "--plot", tmp_path / "run.png")
    assert result.exit_code == 0, result.output
    # np.savez would have made run.npz of 'run': the name printed is the file written.
    assert f"wrote {tmp_path / 'run.npz'}" in result.output
    assert f"wrote {tmp_path / 'run.png'}" in result.output
    assert listing(tmp_path) == ["run.npz", "run.png"]
    assert mode_of(tmp_path / "run.npz") == mode_of(tmp_path / "run.png") == 0o644


def test_simulate_writes_both_files_or_neither(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken)
    line = error_line(invoke(*SIMULATE, "--save", tmp_path / "run.npz", "--plot",
                             tmp_path / "run.png"))
    assert "No space left on device" in line
    assert listing(tmp_path) == []


# ----------------------------------------------------------------------------- energy, fit, run
def test_energy_output_with_a_fifo_is_refused_and_nothing_written(tmp_path):
    from gcsim.core import resources

    out = tmp_path / "energy"
    out.mkdir()
    os.mkfifo(out / "energy.json")
    line = error_line(invoke("energy", "--fits", resources.FITS, "--out", out, "--plot",
                             tmp_path / "e.png"))
    assert line == (f"Error: output {out / 'energy.json'}: exists and is a device, FIFO or "
                    "socket, not a regular file; gcsim will not replace it")
    assert listing(out) == ["energy.json"] and is_fifo(out / "energy.json")
    assert listing(tmp_path) == ["energy"]


def test_energy_names_the_files_it_wrote(tmp_path, umask_022):
    from gcsim.core import resources

    out = tmp_path / "energy"
    result = invoke("energy", "--fits", resources.FITS, "--out", out, "--plot",
                    tmp_path / "e.png")
    assert result.exit_code == 0, result.output
    names = [f"{table}{suffix}" for table in ("breakdown", "latency", "paper", "gpu")
             for suffix in (".csv", ".parquet")] + ["energy.json"]
    assert f"wrote {', '.join(names)} to {out}" in result.output
    assert f"wrote {tmp_path / 'e.png'}" in result.output
    assert listing(out) == sorted(names)
    assert {mode_of(out / name) for name in names} == {0o644}
    assert mode_of(tmp_path / "e.png") == 0o644


def test_fit_to_a_fifo_is_refused(tmp_path):
    table = iv_table(tmp_path)
    os.mkfifo(tmp_path / "fit.json")
    line = error_line(invoke("fit", "nonlinearity", table, "-o", tmp_path / "fit.json"))
    assert "fit.json: exists and is a device, FIFO or socket" in line
    assert is_fifo(tmp_path / "fit.json") and listing(tmp_path) == ["fit.json", "iv.csv"]


def test_fit_file_save_refuses_a_symlink(tmp_path):
    from gcsim.fit import schema
    from gcsim.fit.schema import FitFileError
    from test_fit import iv_record

    (tmp_path / "precious.json").write_text("keep me")
    (tmp_path / "nl.json").symlink_to(tmp_path / "precious.json")
    with pytest.raises(FitFileError, match="symlink"):
        schema.save(iv_record(), tmp_path / "nl.json")
    assert (tmp_path / "precious.json").read_text() == "keep me"


def test_run_refuses_an_output_that_is_a_fifo_before_sweeping(tmp_path, no_sweep):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "tiny.cir").write_text(TEMPLATE)
    (specs / "tiny.toml").write_text(SPEC)
    out = tmp_path / "reports"
    out.mkdir()
    os.mkfifo(out / "summary.csv")
    line = error_line(invoke("run", "--specs", specs, "--out", out))
    assert line == (f"Error: output {out / 'summary.csv'}: exists and is a device, FIFO or "
                    "socket, not a regular file; gcsim will not replace it")
    assert listing(out) == ["summary.csv"] and is_fifo(out / "summary.csv")
