"""Atomic file writes: the data goes to temporary files beside the targets, which replace
the targets only once all are complete. A full disk, an error, Ctrl-C or SIGTERM leaves the old
files intact and no temporary behind (and a set of files is never half old, half new, but for
the instant of the renames).

A target must be absent or a regular file: replacing a device, FIFO, socket or symlink would
destroy it (as root, `-o /dev/null` would replace the machine's /dev/null). Two targets of one
command that are the same file (a table and its sidecar, a fit and its plot) are refused, since
one would silently overwrite the other. New files get the mode the umask allows, like any other
file the user creates.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gcsim.core.errors import GcsimError


class OutputError(GcsimError):
    """An output path that gcsim will not write: not a regular file, or two outputs in one."""


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_targets(paths, what: str = "output") -> list[Path]:
    """The targets as Paths, refused in one line when one exists and is not a regular file, or
    when two of them are the same file."""
    targets = [Path(path) for path in paths]
    seen: dict[object, Path] = {}
    for path in targets:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            info = None
        except OSError as exc:
            raise OutputError(f"{what} {path}: cannot use it ({exc.strerror or exc})") from None
        if info is not None and not stat.S_ISREG(info.st_mode):
            kind = ("a symlink" if stat.S_ISLNK(info.st_mode) else
                    "a folder" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket")
            raise OutputError(f"{what} {path}: exists and is {kind}, not a regular file; "
                              "gcsim will not replace it")
        # The real path (folders reached through symlinks), or for an existing file its
        # inode (hard links): two names for one file are one target.
        key = (info.st_dev, info.st_ino) if info is not None else os.path.realpath(path)
        if key in seen:
            raise OutputError(f"{what} {path}: the same file as {seen[key]}; one would "
                              "overwrite the other")
        seen[key] = path
    return targets


@contextmanager
def replacing_all(*paths: str | Path, what: str = "output") -> Iterator[list[str]]:
    """Yield one temporary path per target; on success each replaces its target, on any
    error or interruption they are removed. A temporary name ends in its target's suffix, so
    writers that pick a format by extension (matplotlib) still do."""
    targets = check_targets(paths, what)
    temporaries: list[str] = []
    mode = 0o666 & ~_umask()
    try:
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                                 suffix=".tmp" + path.suffix)
            os.close(handle)
            temporaries.append(temporary)
        yield list(temporaries)
        check_targets(targets, what)   # nothing was put in their place meanwhile
        for temporary in temporaries:
            os.chmod(temporary, mode)
        for temporary, path in zip(temporaries, targets):
            os.replace(temporary, path)
    finally:
        for temporary in temporaries:
            if os.path.exists(temporary):
                os.unlink(temporary)


@contextmanager
def replacing(path: str | Path, what: str = "output") -> Iterator[str]:
    """replacing_all() for one file."""
    with replacing_all(path, what=what) as (temporary,):
        yield temporary


def write_text_atomically(path: str | Path, text: str, what: str = "output") -> Path:
    """Write `text` to `path` through replacing()."""
    with replacing(path, what) as temporary:
        with open(temporary, "w") as stream:
            stream.write(text)
    return Path(path)
