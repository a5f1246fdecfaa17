"""Content-addressed store of ngspice run results, so unchanged runs are never repeated and
an interrupted sweep resumes from the runs it had finished."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from gcsim.core import resources

# Bump when the meaning of a stored result changes; old entries are then simply missed.
SCHEMA = 1


def run_key(**content) -> str:
    """Hash everything that determines a run's result (netlist text, model file hashes,
    ngspice version, requested vectors) into one key."""
    blob = json.dumps({"schema": SCHEMA, **content}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResultCache:
    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else resources.cache_dir() / "runs"
        self.enabled = enabled
        self.corrupt = 0    # damaged entries found (and removed) by get() or discard()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as stored:
                # Reading each member whole makes zipfile check its CRC-32, so a flipped
                # bit is caught here rather than read as a result.
                return {name: stored[name] for name in stored.files}
        except OSError:
            # Missing, or a cache folder gcsim cannot read (a file in its place, no
            # permission): a miss, and the run is simply computed.
            return None
        except (ValueError, EOFError, KeyError, zipfile.BadZipFile):
            # Damaged (truncated by a full disk or a kill, a bad CRC, not an .npz at all):
            # remove it, so the run is recomputed and stored afresh.
            self.discard(key)
            return None

    def discard(self, key: str) -> None:
        """Drop a damaged entry (also used by a caller whose entry lacks what it needs)."""
        self.corrupt += 1
        try:
            self._path(key).unlink()
        except OSError:
            pass

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        path = self._path(key)
        temporary = None
        # Ctrl-C or SIGTERM waits for the entry to be written whole (a few ms): raised inside
        # np.savez, it would leave a half-closed zip whose finaliser prints a traceback.
        deferred = _defer_interrupts()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written beside the entry, then renamed over it: a reader never sees half an
            # entry. The temporary's name does not end in .npz, so it is never taken for one.
            handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, **arrays)
            os.chmod(temporary, _file_mode())   # mkstemp's 0600, widened as the umask allows
            os.replace(temporary, path)
        except OSError:
            # The cache is an optimisation; a read-only or full cache folder must not fail a sweep.
            pass
        finally:
            if temporary and os.path.exists(temporary):
                os.unlink(temporary)
            _restore_interrupts(deferred)


def _defer_interrupts():
    """Block SIGINT and SIGTERM in this thread (they stay pending); the previous mask."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _restore_interrupts(previous) -> None:
    """Unblock them again: a pending one is delivered here, after the entry is complete."""
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _file_mode() -> int:
    """The mode a new file gets under the process's umask (which can only be read by setting
    it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
