"""Inputs that would exhaust the machine are refused before anything is allocated: a
simulation or benchmark whose estimated peak memory is more than the machine has available
(unless --yes), sizes past sane bounds at parse time, and a spec's time limit past a week."""

from __future__ import annotations

import time
import tracemalloc

import pytest


from conftest import error_line, invoke
from gcsim.simulate import memory
from gcsim.simulate.attention import SimulationConfig

GIB = 1024 ** 3




@pytest.fixture
def sixteen_gib(monkeypatch):
    """A machine with 16 GiB available, whatever this one has."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 16 * GIB)


@pytest.fixture
def no_allocation(monkeypatch):
    """Fails the test if the random inputs or the benchmark are made."""
    import gcsim.cli.simulate as command

    def refused(*args, **kwargs):
        raise AssertionError("allocated before the memory check")

    monkeypatch.setattr(command, "random_inputs", refused)
    monkeypatch.setattr(command, "run_bench", refused)


def test_ten_million_tokens_are_refused_at_once(sixteen_gib, no_allocation):
    started = time.perf_counter()
    line = error_line(invoke("simulate", "attention", "--tokens", "10000000", "--window",
                             "1024"))
    assert time.perf_counter() - started < 2.0
    assert line.startswith("Error: --tokens 10000000 --heads 1 --dim 64 with --window 1024 "
                           "and --array 64 needs about ")
    assert line.endswith(" GiB of memory (estimated from the shapes), more than the 16.0 GiB "
                         "this machine has available; make it smaller, or add --yes to run it "
                         "anyway")


def test_the_refusal_uses_this_machines_memory(no_allocation):
    """Without a stand-in: 10^8 tokens need far more than any machine has."""
    line = error_line(invoke("simulate", "attention", "--tokens", "100000000", "--dim", "64"))
    assert "this machine has available" in line and "--yes" in line


def test_a_large_benchmark_is_refused(sixteen_gib, no_allocation):
    started = time.perf_counter()
    line = error_line(invoke("bench", "simulate", "--tokens", "40000"))
    assert time.perf_counter() - started < 2.0
    assert line.startswith("Error: bench simulate --batch 1 --heads 12 --tokens 40000 --dim 64 "
                           "--window 1024 needs about ")
    assert "more than the 16.0 GiB this machine has available" in line


def test_a_small_case_still_runs(sixteen_gib):
    result = invoke("simulate", "attention", "--tokens", "64", "--window", "64")
    assert result.exit_code == 0, result.output
    assert "vs ideal" in result.output


def test_yes_runs_what_the_estimate_refuses(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1024)
    args = ["simulate", "attention", "--tokens", "64", "--window", "64", "--dim", "8"]
    assert "add --yes" in error_line(invoke(*args))
    result = invoke(*args, "--yes")
    assert result.exit_code == 0, result.output
    bench = ["bench", "simulate", "--heads", "1", "--tokens", "64", "--dim", "8", "--window",
             "64", "--repeats", "1"]
    assert "add --yes" in error_line(invoke(*bench))
    assert invoke(*bench, "--yes").exit_code == 0


def test_running_out_of_memory_anyway_is_one_line(monkeypatch):
    import gcsim.cli.simulate as command

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 47.7 GiB")

    monkeypatch.setattr(command, "simulate_attention", exhausted)
    line = error_line(invoke("simulate", "attention", "--tokens", "64", "--yes"))
    assert line.startswith("Error: out of memory: ")


@pytest.mark.parametrize("args, option", [
    (["--array", "100000000"], "--array"),
    (["--window", "1000000000"], "--window"),
    (["--tokens", "1000000000"], "--tokens"),
    (["--tokens", "0"], "--tokens"),
    (["--heads", "-1"], "--heads"),
    (["--dim", "0"], "--dim"),
])
def test_sizes_are_bounded_when_parsed(args, option, no_allocation):
    line = error_line(invoke("simulate", "attention", *args))
    assert f"Invalid value for '{option}'" in line and "is not in the range" in line


def test_bench_sizes_are_bounded_when_parsed(no_allocation):
    line = error_line(invoke("bench", "simulate", "--tokens", "1000000000"))
    assert "Invalid value for '--tokens'" in line


def test_available_memory_is_read():
    available = memory.available_bytes()
    assert available is None or available > 0


@pytest.mark.parametrize("mode, extra", [
    ("paper", []),
    ("fitted", ["--save", "run.npz"]),
    ("ideal", ["--save", "run.npz"]),
])
def test_the_estimate_is_within_a_factor_of_two_or_so(tmp_path, monkeypatch, mode, extra):
    """The estimate errs high, but not by much: tracemalloc sees NumPy's allocations."""
    monkeypatch.chdir(tmp_path)
    tokens, window = 1024, 512
    config = SimulationConfig(window=window, keep_intermediates=bool(extra))
    powers = 4
    if mode == "fitted":
        from gcsim.hw import model_for_mode

        model = model_for_mode("fitted")
        powers = len(model.cell.power_coefficients_A(model.read_on_V))
    references = tuple(name for name in ("ideal", "linear") if name != mode)
    estimate = memory.estimate_peak_bytes(config, (1, 1, tokens, 64), powers=powers,
                                          references=references, mode=mode)
    invoke("simulate", "attention", "--tokens", 8, "--window", 8, "--mode", mode)   # warm up
    tracemalloc.start()
    try:
        result = invoke("simulate", "attention", "--mode", mode, "--tokens", tokens,
                        "--window", window, *extra)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert 1.0 <= estimate / peak <= 2.5, (estimate, peak, estimate / peak)


def test_the_benchmark_estimate_errs_high():
    from gcsim.bench.simulate import estimate_bench_bytes, run_bench

    estimate = estimate_bench_bytes(1, 1, 512, 16, 256)
    tracemalloc.start()
    try:
        run_bench(1, 1, 512, 16, 256, repeats=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 1.0 <= estimate / peak <= 2.5, (estimate, peak, estimate / peak)


# ----------------------------------------------------------------------------- spec time limit
SPEC = """\
netlist = "tiny.cir"
[analysis]
type = "op"
timeout_s = {timeout}
[[axes]]
param = "r_top"
column = "r_top_ohm"
values = [1000.0]
[[measure]]
column = "v_out_V"
vector = "v(out)"
"""


def test_a_time_limit_past_a_week_is_refused_naming_the_key(tmp_path):
    from gcsim.characterize import spec

    (tmp_path / "tiny.cir").write_text("* tiny\n.param r_top=1k\nV1 in 0 1\nR1 in out "
                                       "{r_top}\nR2 out 0 1k\n.op\n.end\n")
    (tmp_path / "big.toml").write_text(SPEC.format(timeout="1e12"))
    line = error_line(invoke("sweep", tmp_path / "big.toml", "-o", tmp_path / "t.csv"))
    assert line == ("Error: big.toml: analysis.timeout_s: 1e+12 s is more than a week "
                    "(604,800 s), the longest one ngspice run may take")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.toml", "tiny.cir"]
    (tmp_path / "week.toml").write_text(SPEC.format(timeout='"604800"'))
    assert spec.load(tmp_path / "week.toml").timeout_s == 604800.0
