"""Local worker processes: each ngspice run in a fresh forked process, several at once, with
time limits, crash reports, and the parent's signals kept away from the workers.

Each run gets a fresh process, so ngspice's global state, its memory growth and any crash
stay inside it; the parent enforces a time limit by killing the process.
"""

from __future__ import annotations

import contextvars
import ctypes
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import time
from typing import Iterable, Iterator

from gcsim.core import interrupts
from gcsim.core.errors import NgspiceUnavailable
from gcsim.spice.run import (RunRequest, RunResult, library_path, new_ngspice, preimport,
                             run_in_this_process, thread_setting)

# The executor run_many() uses when given none (gcsim.spice.executors.use sets it); None: local.
DEFAULT_EXECUTOR: contextvars.ContextVar = contextvars.ContextVar("gcsim_executor",
                                                                  default=None)

# How often the pool's loop looks for a stop request whose exception Python dropped.
POLL_S = 0.2


def run_many(requests: Iterable[RunRequest], workers: int = 1,
             executor=None) -> Iterator[tuple[RunRequest, RunResult]]:
    """Run requests in up to ``workers`` fresh processes at once; yield results as they end.

    A run over its ``timeout_s`` is killed and reported as ``timeout``; a process that dies
    without answering is reported as ``crashed``. The generator may be fed lazily.

    ``executor`` (see gcsim.spice.executors) runs them elsewhere, e.g. on a Dask cluster, with the
    same results; None takes the one set by ``executors.use()``, else runs them here.
    """
    if executor is None:
        executor = DEFAULT_EXECUTOR.get()
    if executor is not None and not getattr(executor, "is_local", False):
        yield from executor.run_many(requests, workers)
        return
    library_path()      # fail fast, once, with the install hint
    thread_setting()    # and on a bad GCSIM_NGSPICE_THREADS, before any worker starts
    preimport()
    yield from run_local(requests, workers, fork_context())


def fork_context():
    # fork is fast and the parent never loads ngspice itself, so children start clean.
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def run_local(requests: Iterable[RunRequest], workers: int,
              context) -> Iterator[tuple[RunRequest, RunResult]]:
    """run_many's loop: up to ``workers`` processes from ``context``, fed from ``requests``."""
    pending = iter(requests)
    running: dict[object, tuple[RunRequest, mp.Process, float]] = {}
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < max(1, workers):
                try:
                    request = next(pending)
                except StopIteration:
                    exhausted = True
                    break
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(target=_worker, args=(request, sender), daemon=True)
                start_worker(process)
                sender.close()
                running[receiver] = (request, process, time.monotonic() + request.timeout_s)
            if not running:
                return
            interrupts.raise_if_requested()
            # Woken at least every POLL_S to act on a stop request whose exception was dropped.
            deadline = min(limit for _, _, limit in running.values())
            ready = mp.connection.wait(list(running),
                                       timeout=min(POLL_S, max(0.0, deadline - time.monotonic())))
            for receiver in ready:
                request, process, _ = running.pop(receiver)
                yield request, _answer(receiver, process)
            yield from _expire(running, ready)
    finally:
        for receiver, (_, process, _) in running.items():
            process.kill()
            process.join(timeout=5)
            receiver.close()


def _answer(receiver, process) -> RunResult:
    """A finished worker's result (or its death), with the worker reaped."""
    try:
        result = receiver.recv()
    except (EOFError, OSError):
        process.join(timeout=5)
        result = RunResult(False, error=f"ngspice worker died (exit code "
                           f"{process.exitcode})", kind="crashed")
    receiver.close()
    process.join(timeout=5)
    if process.is_alive():
        process.kill()
    return result


def _expire(running: dict, ready: list) -> Iterator[tuple[RunRequest, RunResult]]:
    """Kill the workers past their time limit and report each as a timeout."""
    now = time.monotonic()
    for receiver, (request, process, limit) in list(running.items()):
        if now >= limit and receiver not in ready:
            process.kill()
            process.join(timeout=5)
            running.pop(receiver)
            receiver.close()
            yield request, RunResult(
                False, error=f"time limit of {request.timeout_s:g} s exceeded",
                kind="timeout")


def terminable() -> None:
    """In a worker: SIGTERM ends it, as for any process (start_worker blocked it)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _worker(request: RunRequest, connection) -> None:
    # A CLI killed by SIGKILL (or a lost Dask worker's launcher) takes its runs with it.
    die_with_parent()
    terminable()
    try:
        result = run_in_this_process(request)
    except NgspiceUnavailable as exc:
        result = RunResult(False, error=str(exc), kind="unavailable")
    except Exception as exc:  # noqa: BLE001 - reported to the parent as this run's failure
        result = RunResult(False, error=f"{type(exc).__name__}: {exc}", kind="crashed")
    try:
        connection.send(result)
    except OSError:
        pass    # the parent is gone (e.g. a lost Dask worker): nobody to tell
    finally:
        connection.close()
        # Skip interpreter teardown: ngspice's atexit handlers can hang or crash.
        os._exit(0)


def die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies, so a killed CLI or a
    lost Dask worker leaves no ngspice run behind. Elsewhere the run simply finishes unread."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_worker(process) -> None:
    """Start a worker with SIGINT blocked, for its whole life: Ctrl-C (sent to the whole
    process group) is the parent's to handle, which kills its workers and reports one line;
    a worker that took it too would print its own traceback. Workers still die by SIGKILL."""
    if not hasattr(signal, "pthread_sigmask"):
        process.start()
        return
    # SIGTERM too, but only while forking: a handler that raises (the CLI's, which treats
    # SIGTERM like Ctrl-C) would otherwise fire inside fork's bookkeeping, where the exception
    # is printed and dropped. Blocked, it arrives just after. The worker unblocks it.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_in_one_worker(requests: list[RunRequest], timeout_s: float = 3600.0
                      ) -> tuple[list[RunResult], float]:
    """Run ``requests`` one after another in one fresh worker process that keeps a single
    ngspice instance, as a plain PySpice script would (the per-point baseline of
    ``gcsim bench sweep``). Returns the results and the seconds the loop took in the worker.
    The parent never loads ngspice, so later forks start clean."""
    context = fork_context()
    receiver, sender = context.Pipe(duplex=False)
    plain = [RunRequest(r.netlist, r.vectors, r.ngbehavior, r.timeout_s) for r in requests]
    process = context.Process(target=_sequence_worker, args=(plain, sender), daemon=True)
    start_worker(process)
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            raise NgspiceUnavailable(f"the per-point runs took longer than {timeout_s:g} s")
        answer = receiver.recv()
    except EOFError:
        raise NgspiceUnavailable("the ngspice worker died during the per-point runs") from None
    finally:
        receiver.close()
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
    if isinstance(answer, Exception):
        raise NgspiceUnavailable(str(answer))
    return answer


def _sequence_worker(requests: list[RunRequest], connection) -> None:
    terminable()
    try:
        shared = new_ngspice()
        started = time.perf_counter()
        results = [run_in_this_process(request, shared) for request in requests]
        connection.send((results, time.perf_counter() - started))
    except Exception as exc:  # noqa: BLE001 - forwarded to the parent
        connection.send(NgspiceUnavailable(f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()
        os._exit(0)
