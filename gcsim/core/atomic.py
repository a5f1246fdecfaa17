"""Atomic file writes: the data goes to temporary files beside the targets, which replace
the targets only once all are complete. A full disk, an error or a kill leaves the old files
intact (and a set of files is never half old, half new, but for the instant of the renames)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator


@contextmanager
def replacing_all(*paths: str | Path) -> Iterator[list[str]]:
    """Yield one temporary path per target; on success each replaces its target, on any
    error they are removed. A temporary name ends in its target's suffix, so writers that
    pick a format by extension (matplotlib) still do."""
    temporaries: list[str] = []
    try:
        for path in map(Path, paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                                 suffix=".tmp" + path.suffix)
            os.close(handle)
            temporaries.append(temporary)
        yield list(temporaries)
        for temporary, path in zip(temporaries, paths):
            os.replace(temporary, path)
    finally:
        for temporary in temporaries:
            if os.path.exists(temporary):
                os.unlink(temporary)


@contextmanager
def replacing(path: str | Path) -> Iterator[str]:
    """replacing_all() for one file."""
    with replacing_all(path) as (temporary,):
        yield temporary
