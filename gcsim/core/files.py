"""Reading files a user hands gcsim: only regular files of a sane size are opened, so a device
(/dev/zero), a FIFO or a huge file is one clear error instead of a hang or exhausted memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gcsim.core.errors import GcsimError

# Larger than any netlist, spec, fit file or model library gcsim reads (the sky130 library
# files are at most a few MB each); a file beyond it is refused before it is read.
MAX_TEXT_BYTES = 64 * 1024 * 1024
# Input arrays (.npy): 4 GiB, 500 million float64 values, is past any attention tile.
MAX_ARRAY_BYTES = 4 * 1024**3


def check_regular(path: str | Path, what: str, max_bytes: int = MAX_TEXT_BYTES) -> Path:
    """`path` if it is a regular file no larger than `max_bytes`; else one-line GcsimError.

    stat() follows symlinks, so a link to a regular file is fine and a link to a device is not;
    nothing is opened, so a FIFO cannot block."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise GcsimError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise GcsimError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise GcsimError(f"{what} {path}: is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise GcsimError(f"{what} {path}: not a regular file (a device, FIFO or socket)")
    if info.st_size > max_bytes:
        raise GcsimError(f"{what} {path}: {info.st_size:,} bytes, more than the "
                         f"{max_bytes:,} gcsim reads")
    return path


def read_bytes(path: str | Path, what: str, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of a checked regular file (re-checked while reading: it may grow)."""
    path = check_regular(path, what, max_bytes)
    try:
        # O_NONBLOCK: should the file be swapped for a FIFO after the check, open() does not hang.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise GcsimError(f"{what} {path}: not a regular file")
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise GcsimError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise GcsimError(f"{what} {path}: more than the {max_bytes:,} bytes gcsim reads")
    return data


def read_text(path: str | Path, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text of a checked regular file, decoded as UTF-8 (Latin-1 as a fallback: model
    libraries from foundries carry the odd non-UTF-8 byte in comments)."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
