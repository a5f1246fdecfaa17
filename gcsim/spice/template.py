"""Parametrised SPICE templates: parse a designer's netlist and render checked variants of it.

A template is a plain, hand-runnable ngspice netlist whose top-level ``.param`` lines give
every parameter a literal default. gcsim only ever rewrites those values (with its own
formatting of checked floats), swaps the device-model line for the selected process, and
replaces the template's own analysis with the sweep's. For transient batching it wraps the
testbench in a subcircuit and instantiates it once per sweep point.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from gcsim.core.errors import ParameterError, SpecError
from gcsim.core.values import check_name, format_number, parse_number, shown

# Dot-cards that define an analysis or its output: the sweep supplies its own.
_ANALYSIS_CARDS = {".dc", ".tran", ".op", ".ac", ".noise", ".tf", ".sens", ".pz", ".disto",
                   ".four", ".meas", ".measure", ".print", ".plot", ".save", ".probe"}
# Dot-cards that belong to one testbench instance when the testbench is replicated.
_INSTANCE_CARDS = {".ic", ".nodeset"}
# The template's model line names this file; gcsim replaces it with the selected process.
MODEL_MARKER = "models/builtin.lib"
WRAPPER = "gcsim_point"

_PARAM_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _logical_lines(text: str) -> list[str]:
    """Join '+' continuation lines and drop comment and blank lines."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("*"):
            continue
        if stripped.startswith("+"):
            if not lines:
                raise SpecError(f"continuation line without a preceding line: {stripped!r}")
            lines[-1] += " " + stripped[1:].strip()
        else:
            lines.append(stripped)
    return lines


def _strip_inline_comment(line: str) -> str:
    # ngspice inline comments start with ' $ ' or ' ; ' (also '//' in some modes).
    for marker in (" $", " ;", "\t$", "\t;", " //"):
        position = line.find(marker)
        if position >= 0:
            line = line[:position]
    return line.rstrip()


def _card(line: str) -> str:
    return line.split(None, 1)[0].lower()


def _lib_section(lines: list[str], section: str, path: Path) -> list[str]:
    """Return the lines of ``.lib section`` ... ``.endl`` inside a library file."""
    out: list[str] = []
    inside = False
    for line in lines:
        words = line.split()
        card = words[0].lower()
        if card == ".lib" and len(words) == 2:
            inside = words[1].lower() == section.lower()
            continue
        if card == ".endl":
            if inside:
                return out
            continue
        if inside:
            out.append(line)
    raise SpecError(f"{path}: no section '.lib {section}'")


@dataclass
class Template:
    """A parsed netlist template. Build with :meth:`load`."""

    path: Path
    title: str
    defaults: dict[str, float]
    outside: list[str]          # subckts, models, options: kept once at top level
    body: list[str]             # testbench elements and .ic lines: replicated per instance
    model_line_index: int | None  # position in `outside` where the model lines go
    global_params: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: str | Path) -> "Template":
        path = Path(path).resolve()
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError(f"cannot read netlist {path}: {exc.strerror}") from None
        first = text.splitlines()[0] if text else ""
        title = first.lstrip("* ").strip() or path.name
        lines = _logical_lines(text)
        defaults: dict[str, float] = {}
        outside: list[str] = []
        top_level: list[str] = []   # outside lines not in a subckt: their {refs} are global
        body: list[str] = []
        model_index = None
        depth = 0
        in_control = False
        for line in cls._inline_includes(lines, path.parent, seen={path}):
            line = _strip_inline_comment(line)
            if not line:
                continue
            card = _card(line)
            if in_control:
                in_control = card != ".endc"
                continue
            if card == ".control":
                in_control = True
                continue
            if card == ".end":
                break
            if card == ".subckt":
                depth += 1
            if depth:
                outside.append(line)
                if card == ".ends":
                    depth -= 1
                continue
            if card == "@model":
                model_index = len(outside)
                continue
            if card == ".param":
                for name, value in _parse_param_line(line, path):
                    if name in defaults:
                        raise SpecError(f"{path.name}: parameter {name!r} declared twice")
                    defaults[name] = value
                continue
            if card in _ANALYSIS_CARDS:
                continue
            if card in _INSTANCE_CARDS or not card.startswith("."):
                body.append(line)
            else:
                outside.append(line)
                top_level.append(line)
        if not defaults:
            raise SpecError(f"{path.name}: a template needs .param lines with defaults")
        template = cls(path, title, defaults, outside, body, model_index)
        template.global_params = template._referenced(top_level) & set(defaults)
        return template

    @staticmethod
    def _inline_includes(lines: list[str], base: Path, seen: set[Path]) -> list[str]:
        """Inline .include/.lib files so a rendered netlist is self-contained (and its
        hash covers every line), except the model line, which becomes an ``@model`` mark."""
        out: list[str] = []
        for line in lines:
            words = line.split()
            card = words[0].lower()
            if card in (".include", ".inc", ".lib") and len(words) >= 2:
                target = words[1].strip("'\"")
                if target.endswith(MODEL_MARKER):
                    out.append("@model")
                    continue
                if card == ".lib" and len(words) == 2:   # a section header inside a library
                    out.append(line)
                    continue
                include = (base / target).resolve()
                if include in seen:
                    raise SpecError(f"{include}: included recursively")
                try:
                    included = _logical_lines(include.read_text())
                except OSError as exc:
                    raise SpecError(f"cannot read included file {include}: {exc.strerror}") from None
                if card == ".lib":
                    included = _lib_section(included, words[2], include)
                out.extend(Template._inline_includes(included, include.parent, seen | {include}))
            else:
                out.append(line)
        return out

    @staticmethod
    def _referenced(lines: list[str]) -> set[str]:
        names: set[str] = set()
        for line in lines:
            for expression in re.findall(r"\{([^}]*)\}", line):
                names.update(name.lower() for name in _PARAM_REF.findall(expression))
        return names

    def check_params(self, params: dict[str, object]) -> dict[str, float]:
        """Validate names against the template's declarations and values as numbers."""
        checked: dict[str, float] = {}
        for name, value in params.items():
            check_name(name)
            key = name.lower()
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults))
                raise ParameterError(
                    f"{self.path.name} declares no parameter {shown(name)} (it has: {known})")
            checked[key] = parse_number(value, f"parameter {name}")
        return checked

    def element_line(self, name: str) -> str | None:
        """The testbench line of element ``name`` (case-insensitive), if any."""
        for line in self.body:
            if line.split(None, 1)[0].lower() == name.lower():
                return line
        return None

    def render(self, params: dict[str, float], model_lines: list[str], analysis: list[str],
               instances: list[dict[str, float]] | None = None,
               save: list[str] | None = None) -> str:
        """Render a complete netlist.

        ``params`` overrides defaults for the whole run. With ``instances``, the testbench
        is wrapped in a subcircuit and placed once per entry, each with its own values of
        the parameters the entry names (``instance_name(i)`` is its name).
        """
        values = dict(self.defaults)
        values.update(self.check_params(params))
        lines = [f"* gcsim: {self.title}"]
        lines += [f".param {name}={format_number(value)}" for name, value in values.items()]
        outside = list(self.outside)
        index = len(outside) if self.model_line_index is None else self.model_line_index
        # Device models must precede the subcircuits that use them.
        outside[index:index] = model_lines
        lines += outside
        if instances is None:
            lines += self.body
        else:
            varying = sorted({name for entry in instances for name in entry})
            bad = set(varying) & self.global_params
            if bad:
                raise ParameterError(
                    f"parameters {sorted(bad)} are global (used in .options or models) and "
                    "cannot differ between batched instances")
            header = " ".join(f"{name}={format_number(values[name])}" for name in varying)
            lines.append(f".subckt {WRAPPER}" + (f" params: {header}" if header else ""))
            lines += self.body
            lines.append(f".ends {WRAPPER}")
            for number, entry in enumerate(instances):
                checked = self.check_params(entry)
                assigns = " ".join(f"{name}={format_number(checked[name])}"
                                   for name in sorted(checked))
                lines.append(f"{instance_name(number)} {WRAPPER} {assigns}".rstrip())
        if save:
            lines.append(".save " + " ".join(save))
        lines += analysis
        lines.append(".end")
        return "\n".join(lines) + "\n"


def instance_name(number: int) -> str:
    return f"xp{number}"


def _parse_param_line(line: str, path: Path) -> list[tuple[str, float]]:
    text = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
    pairs = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\S+)", text)
    if not pairs:
        raise SpecError(f"{path.name}: cannot read {line!r}")
    out = []
    for name, value in pairs:
        try:
            out.append((name.lower(), parse_number(value, f"{path.name}: .param {name}")))
        except ParameterError:
            raise SpecError(
                f"{path.name}: .param {name}={value}: template defaults must be literal "
                "numbers (write expressions where the parameter is used)") from None
    return out


_VECTOR = re.compile(r"^\s*([vi])\(\s*([A-Za-z0-9_.#]+)\s*\)\s*$", re.IGNORECASE)


def parse_vector(expression: str) -> tuple[str, str]:
    """Split a measurement such as ``i(VBL)`` or ``v(q_int)`` into (kind, name)."""
    match = _VECTOR.match(expression)
    if not match:
        raise SpecError(f"measure vector {expression!r}: expected v(NODE) or i(VSOURCE)")
    return match[1].lower(), match[2].lower()


def vector_name(expression: str, instance: int | None = None) -> str:
    """The ngspice vector that holds ``expression``, for the flat netlist or an instance."""
    kind, name = parse_vector(expression)
    if instance is None:
        return name if kind == "v" else f"{name}#branch"
    prefix = instance_name(instance)
    return f"{prefix}.{name}" if kind == "v" else f"v.{prefix}.{name}#branch"


def save_card(expression: str, instance: int | None = None) -> str:
    """The .save argument that keeps ``expression``'s vector."""
    kind, name = parse_vector(expression)
    if instance is None:
        return f"v({name})" if kind == "v" else f"i({name})"
    prefix = instance_name(instance)
    return f"v({prefix}.{name})" if kind == "v" else f"i(v.{prefix}.{name})"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
