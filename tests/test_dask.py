"""The Dask executor on a LocalCluster on loopback, with real ngspice: the same tables and
cache keys as the local executor, a worker killed mid-sweep, one-line CLI errors."""

import json
import logging
import os
import signal
import socket
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from gcsim import pipeline
from gcsim.spice import engine
from gcsim.spice import executors
from gcsim.core import resources
from gcsim.characterize import spec
from gcsim.bench.sweep import bench_sweep_dask
from gcsim.characterize.cache import ResultCache
from gcsim.cli import main
from gcsim.characterize.sweep import Sweep

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

PULSE = resources.CHARACTERIZATION / "gain_cell_pulse.toml"


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.ERROR) as local:
        yield local.scheduler_address


@pytest.fixture
def dask(cluster):
    with executors.DaskExecutor(cluster) as runner:
        yield runner


def pulse_spec(num_store=2, num_pulse=4, batch=1):
    raw = spec.load(PULSE).raw
    raw = {**raw, "analysis": {**raw["analysis"], "batch": batch},
           "axes": [dict(raw["axes"][0], num=num_store), dict(raw["axes"][1], num=num_pulse)]}
    return spec.from_dict(raw, name="dask_pulse", base=resources.CHARACTERIZATION)


def cache_keys(folder):
    return sorted(path.stem for path in folder.rglob("*.npz"))


def invoke(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env)


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------ same results
def test_cli_sweep_on_dask_matches_local_table_and_cache_keys(cluster, tmp_path):
    local_cache, dask_cache = tmp_path / "cache-local", tmp_path / "cache-dask"
    local = invoke("sweep", str(PULSE), "-o", str(tmp_path / "local.parquet"),
                   "--no-progress", env={"GCSIM_CACHE_DIR": str(local_cache)})
    assert local.exit_code == 0, local.output
    remote = invoke("sweep", str(PULSE), "-o", str(tmp_path / "dask.parquet"), "--no-progress",
                    "--executor", "dask", "--scheduler", cluster,
                    env={"GCSIM_CACHE_DIR": str(dask_cache)})
    assert remote.exit_code == 0, remote.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local.parquet"),
                                  pd.read_parquet(tmp_path / "dask.parquet"))
    # Identical cache keys: a sweep run on one executor is a cache hit for the other.
    assert cache_keys(local_cache) and cache_keys(local_cache) == cache_keys(dask_cache)
    local_meta = json.loads((tmp_path / "local.json").read_text())
    dask_meta = json.loads((tmp_path / "dask.json").read_text())
    assert dask_meta["stats"]["executor"] == f"dask {cluster}"
    assert dask_meta["stats"]["runs"] == local_meta["stats"]["runs"] == 2
    for key in ("ngspice_version", "netlist_sha256", "model_files_sha256", "points"):
        assert dask_meta[key] == local_meta[key]
    again = invoke("sweep", str(PULSE), "-o", str(tmp_path / "again.parquet"), "--no-progress",
                   "--executor", "dask", "--scheduler", cluster,
                   env={"GCSIM_CACHE_DIR": str(local_cache)})
    assert "0 ngspice runs, 2 from cache" in again.output


def test_run_many_yields_each_result_once_and_as_local(dask):
    sweep = Sweep(pulse_spec(), progress=False, cache=ResultCache(enabled=False))
    sweep.ngspice = engine.ngspice_version()
    requests = [engine.RunRequest(u.netlist, u.vectors, sweep.models.ngbehavior, tag=i)
                for i, u in enumerate(sweep.plan())]
    broken = engine.RunRequest(requests[0].netlist.replace(".tran", ".tran -1"),
                               requests[0].vectors, tag="broken")
    requests.append(broken)
    local = {request.tag: result for request, result in engine.run_many(requests, 2)}
    # executors.use() routes callers that pass no executor (gcsim validate's way).
    with executors.use(dask):
        remote = [(request.tag, result) for request, result in engine.run_many(requests, 2)]
    assert sorted(tag for tag, _ in remote if tag != "broken") == list(range(len(requests) - 1))
    assert len(remote) == len(requests)
    for tag, result in remote:
        assert result.ok == local[tag].ok and result.kind == local[tag].kind
        assert result.error == local[tag].error
        assert result.vectors.keys() == local[tag].vectors.keys()
        for name, values in result.vectors.items():
            assert (values == local[tag].vectors[name]).all()
    assert not dict(remote)["broken"].ok


def test_regen_sweeps_on_dask_match_local(dask, tmp_path):
    remote = pipeline.run_sweeps(resources.CHARACTERIZATION, tmp_path / "dask",
                                 only={"gain_cell_iv"}, executor=dask)
    assert remote[0].stats["runs"] == 1
    local = pipeline.run_sweeps(resources.CHARACTERIZATION, tmp_path / "local", only={"gain_cell_iv"})
    assert local[0].stats["cache_hits"] == 1       # the same key as the Dask run's
    pd.testing.assert_frame_equal(local[0].table_data, remote[0].table_data)


def test_bench_reports_one_and_two_workers(cluster):
    report = bench_sweep_dask(points=8, scheduler=cluster, repeat=1, batch=2)
    assert report["tables_identical"]
    assert report["runs"] == 4 and len(report["workers"]) == 2
    assert report["dask_1_worker_points_per_s"] > 0 and report["dask_2_workers_points_per_s"] > 0
    assert report["ratio_2_over_1"] == pytest.approx(
        report["dask_1_worker_s"][0] / report["dask_2_workers_s"][0], rel=1e-2)


def test_model_files_are_checked_on_the_worker(tmp_path):
    library = tmp_path / "models.lib"
    library.write_text("* models\n")
    files = executors.model_files(f"* x\n.lib {library} tt\n.include 'relative.inc'\n.end\n")
    assert list(files) == [str(library)]
    assert executors.check_files(files) is None
    library.write_text("* changed\n")
    assert "differs" in executors.check_files(files)
    library.unlink()
    assert "is missing here" in executors.check_files(files)


# ------------------------------------------------------------------ a lost worker
def test_lost_worker_runs_are_retried_elsewhere_and_counted_once(cluster):
    """Kill a worker process (SIGKILL) that holds one of the sweep's runs: the scheduler
    hands its runs to the other worker, and the table is complete and identical."""
    the_spec = pulse_spec(num_store=2, num_pulse=6, batch=1)       # 12 runs
    reference = Sweep(the_spec, progress=False, cache=ResultCache(enabled=False)).run()
    killed = {}
    with executors.DaskExecutor(cluster) as runner:
        pids = runner.client.run(os.getpid)
        real = runner.run_many

        def run_many_killing_a_worker(requests, workers=1):
            for item in real(requests, workers):
                if not killed:
                    ours = {address: keys for address, keys in runner.client.processing().items()
                            if any(str(key).startswith("gcsim-run-") for key in keys)}
                    if ours:
                        address = min(ours)
                        pid = pids[address]
                        killed.update(address=address, keys=ours[address],
                                      children=psutil.Process(pid).children(recursive=True))
                        os.kill(pid, signal.SIGKILL)
                yield item

        runner.run_many = run_many_killing_a_worker
        result = Sweep(the_spec, progress=False, cache=ResultCache(enabled=False),
                       executor=runner).run()
    assert killed, "no worker held a run after the first result"
    print(f"killed {killed['address']} holding {killed['keys']}")
    assert result.metadata["stats"]["runs"] == 12 == reference.metadata["stats"]["runs"]
    assert not result.failures
    assert not result.table.duplicated(["stored_voltage_V", "t_pulse_s"]).any()
    pd.testing.assert_frame_equal(result.table, reference.table)
    # The lost worker's launcher and ngspice processes died with it.
    assert killed["children"]
    _, alive = psutil.wait_procs(killed["children"], timeout=10)
    assert not alive


# ------------------------------------------------------------------ one-line errors
@pytest.mark.parametrize("command", [["sweep", str(PULSE)], ["regen"]])
def test_dask_without_scheduler_is_one_line(command):
    assert_one_line_error(invoke(*command, "--executor", "dask"),
                          "--executor dask needs --scheduler tcp://HOST:PORT")


@pytest.mark.parametrize("command", [["sweep", str(PULSE)], ["regen"],
                                     ["bench", "sweep", "--executor", "dask"]])
def test_bad_scheduler_address_is_one_line(command):
    if command[0] != "bench":
        command = command + ["--executor", "dask"]
    assert_one_line_error(invoke(*command, "--scheduler", "tcp://host;rm -rf ~:8786"),
                          "expected tcp://HOST:PORT")


def test_scheduler_without_dask_executor_is_one_line():
    assert_one_line_error(invoke("sweep", str(PULSE), "--scheduler", "tcp://127.0.0.1:8786"),
                          "--scheduler needs --executor dask")


def test_unreachable_scheduler_is_one_line_and_quick(tmp_path):
    with socket.socket() as sock:          # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    result = invoke("sweep", str(PULSE), "-o", str(tmp_path / "x.parquet"), "--executor",
                    "dask", "--scheduler", f"tcp://127.0.0.1:{port}",
                    env={"GCSIM_DASK_CONNECT_TIMEOUT": "1"})
    assert_one_line_error(result, "cannot reach the Dask scheduler", f"127.0.0.1:{port}")
    assert time.monotonic() - started < 15
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("command", [["sweep", str(PULSE)], ["regen"], ["bench", "sweep"]])
def test_dask_not_installed_is_one_line(command, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)     # import distributed fails
    args = command + ["--executor", "dask"]
    if command[0] != "bench":
        args += ["--scheduler", "tcp://127.0.0.1:8786"]
    assert_one_line_error(invoke(*args), "pip install 'dask[distributed]'")


def test_changed_commands_keep_an_example():
    for command in (["sweep"], ["regen"], ["bench", "sweep"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output and "--executor" in result.output
