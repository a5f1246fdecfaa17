"""Runs netlists in ngspice (PySpice's shared-library interface), one worker process per run.

Each run gets a fresh process, so ngspice's global state, its memory growth and any crash
stay inside it; the parent enforces a time limit by killing the process. ngspice's
harmless notes (version warnings, "Note:" lines) are kept as messages, not errors: a run
fails only when the analysis did not produce its vectors.
"""

from __future__ import annotations

import contextvars
import ctypes.util
import functools
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar, Iterable, Iterator

import numpy as np

from gcsim.core.errors import GcsimError, NgspiceUnavailable

# Lines that say why an analysis failed; everything else ngspice prints is context.
_ERROR_WORDS = ("error", "too small", "singular", "converge", "abort", "failed", "gmin step",
                "source step", "could not", "unknown", "not found", "no such")

# The executor run_many() uses when given none (gcsim.spice.executors.use sets it); None: local.
DEFAULT_EXECUTOR: contextvars.ContextVar = contextvars.ContextVar("gcsim_executor",
                                                                  default=None)


@dataclass
class RunRequest:
    """One ngspice run: a complete netlist, and the vectors to bring back."""

    netlist: str
    vectors: list[str]
    ngbehavior: str | None = None
    timeout_s: float = 600.0
    tag: object = None      # the caller's handle; never sent to ngspice


@dataclass
class RunResult:
    ok: bool
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None      # ngspice's own message when not ok
    kind: str = "ok"              # ok | failed | timeout | crashed
    messages: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def library_path() -> str:
    """Locate libngspice, or raise NgspiceUnavailable with what to install."""
    explicit = os.environ.get("NGSPICE_LIBRARY_PATH")
    if explicit:
        if not os.path.exists(explicit):
            raise NgspiceUnavailable(f"NGSPICE_LIBRARY_PATH={explicit} does not exist")
        return explicit
    for candidate in ("/usr/lib/x86_64-linux-gnu/libngspice.so", "/usr/lib/libngspice.so",
                      "/usr/local/lib/libngspice.so", "/usr/lib/aarch64-linux-gnu/libngspice.so",
                      "/opt/homebrew/lib/libngspice.dylib", "/usr/local/lib/libngspice.dylib"):
        if os.path.exists(candidate):
            return candidate
    found = ctypes.util.find_library("ngspice")
    if found:
        return found
    raise NgspiceUnavailable(
        "ngspice shared library not found: install it (Debian/Ubuntu: apt-get install ngspice "
        "libngspice0-dev) or set NGSPICE_LIBRARY_PATH to libngspice.so")


def _interesting(line: str) -> bool:
    low = line.strip().lower()
    return bool(low) and any(word in low for word in _ERROR_WORDS) and not low.startswith("note:")


def run_in_this_process(request: RunRequest, shared=None) -> RunResult:
    """Run one netlist in the current process. Workers call this; so does the per-point
    baseline of ``gcsim bench sweep``, which reuses one ngspice instance on purpose."""
    started = time.perf_counter()
    if shared is None:
        shared = new_ngspice()
    from PySpice.Spice.NgSpice.Shared import NgSpiceCircuitError, NgSpiceCommandError

    messages: list[str] = []

    def collect() -> None:
        messages.extend(line for line in (shared._stdout + shared._stderr) if line.strip())

    try:
        shared.destroy()
        shared.remove_circuit()
    except (NgSpiceCommandError, AttributeError):
        pass
    if request.ngbehavior:
        shared.exec_command(f"set ngbehavior={request.ngbehavior}")
    # ngspice ignores OMP_NUM_THREADS: unless num_threads is set it asks OpenMP for 2 threads
    # at every analysis. One per process is faster even alone (a 64-row tile column: 0.63 s
    # against 0.78 s) and does not oversubscribe the cores next to the other workers.
    shared.exec_command(f"set num_threads={_threads()}")
    try:
        shared.load_circuit(request.netlist)
    except NgSpiceCircuitError:
        pass
    collect()
    try:
        shared.clear_output()
        shared.exec_command("run")
    except NgSpiceCommandError:
        pass
    collect()
    vectors: dict[str, np.ndarray] = {}
    missing: list[str] = []
    try:
        plot = shared.plot(None, shared.last_plot)
        names = {name.lower(): name for name in plot.keys()}
        for wanted in request.vectors:
            name = names.get(wanted.lower())
            if name is None:
                missing.append(wanted)
            else:
                vectors[wanted] = np.array(plot[name]._data, dtype=float)
    except Exception as exc:  # noqa: BLE001 - no plot at all after a failed run
        missing = list(request.vectors)
        messages.append(f"no result plot ({exc})")
    elapsed = time.perf_counter() - started
    empty = [name for name, data in vectors.items() if data.size == 0]
    if missing or empty or (shared.last_plot or "").startswith("const"):
        reasons = [line.strip() for line in messages if _interesting(line)]
        reason = " | ".join(dict.fromkeys(reasons)) or \
            f"ngspice produced no values for {(missing or empty)[:3]}"
        return RunResult(False, {}, reason[:2000], "failed", messages[-50:], elapsed)
    return RunResult(True, vectors, None, "ok", messages[-50:], elapsed)


def _threads() -> int:
    """OpenMP threads per ngspice run: GCSIM_NGSPICE_THREADS, default 1."""
    text = os.environ.get("GCSIM_NGSPICE_THREADS", "1")
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise GcsimError(f"GCSIM_NGSPICE_THREADS must be a whole number 1..256, got {text!r}")
    return int(text)


def new_ngspice():
    """A fresh PySpice NgSpiceShared instance, quiet about the unsupported version note."""
    path = library_path()
    # Debian's libngspice evaluates devices with OpenMP. gcsim runs one ngspice per core in
    # separate processes, and OpenMP's spinning threads then fight over the cores (measured:
    # 10-50x slower). libgomp reads these when ngspice loads it, i.e. just below.
    os.environ["OMP_NUM_THREADS"] = str(_threads())
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared

    NgSpiceShared.LIBRARY_PATH = path
    try:
        return NgSpiceShared.new_instance(send_data=False)
    except Exception as exc:  # noqa: BLE001 - not a library (OSError), not ngspice (AttributeError)
        reason = str(exc).split(".  Additionally")[0]     # cffi appends a find_library note
        if isinstance(exc, AttributeError):
            reason = f"not an ngspice library ({reason.split(':')[0]})"
        raise NgspiceUnavailable(f"cannot load ngspice library {path}: {reason}") from None


@functools.lru_cache(maxsize=1)
def _preimport() -> None:
    """Import PySpice's ngspice module (0.25 s, mostly cffi parsing ngspice's header) once in
    the parent, so forked workers inherit it instead of repeating it for every run. This
    loads no ngspice library: the parent still never runs ngspice."""
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    try:
        import PySpice.Spice.NgSpice.Shared  # noqa: F401
    except Exception:  # noqa: BLE001 - the worker reports the problem properly
        pass


def _worker(request: RunRequest, connection) -> None:
    # A CLI killed by SIGKILL (or a lost Dask worker's launcher) takes its runs with it.
    _die_with_parent()
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


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies, so a killed CLI or a
    lost Dask worker leaves no ngspice run behind. Elsewhere the run simply finishes unread."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start(process) -> None:
    """Start a worker with SIGINT blocked, for its whole life: Ctrl-C (sent to the whole
    process group) is the parent's to handle, which kills its workers and reports one line;
    a worker that took it too would print its own traceback. Workers still die by SIGKILL."""
    if not hasattr(signal, "pthread_sigmask"):
        process.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _context():
    # fork is fast and the parent never loads ngspice itself, so children start clean.
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def _allow_children() -> None:
    """multiprocessing refuses children in a daemonic process, and Dask starts its worker
    processes as daemons. gcsim's launchers are daemonic and die with their parent (see
    _Launcher), so let this process start them."""
    mp.current_process()._config["daemon"] = False


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
    library_path()  # fail fast, once, with the install hint
    _threads()      # and on a bad GCSIM_NGSPICE_THREADS, before any worker starts
    _preimport()
    yield from _run_local(requests, workers, _context())


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


class _Launcher:
    """A single-threaded helper process that forks one worker per request (_run_local).
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
    _die_with_parent()
    _allow_children()
    _preimport()
    context = _context()      # fork: this process has no other threads
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            break
        try:
            if message == "version":
                answer = _probe_version(context)
            else:
                answer = next(_run_local([message], 1, context))[1]
        except NgspiceUnavailable as exc:
            answer = exc
        except Exception as exc:  # noqa: BLE001 - e.g. fork failed: this run's failure
            answer = RunResult(False, error=f"{type(exc).__name__}: {exc}", kind="crashed")
        try:
            connection.send(answer)
        except OSError:
            break
    os._exit(0)


def _run_local(requests: Iterable[RunRequest], workers: int,
               context) -> Iterator[tuple[RunRequest, RunResult]]:
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
                _start(process)
                sender.close()
                running[receiver] = (request, process, time.monotonic() + request.timeout_s)
            if not running:
                return
            deadline = min(limit for _, _, limit in running.values())
            ready = mp.connection.wait(list(running), timeout=max(0.0, deadline - time.monotonic()))
            for receiver in ready:
                request, process, _ = running.pop(receiver)
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
                yield request, result
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
    finally:
        for receiver, (_, process, _) in running.items():
            process.kill()
            process.join(timeout=5)
            receiver.close()


def run_in_one_worker(requests: list[RunRequest], timeout_s: float = 3600.0
                      ) -> tuple[list[RunResult], float]:
    """Run ``requests`` one after another in one fresh worker process that keeps a single
    ngspice instance, as a plain PySpice script would (the per-point baseline of
    ``gcsim bench sweep``). Returns the results and the seconds the loop took in the worker.
    The parent never loads ngspice, so later forks start clean."""
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    plain = [RunRequest(r.netlist, r.vectors, r.ngbehavior, r.timeout_s) for r in requests]
    process = context.Process(target=_sequence_worker, args=(plain, sender), daemon=True)
    _start(process)
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


@functools.lru_cache(maxsize=1)
def ngspice_version() -> str:
    """The version line of the ngspice shared library, read once per process in a
    throwaway worker (so `gcsim run` probes once for all its specs)."""
    return _probe_version(_context())


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


def _probe_version(context) -> str:
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_version_worker, args=(sender,), daemon=True)
    _start(process)
    sender.close()
    if not receiver.poll(60):
        process.kill()
        raise NgspiceUnavailable("ngspice did not answer a version query within 60 s")
    try:
        answer = receiver.recv()
    except EOFError:
        raise NgspiceUnavailable("ngspice crashed on a version query") from None
    finally:
        process.join(timeout=5)
    if isinstance(answer, Exception):
        raise NgspiceUnavailable(str(answer))
    return answer


def _version_worker(connection) -> None:
    try:
        shared = new_ngspice()
        text = shared.exec_command("version -s")
        line = next((l.strip() for l in text.splitlines() if "ngspice" in l.lower()),
                    f"ngspice-{shared.ngspice_version}")
        connection.send(line.strip("* ").strip())
    except Exception as exc:  # noqa: BLE001 - forwarded to the parent
        connection.send(NgspiceUnavailable(str(exc)))
    finally:
        connection.close()
        os._exit(0)
