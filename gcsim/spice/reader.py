"""Read SPICE files the way ngspice reads them, so nothing in them can run a command.

ngspice recognises a dot-card by its prefix (`.incx` acts as `.include`, `.controls` opens a
control block), runs the commands of a `.control` block, and takes any line starting with
`*#` as a control command. gcsim reads every template and every model-library file that ngspice
will see, at any include depth, under these rules: a card it does not know exactly is refused
with its file and line, never dropped; control blocks are refused in libraries and, in
templates, allowed only with the commands a designer uses to run the file by hand.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from gcsim.core.errors import SpecError
from gcsim.core.files import read_text

# Every dot-card gcsim passes on or understands. Anything else starting with "." is refused:
# ngspice would read it by prefix as one of these (or as something gcsim has not checked).
ANALYSIS_CARDS = frozenset({
    ".dc", ".tran", ".op", ".ac", ".noise", ".tf", ".sens", ".pz", ".disto", ".four", ".meas",
    ".measure", ".print", ".plot", ".save", ".probe", ".sp", ".pss",
})
INCLUDE_CARDS = frozenset({".include", ".inc", ".lib"})
KNOWN_CARDS = ANALYSIS_CARDS | INCLUDE_CARDS | frozenset({
    ".param", ".subckt", ".ends", ".model", ".endl", ".options", ".option", ".opt", ".ic",
    ".nodeset", ".global", ".temp", ".func", ".csparam", ".title", ".end", ".control", ".endc",
    ".if", ".elseif", ".else", ".endif",
})
# The commands a template's own control block may hold: they run its analysis and show the
# result when a designer runs the template in ngspice by hand. gcsim drops the block.
HAND_RUN_COMMANDS = frozenset({"run", "plot", "print", "display", "echo", "listing", "show",
                               "showmod", "op", "tran", "dc", "ac", "quit", "exit"})


@dataclass(frozen=True)
class Line:
    """One logical line: continuation lines joined, comments and inline comments removed."""

    path: Path
    number: int  # the physical line it starts on, from 1
    text: str

    @property
    def card(self) -> str:
        """The first word, lower-cased: '.include', 'x1', ..."""
        return self.text.split(None, 1)[0].lower()

    @property
    def words(self) -> list[str]:
        return self.text.split()

    @property
    def where(self) -> str:
        return f"{self.path}:{self.number}"


def _strip_inline_comment(line: str) -> str:
    # ngspice inline comments start with ' $ ' or ' ; ' (also '//' in some modes).
    if "$" not in line and ";" not in line and "//" not in line:
        return line.rstrip()
    for marker in (" $", " ;", "\t$", "\t;", " //"):
        position = line.find(marker)
        if position >= 0:
            line = line[:position]
    return line.rstrip()


def logical_lines(text: str, path: Path) -> list[Line]:
    """Join '+' continuations, drop comments; refuse '*#' lines (ngspice runs them)."""
    lines: list[Line] = []
    start, parts = 0, []  # the logical line being built: first line number, its pieces

    def close():
        if parts:
            joined = _strip_inline_comment(" ".join(parts))
            if joined:
                lines.append(Line(path, start, joined))

    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        first = stripped[0]
        if first == "*":
            if stripped.startswith("*#"):
                raise SpecError(f"{path}:{number}: a '*#' line is an ngspice control command; "
                                "gcsim refuses commands in netlists")
            continue
        if first == "+":
            if not parts:
                raise SpecError(f"{path}:{number}: continuation line without a preceding line")
            # An inline comment ends its physical line only.
            parts.append(_strip_inline_comment(stripped[1:].strip()))
            continue
        close()
        start, parts = number, [_strip_inline_comment(stripped)]
    close()
    return lines


def check_card(line: Line) -> None:
    """Refuse a dot-card gcsim does not know exactly, naming what ngspice would take it for."""
    card = line.card
    if not card.startswith(".") or card in KNOWN_CARDS:
        return
    mimicked = sorted((known for known in KNOWN_CARDS if card.startswith(known)),
                      key=len, reverse=True)
    reading = f" (ngspice reads it as {mimicked[0]})" if mimicked else ""
    raise SpecError(f"{line.where}: unknown dot-card {line.words[0]!r}{reading}; gcsim "
                    "refuses cards it does not understand")


def without_control_blocks(lines: list[Line], hand_run_allowed: bool) -> list[Line]:
    """The lines outside `.control` ... `.endc`; a block with anything but the hand-run
    commands (or, for a library, any block at all) is refused with its file and line."""
    out: list[Line] = []
    opened: Line | None = None
    for line in lines:
        card = line.card
        if opened is None:
            if card == ".control":
                if not hand_run_allowed:
                    raise SpecError(f"{line.where}: a .control block in a model library; gcsim "
                                    "refuses commands in libraries")
                opened = line
            elif card == ".endc":
                raise SpecError(f"{line.where}: .endc without .control")
            else:
                out.append(line)
            continue
        if card == ".endc":
            opened = None
        elif card not in HAND_RUN_COMMANDS:
            raise SpecError(f"{line.where}: control command {line.words[0]!r} in the .control "
                            f"block of line {opened.number}; gcsim allows only "
                            f"{', '.join(sorted(HAND_RUN_COMMANDS))} there")
    if opened is not None:
        raise SpecError(f"{opened.where}: .control block without .endc")
    return out


def read_lines(path: Path, what: str, hand_run_allowed: bool) -> list[Line]:
    """A checked file's logical lines, every dot-card checked, control blocks removed."""
    lines = logical_lines(read_text(path, what), path)
    for line in lines:
        check_card(line)
    return without_control_blocks(lines, hand_run_allowed)


def include_target(line: Line, base: Path) -> Path:
    """The file an .include / .lib FILE SECTION line names, resolved as ngspice does (beside
    the file that names it; `~` is the home folder)."""
    if len(line.words) < 2:
        raise SpecError(f"{line.where}: {line.card} without a file name")
    name = line.words[1].strip("'\"")
    target = Path(os.path.expanduser(name))
    return (target if target.is_absolute() else base / target).resolve()


def lib_section(lines: list[Line], section: str, path: Path) -> list[Line]:
    """The lines of `.lib SECTION` ... `.endl` in a library file."""
    out: list[Line] = []
    inside = False
    for line in lines:
        words = line.words
        if line.card == ".lib" and len(words) == 2:
            inside = words[1].lower() == section.lower()
            continue
        if line.card == ".endl":
            if inside:
                return out
            continue
        if inside:
            out.append(line)
    raise SpecError(f"{path}: no section '.lib {section}'")


def is_section_header(line: Line) -> bool:
    """`.lib NAME` (two words) opens a section; `.lib FILE NAME` reads one."""
    return line.card == ".lib" and len(line.words) == 2


def library_files(path: str | Path, section: str | None = None) -> tuple[Path, ...]:
    """Every file ngspice reads for `.lib PATH SECTION` (or `.include PATH` when `section` is
    None), in reading order, each read and checked: no control blocks, no '*#' lines, no
    unknown dot-cards, at any depth. Cached per file state (path, size, mtime)."""
    path = Path(path).resolve()
    return _library_files(path, section, *_state(path))


def _state(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _library_files(path: Path, section: str | None, size: int, mtime_ns: int
                   ) -> tuple[Path, ...]:
    order: list[Path] = []
    _walk(path, section, order, trail=())
    return tuple(order)


def _walk(path: Path, section: str | None, order: list[Path], trail: tuple) -> None:
    key = (path, section.lower() if section else None)
    if key in trail:
        raise SpecError(f"{path}: included recursively")
    lines = read_lines(path, "model library", hand_run_allowed=False)
    if path not in order:
        order.append(path)
    if section is not None:
        lines = lib_section(lines, section, path)
    for line in lines:
        if line.card not in INCLUDE_CARDS or is_section_header(line):
            continue
        target = include_target(line, path.parent)
        if line.card == ".lib":
            if len(line.words) < 3:
                raise SpecError(f"{line.where}: .lib FILE without a section name")
            _walk(target, line.words[2], order, trail + (key,))
        else:
            _walk(target, None, order, trail + (key,))


def files_digest(paths) -> dict[str, str]:
    """sha256 of each file, by path: what a cache key covers."""
    return {str(path): _sha256(Path(path), *_state(Path(path))) for path in paths}


@functools.lru_cache(maxsize=4096)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
