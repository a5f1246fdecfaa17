"""One ngspice run in the current process (PySpice's shared-library interface): the request
and result types, finding libngspice, and the thread setting every run uses.

ngspice's harmless notes (version warnings, "Note:" lines) are kept as messages, not errors:
a run fails only when the analysis did not produce its vectors.
"""

from __future__ import annotations

import ctypes.util
import functools
import logging
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from gcsim.core.errors import GcsimError, NgspiceUnavailable

# Lines that say why an analysis failed; everything else ngspice prints is context.
_ERROR_WORDS = ("error", "too small", "singular", "converge", "abort", "failed", "gmin step",
                "source step", "could not", "unknown", "not found", "no such")


@dataclass
class RunRequest:
    """One ngspice run: a complete netlist, and the vectors to bring back."""

    netlist: str
    vectors: list[str]
    ngbehavior: str | None = None
    timeout_s: float = 600.0
    tag: object = None      # the caller's handle; never sent to ngspice
    accounting: bool = False    # also read ngspice's `rusage all` after the run (benchmarks)


@dataclass
class RunResult:
    ok: bool
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None      # ngspice's own message when not ok
    kind: str = "ok"              # ok | failed | timeout | crashed
    messages: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    # Where the run's time went, measured in the process that ran it (gcsim bench growth):
    # the circuit load (netlist and model library parsed, instances made) and its CPU time.
    load_s: float = 0.0
    cpu_s: float = 0.0
    # With RunRequest.accounting: ngspice's own figures ("Circuit Equations", "Transient
    # timepoints", "Matrix factor time", ...), numbers only, as `rusage all` names them.
    accounting: dict[str, float] = field(default_factory=dict)


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
    cpu_started = time.process_time()
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
    shared.exec_command(f"set num_threads={thread_setting()}")
    # ngspice writes files of its own into the working folder (bsim4v5.out: BSIM 4.5's
    # parameter check, which sky130's native devices trigger): a scratch folder takes them.
    with _scratch_folder():
        loading = time.perf_counter()
        try:
            shared.load_circuit(request.netlist)
        except NgSpiceCircuitError:
            pass
        load_s = time.perf_counter() - loading
        collect()
        try:
            shared.clear_output()
            shared.exec_command("run")
        except NgSpiceCommandError:
            pass
        collect()
        accounting = _accounting(shared) if request.accounting else {}
    vectors, missing = _read_vectors(shared, request.vectors, messages)
    elapsed = time.perf_counter() - started
    timing = {"load_s": load_s, "cpu_s": time.process_time() - cpu_started,
              "accounting": accounting}
    empty = [name for name, data in vectors.items() if data.size == 0]
    if missing or empty or (shared.last_plot or "").startswith("const"):
        reasons = [line.strip() for line in messages if _interesting(line)]
        reason = " | ".join(dict.fromkeys(reasons)) or \
            f"ngspice produced no values for {(missing or empty)[:3]}"
        return RunResult(False, {}, reason[:2000], "failed", messages[-50:], elapsed, **timing)
    return RunResult(True, vectors, None, "ok", messages[-50:], elapsed, **timing)


_ACCOUNTING_LINE = re.compile(r"^\s*([A-Za-z][^=]*?)\s*=\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)")


def _accounting(shared) -> dict[str, float]:
    """ngspice's `rusage all` after a run: its circuit size, time points, iterations and
    where the analysis time went, as {name: number} (units dropped: seconds, or counts)."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceCommandError

    try:
        text = shared.exec_command("rusage all") or ""
    except NgSpiceCommandError:
        return {}
    figures = {}
    for line in text.splitlines():
        match = _ACCOUNTING_LINE.match(line)
        if match:
            figures[match[1].strip()] = float(match[2])
    return figures


def _read_vectors(shared, wanted_vectors: list[str], messages: list[str]
                  ) -> tuple[dict[str, np.ndarray], list[str]]:
    """The wanted vectors of the last plot (matched without case), and those it lacks."""
    vectors: dict[str, np.ndarray] = {}
    missing: list[str] = []
    try:
        plot = shared.plot(None, shared.last_plot)
        names = {name.lower(): name for name in plot.keys()}
        for wanted in wanted_vectors:
            name = names.get(wanted.lower())
            if name is None:
                missing.append(wanted)
            else:
                vectors[wanted] = np.array(plot[name]._data, dtype=float)
    except Exception as exc:  # noqa: BLE001 - no plot at all after a failed run
        missing = list(wanted_vectors)
        messages.append(f"no result plot ({exc})")
    return vectors, missing


def thread_setting() -> int:
    """OpenMP threads per ngspice run: GCSIM_NGSPICE_THREADS, default 1."""
    text = os.environ.get("GCSIM_NGSPICE_THREADS", "1")
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise GcsimError(f"GCSIM_NGSPICE_THREADS must be a whole number 1..256, got {text!r}")
    return int(text)


# Environment variables through which ngspice would read a file gcsim has not checked: its
# spinit (SPICE_SCRIPTS), code models loaded as shared libraries (SPICE_LIB_DIR), `source`
# paths (NGSPICE_INPUT_DIR). Workers run without them, on the installed defaults.
_UNTRUSTED_ENVIRONMENT = ("SPICE_SCRIPTS", "SPICE_LIB_DIR", "NGSPICE_INPUT_DIR")


@contextmanager
def _working_in(folder: str):
    """Make ``folder`` the working folder, and go back afterwards (when there is a folder to
    go back to: the previous one may have been removed)."""
    previous = os.getcwd() if os.path.isdir(".") else None
    os.chdir(folder)
    try:
        yield folder
    finally:
        if previous is not None:
            os.chdir(previous)


@contextmanager
def _scratch_folder():
    """Work in a fresh temporary folder, removed afterwards with whatever was written there."""
    with tempfile.TemporaryDirectory(prefix="gcsim-run-") as folder, _working_in(folder):
        yield folder


@contextmanager
def private_folder():
    """Start ngspice in a fresh, empty, private (0700) folder that is also its HOME and
    SPICE_USERINIT_DIR, so no .spiceinit or spice.rc of the user's folder or home runs: ngspice
    reads those at start-up only. The folder is removed right after, and the process goes
    back to where it was (a worker runs no other file-relative code)."""
    folder = tempfile.mkdtemp(prefix="gcsim-ngspice-")
    for name in _UNTRUSTED_ENVIRONMENT:
        os.environ.pop(name, None)
    os.environ["HOME"] = folder
    os.environ["SPICE_USERINIT_DIR"] = folder
    try:
        with _working_in(folder):
            yield folder
    finally:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def new_ngspice():
    """A fresh PySpice NgSpiceShared instance, quiet about the unsupported version note,
    started where no init file can reach it (private_folder)."""
    path = library_path()
    # Debian's libngspice evaluates devices with OpenMP. gcsim runs one ngspice per core in
    # separate processes, and OpenMP's spinning threads then fight over the cores (measured:
    # 10-50x slower). libgomp reads these when ngspice loads it, i.e. just below.
    os.environ["OMP_NUM_THREADS"] = str(thread_setting())
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared

    NgSpiceShared.LIBRARY_PATH = path
    try:
        with private_folder():
            return NgSpiceShared.new_instance(send_data=False)
    except Exception as exc:  # noqa: BLE001 - not a library (OSError), not ngspice (AttributeError)
        reason = str(exc).split(".  Additionally")[0]     # cffi appends a find_library note
        if isinstance(exc, AttributeError):
            reason = f"not an ngspice library ({reason.split(':')[0]})"
        raise NgspiceUnavailable(f"cannot load ngspice library {path}: {reason}") from None


@functools.lru_cache(maxsize=1)
def preimport() -> None:
    """Import PySpice's ngspice module (0.25 s, mostly cffi parsing ngspice's header) once in
    the parent, so forked workers inherit it instead of repeating it for every run. This
    loads no ngspice library: the parent still never runs ngspice."""
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    try:
        import PySpice.Spice.NgSpice.Shared  # noqa: F401
    except Exception:  # noqa: BLE001 - the worker reports the problem properly
        pass
