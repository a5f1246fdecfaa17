"""Where ngspice runs happen: here (``local``, the default) or on a Dask cluster (``dask``).

An executor takes the engine's RunRequests and yields (request, result) pairs as runs end,
like ``engine.run_many``. Everything that decides a result (the netlist, its cache key, the
splitting of failed runs) is computed by the caller before a run is handed over, so the
table and the cache are the same whichever executor ran it.

On Dask, each run is one task. The task runs the netlist in a fresh process on the worker
(engine.run_isolated): ngspice never runs in a Dask worker's own threads, and never twice
in one process. A worker lost mid-run is noticed by the scheduler, which hands its tasks to
another worker; ``as_completed`` hands each task's result over once, so nothing is counted
twice. Before the first run, every worker's ngspice version is read (it is part of the
cache key; the workers must agree) and each task checks that the model files its netlist
names have, on the worker, the content they have here.

Validate, sweeps and regen share the options through ``click_options`` and
``from_options``::

    with executors.from_options(executor, scheduler) as runner, executors.use(runner):
        ...   # every engine.run_many() in here runs on `runner`
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from gcsim import __version__
# Through the facade, not pool/version: a test that replaces engine.run_many or
# engine.ngspice_version must reach LocalExecutor too.
from gcsim.spice import engine
from gcsim.core.errors import GcsimError, NgspiceUnavailable

NAMES = ("local", "dask")
# Seconds to reach a scheduler, and to wait for its first worker.
CONNECT_TIMEOUT_S = 5.0
WORKER_WAIT_S = 30.0
# Task retries after an exception in the task itself. A lost worker is not an exception:
# the scheduler reschedules its tasks, up to distributed.scheduler.allowed-failures times.
RETRIES = 2
_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")
# Model files a netlist names: .lib PATH SECTION, .include PATH.
_FILE_CARD = re.compile(r"^\s*\.(?:lib|include|inc)\s+(\"[^\"]+\"|'[^']+'|\S+)",
                        re.IGNORECASE | re.MULTILINE)


class ExecutorError(GcsimError):
    """The chosen executor cannot run: bad options, no scheduler, unusable workers."""


class LocalExecutor:
    """Fresh local worker processes, ``workers`` at once (engine.run_many)."""

    is_local = True
    name = "local"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def describe(self) -> str:
        return "local"

    def ngspice_version(self) -> str:
        return engine.ngspice_version()

    def run_many(self, requests: Iterable[engine.RunRequest],
                 workers: int = 1) -> Iterator[tuple[engine.RunRequest, engine.RunResult]]:
        return engine.run_many(requests, workers)


class DaskExecutor:
    """Runs on a dask.distributed cluster: an existing scheduler (``address``), or a
    ``LocalCluster`` this object starts and stops (``local_workers``, for the benchmark).

    ``restrict_to``: worker addresses to use (None: all)."""

    is_local = False
    name = "dask"

    def __init__(self, address: str | None = None, local_workers: int | None = None,
                 connect_timeout: float | None = None, retries: int = RETRIES):
        if (address is None) == (local_workers is None):
            raise ValueError("give a scheduler address or a number of local workers")
        self.address = address
        self.local_workers = local_workers
        self.connect_timeout = connect_timeout or _env_float("GCSIM_DASK_CONNECT_TIMEOUT",
                                                             CONNECT_TIMEOUT_S)
        self.retries = retries
        self.restrict_to: list[str] | None = None
        self.client = None
        self.cluster = None
        self._ngspice: str | None = None
        self._token = secrets.token_hex(4)
        self._attempts = itertools.count()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def open(self) -> DaskExecutor:
        if self.client is not None:
            return self
        distributed = import_distributed()
        if self.local_workers is not None:
            self.cluster = distributed.LocalCluster(
                n_workers=self.local_workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            self.address = self.cluster.scheduler_address
        try:
            self.client = distributed.Client(self.address, timeout=self.connect_timeout,
                                             set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, comm errors
            self.close()
            raise ExecutorError(f"cannot reach the Dask scheduler at {self.address} within "
                                f"{self.connect_timeout:g} s ({_first_line(exc)}); start one "
                                "with `dask scheduler`") from None
        try:
            self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except Exception:  # noqa: BLE001 - a timeout, in one of several exception types
            self.close()
            raise ExecutorError(f"the Dask scheduler at {self.address} has no workers after "
                                f"{WORKER_WAIT_S:g} s; start some with `dask worker "
                                f"{self.address}`") from None
        try:
            self._ngspice = self._probe_workers()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
            self.cluster = None

    def describe(self) -> str:
        where = f"LocalCluster of {self.local_workers}" if self.local_workers else self.address
        return f"dask {where}"

    def worker_addresses(self) -> list[str]:
        return sorted(self.client.nthreads())

    def threads(self) -> int:
        nthreads = self.client.nthreads()
        chosen = self.restrict_to or list(nthreads)
        return sum(nthreads.get(address, 0) for address in chosen)

    def _probe_workers(self) -> str:
        """Every worker's gcsim and ngspice versions, read by a task pinned to it; returns
        the ngspice version, which the workers must share."""
        addresses = self.worker_addresses()
        futures = [self.client.submit(_probe_task, key=f"gcsim-probe-{self._token}-{i}",
                                      workers=[address], allow_other_workers=False, pure=False)
                   for i, address in enumerate(addresses)]
        try:
            answers = self.client.gather(futures)
        except Exception as exc:  # noqa: BLE001 - a worker that cannot import gcsim, say
            raise ExecutorError(f"a Dask worker of {self.address} cannot run gcsim "
                                f"({_first_line(exc)}); install gcsim and ngspice on every "
                                "worker") from None
        versions: dict[str, list[str]] = {}
        for address, gcsim_version, ngspice, problem in answers:
            if problem:
                raise ExecutorError(f"Dask worker {address}: {problem}")
            if gcsim_version != __version__:
                raise ExecutorError(f"Dask worker {address} has gcsim {gcsim_version}, this "
                                    f"machine {__version__}: install the same version")
            versions.setdefault(ngspice, []).append(address)
        if len(versions) > 1:
            shown = "; ".join(f"{v} on {', '.join(a)}" for v, a in versions.items())
            raise ExecutorError(f"the Dask workers run different ngspice versions ({shown}); "
                                "the version is part of every cache key, so they must agree")
        return next(iter(versions))

    # ------------------------------------------------------------------ running
    def ngspice_version(self) -> str:
        self.open()
        return self._ngspice

    def run_many(self, requests: Iterable[engine.RunRequest],
                 workers: int = 1) -> Iterator[tuple[engine.RunRequest, engine.RunResult]]:
        """Submit requests as tasks, a few per worker thread ahead, and yield each result
        once, as it arrives. ``workers`` (local processes) does not apply: the cluster's
        threads decide."""
        distributed = import_distributed()
        self.open()
        window = max(8, 2 * self.threads())
        pending = iter(requests)
        running: dict[str, tuple[object, engine.RunRequest]] = {}
        arrivals = distributed.as_completed(loop=self.client.loop)
        exhausted = False
        try:
            while True:
                while not exhausted and len(running) < window:
                    try:
                        request = next(pending)
                    except StopIteration:
                        exhausted = True
                        break
                    future = self._submit(request)
                    running[future.key] = (future, request)
                    arrivals.add(future)
                if not running:
                    return
                future = next(arrivals)
                entry = running.pop(future.key, None)
                if entry is None:       # already handed over: never count a run twice
                    continue
                result = self._collect(future)
                future.release()
                yield entry[1], result
        finally:
            for future, _ in running.values():
                with contextlib.suppress(Exception):
                    future.cancel()

    def _submit(self, request: engine.RunRequest):
        payload = (request.netlist, list(request.vectors), request.ngbehavior,
                   float(request.timeout_s))
        digest = hashlib.sha256("\0".join([request.netlist, *request.vectors,
                                           request.ngbehavior or ""]).encode()).hexdigest()
        key = f"gcsim-run-{digest[:16]}-{self._token}-{next(self._attempts)}"
        return self.client.submit(_run_task, payload, model_files(request.netlist),
                                  self._ngspice, key=key, retries=self.retries, pure=False,
                                  workers=self.restrict_to, allow_other_workers=False)

    def _collect(self, future) -> engine.RunResult:
        from distributed.scheduler import KilledWorker

        try:
            result = future.result()
        except KilledWorker as exc:
            return engine.RunResult(False, error=f"the run was lost with several Dask "
                                    f"workers in a row ({_first_line(exc)})", kind="crashed")
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ in ("CancelledError", "FutureCancelledError"):
                raise ExecutorError(f"the Dask scheduler at {self.address} cancelled the run "
                                    "(connection lost?); finished runs are cached: run the "
                                    "same command again to resume") from None
            return engine.RunResult(False, error=f"Dask task failed: {type(exc).__name__}: "
                                    f"{_first_line(exc)}", kind="crashed")
        if result.kind == "unavailable":
            raise NgspiceUnavailable(result.error)
        return result


# ---------------------------------------------------------------------- options
def import_distributed():
    try:
        import distributed
    except ImportError:
        raise ExecutorError("--executor dask needs dask.distributed: pip install "
                            "'dask[distributed]'") from None
    return distributed


def check_address(address: str) -> str:
    address = address.strip()
    if not _ADDRESS.fullmatch(address):
        raise ExecutorError(f"--scheduler {address!r}: expected tcp://HOST:PORT, e.g. "
                            "tcp://10.0.0.5:8786")
    return address


def from_options(executor: str | None = "local", scheduler: str | None = None,
                 connect_timeout: float | None = None):
    """The executor the ``--executor``/``--scheduler`` options ask for, not yet connected
    (use it as a context manager). Raises ExecutorError with a one-line message."""
    name = (executor or "local").lower()
    if name == "local":
        if scheduler:
            raise ExecutorError("--scheduler needs --executor dask")
        return LocalExecutor()
    if name != "dask":
        raise ExecutorError(f"--executor {executor!r}: expected one of {', '.join(NAMES)}")
    if not scheduler:
        raise ExecutorError("--executor dask needs --scheduler tcp://HOST:PORT (start a "
                            "scheduler with `dask scheduler`)")
    address = check_address(scheduler)
    import_distributed()
    return DaskExecutor(address, connect_timeout=connect_timeout)


def click_options(command):
    """Add ``--executor`` and ``--scheduler`` to a click command."""
    import click

    command = click.option(
        "--scheduler", metavar="tcp://HOST:PORT", default=None,
        help="Dask scheduler to run on (with --executor dask).")(command)
    return click.option(
        "--executor", type=click.Choice(NAMES), default="local", show_default=True,
        help="Where ngspice runs: local worker processes, or a Dask cluster (--scheduler). "
             "Results and cache keys are the same.")(command)


@contextlib.contextmanager
def use(executor):
    """Run every engine.run_many() call inside the block on ``executor`` (for callers that
    do not pass one explicitly)."""
    token = engine.DEFAULT_EXECUTOR.set(executor)
    try:
        yield executor
    finally:
        engine.DEFAULT_EXECUTOR.reset(token)


# ---------------------------------------------------------------------- tasks
def model_files(netlist: str) -> dict[str, str]:
    """{path: sha256} of the absolute files the netlist's .lib/.include cards name, as
    they are on this machine."""
    files = {}
    for match in _FILE_CARD.finditer(netlist):
        path = match.group(1).strip("\"'")
        if os.path.isabs(path):
            files[path] = _file_hash(path)
    return files


def _file_hash(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return _hash_of(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _hash_of(path: str, mtime_ns: int, size: int) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def check_files(files: dict[str, str]) -> str | None:
    """Why this machine's copies of ``files`` ({path: sha256}) would not give the same
    results; None when they match."""
    for path, expected in files.items():
        found = _file_hash(path)
        if found == expected:
            continue
        if found == "missing":
            return (f"model file {path} is missing here: install gcsim (and any PDK) at the "
                    "same path as on the submitting machine, or share that folder")
        return f"model file {path} differs from the submitting machine's copy"
    return None


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:  # noqa: BLE001 - not in a worker (called directly)
        return "this machine"


def _probe_task() -> tuple[str, str, str | None, str | None]:
    address = _worker_address()
    try:
        return address, __version__, engine.isolated_ngspice_version(), None
    except NgspiceUnavailable as exc:
        return address, __version__, None, str(exc)


def _run_task(payload, files: dict[str, str], ngspice: str | None) -> engine.RunResult:
    """One run on a Dask worker, in a fresh process (engine.run_isolated)."""
    netlist, vectors, ngbehavior, timeout_s = payload
    problem = check_files(files)
    if problem is None and ngspice is not None:
        try:
            here = engine.isolated_ngspice_version()
        except NgspiceUnavailable as exc:
            problem = str(exc)
        else:
            if here != ngspice:
                problem = (f"ngspice here is {here!r}, the sweep's cache keys use {ngspice!r}")
    if problem:
        return engine.RunResult(False, error=f"Dask worker {_worker_address()}: {problem}",
                                kind="unavailable")
    result = engine.run_isolated(engine.RunRequest(netlist, vectors, ngbehavior, timeout_s))
    if result.kind == "unavailable":
        result.error = f"Dask worker {_worker_address()}: {result.error}"
    return result


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
