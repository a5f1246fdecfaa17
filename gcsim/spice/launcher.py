"""Runs ngspice from a host process that has other threads (a Dask worker): through a
single-threaded launcher process, started once per concurrent task, that forks each run."""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import threading
from typing import ClassVar

from gcsim.core.errors import NgspiceUnavailable
from gcsim.spice.pool import die_with_parent, fork_context, run_local
from gcsim.spice.run import RunRequest, RunResult, library_path, preimport
from gcsim.spice.version import probe_version


def run_isolated(request: RunRequest) -> RunResult:
    """Run one request in a fresh process, from a host process that has other threads (a
    Dask worker): ngspice never runs in the host, and never twice in one process.

    Forking a process with other threads can copy a lock one of them holds, and starting
    each run with spawn or forkserver re-imports the host's __main__ (about 1 s for a Dask
    worker), so runs are forked by a launcher: a single-threaded process started once
    per concurrent task, which runs each request exactly as run_many does locally."""
    try:
        library_path()
    except NgspiceUnavailable as exc:
        return RunResult(False, error=str(exc), kind="unavailable")
    return _Launcher.call(request, request.timeout_s + 60)


@functools.lru_cache(maxsize=1)
def isolated_ngspice_version() -> str:
    """ngspice_version() for a host process with other threads running (a Dask worker)."""
    library_path()
    answer = _Launcher.call("version", 120)
    if isinstance(answer, RunResult):
        raise NgspiceUnavailable(f"ngspice version query: {answer.error}")
    if isinstance(answer, Exception):
        raise answer
    return answer


def _allow_children() -> None:
    """multiprocessing refuses children in a daemonic process, and Dask starts its worker
    processes as daemons. gcsim's launchers are daemonic and die with their parent (see
    _Launcher), so let this process start them."""
    mp.current_process()._config["daemon"] = False


class _Launcher:
    """A single-threaded helper process that forks one worker per request (pool.run_local).
    Idle launchers are kept for the next task; one is started per concurrent task."""

    _idle: ClassVar[list[_Launcher]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self):
        _allow_children()
        methods = mp.get_all_start_methods()
        context = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        if context.get_start_method() == "forkserver":
            # The forkserver (a clean process that dies with its parent) has PySpice imported.
            context.set_forkserver_preload(["gcsim.spice._preload"])
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=_launcher_main, args=(theirs,), daemon=True,
                                       name="gcsim-launcher")
        self.process.start()
        theirs.close()

    @classmethod
    def call(cls, message, timeout_s: float):
        with cls._lock:
            launcher = cls._idle.pop() if cls._idle else None
        if launcher is not None:
            try:
                launcher.connection.send(message)
            except OSError:         # it died while idle: not this run's fault
                launcher.stop()
                launcher = None
        if launcher is None:
            launcher = cls()
            launcher.connection.send(message)
        try:
            if not launcher.connection.poll(timeout_s):
                raise TimeoutError
            answer = launcher.connection.recv()
        except (EOFError, OSError, TimeoutError):
            launcher.stop()
            return RunResult(False, error="gcsim's launcher process died or hung",
                             kind="crashed")
        with cls._lock:
            cls._idle.append(launcher)
        return answer

    def stop(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


def _launcher_main(connection) -> None:
    die_with_parent()
    _allow_children()
    preimport()
    context = fork_context()      # fork: this process has no other threads
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            break
        try:
            if message == "version":
                answer = probe_version(context)
            else:
                answer = next(run_local([message], 1, context))[1]
        except NgspiceUnavailable as exc:
            answer = exc
        except Exception as exc:  # noqa: BLE001 - e.g. fork failed: this run's failure
            answer = RunResult(False, error=f"{type(exc).__name__}: {exc}", kind="crashed")
        try:
            connection.send(answer)
        except OSError:
            break
    os._exit(0)
