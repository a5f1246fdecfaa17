"""Outputs that must not destroy what they should protect: devices, FIFOs and symlinks are
never replaced, two outputs of one command never overwrite each other, a failure writes none
of a command's files, and new files honour the umask."""

from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner

from gcsim.cli import main
from gcsim.core.atomic import OutputError, replacing_all, write_text_atomically

from conftest import iv_table


def test_a_fifo_target_is_refused_and_left_alone(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="not a regular file"):
        write_text_atomically(fifo, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_a_symlink_target_is_refused_and_its_file_kept(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("precious")
    (tmp_path / "link.json").symlink_to(real)
    with pytest.raises(OutputError, match="symlink"):
        write_text_atomically(tmp_path / "link.json", "x")
    assert real.read_text() == "precious" and (tmp_path / "link.json").is_symlink()


def test_a_device_target_is_refused():
    with pytest.raises(OutputError, match="device"):
        write_text_atomically("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_two_outputs_that_are_one_file_are_refused(tmp_path):
    with pytest.raises(OutputError, match="same file"):
        with replacing_all(tmp_path / "a.json", tmp_path / "." / "a.json"):
            pass


def test_a_failed_writer_leaves_the_old_files_and_no_temporary(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(RuntimeError):
        with replacing_all(tmp_path / "a.txt", tmp_path / "b.txt") as (a, b):
            open(a, "w").write("new a")
            raise RuntimeError("plot failed")
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_honour_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = write_text_atomically(tmp_path / "f.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def _table(tmp_path):
    return iv_table(tmp_path)


def test_fit_to_a_png_name_is_refused_before_writing(tmp_path):
    """`gcsim fit -o x.png` would write the plot over the fit: refused, nothing written."""
    table = _table(tmp_path)
    result = CliRunner().invoke(main, ["fit", "nonlinearity", str(table), "-o",
                                       str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "same file" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iv.csv"]


def test_a_failed_plot_leaves_no_fit_file(tmp_path, monkeypatch):
    import gcsim.fit.table as table_module

    def broken_plot(*args, **kwargs):
        raise ValueError("matplotlib fell over")

    monkeypatch.setattr(table_module, "plot_fit", broken_plot)
    table = _table(tmp_path)
    result = CliRunner().invoke(main, ["fit", "nonlinearity", str(table), "-o",
                                       str(tmp_path / "fit.json")])
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iv.csv"]
