"""Parametrised SPICE templates: parse a designer's netlist and render checked variants of it.

A template is a plain, hand-runnable ngspice netlist whose top-level ``.param`` lines give
every parameter a literal default. gcsim only ever rewrites those values (with its own
formatting of checked floats), swaps the device-model line for the selected process, and
replaces the template's own analysis with the sweep's. For transient batching it wraps the
testbench in a subcircuit and instantiates it once per sweep point.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from gcsim.core.errors import ParameterError, SpecError
from gcsim.core.values import check_name, format_number, parse_number, shown
from gcsim.spice import reader

# Dot-cards that define an analysis or its output: the sweep supplies its own.
_ANALYSIS_CARDS = reader.ANALYSIS_CARDS
# Dot-cards that belong to one testbench instance when the testbench is replicated.
_INSTANCE_CARDS = {".ic", ".nodeset"}
# The template's model line names this file; gcsim replaces it with the selected process.
MODEL_MARKER = "models/builtin.lib"
WRAPPER = "gcsim_point"
# Prefix of the global node a shared .dc source drives (Template.render's shared_sources).
SHARED_NODE = "gcsim_dc_"

_PARAM_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    options: list[str] = field(default_factory=list)   # top-level .options lines

    @classmethod
    def load(cls, path: str | Path) -> "Template":
        """Read a template and every file it includes, as ngspice would (gcsim.spice.reader):
        an unknown dot-card, a '*#' line or a control block with more than the hand-run
        commands is refused with its file and line."""
        path = Path(path).resolve()
        lines = reader.read_lines(path, "netlist", hand_run_allowed=True)
        first = lines[0].text if lines and lines[0].number == 1 else ""
        title = path.name
        with open(path, "rb") as handle:   # the title is the first physical line, a comment
            head = handle.readline(400).decode("utf-8", "replace")
        title = head.lstrip("* ").strip() or first or path.name
        defaults: dict[str, float] = {}
        outside: list[str] = []
        top_level: list[str] = []   # outside lines not in a subckt: their {refs} are global
        body: list[str] = []
        model_index = None
        depth = 0
        for line in cls._inline_includes(lines, path.parent, seen={path}):
            card = line.split(None, 1)[0].lower()
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
        template.global_params = template.referenced(top_level) & set(defaults)
        template.options = [line for line in top_level
                            if line.split(None, 1)[0].lower() in (".options", ".option", ".opt")]
        return template

    @staticmethod
    def _inline_includes(lines: list[reader.Line], base: Path, seen: set[Path]) -> list[str]:
        """Inline .include/.lib files so a rendered netlist is self-contained (and its
        hash covers every line), except the model line, which becomes an ``@model`` mark.
        Included files are read and checked like the template, without control blocks."""
        out: list[str] = []
        for line in lines:
            if line.card in reader.INCLUDE_CARDS and not reader.is_section_header(line):
                if line.words[1:2] and line.words[1].strip("'\"").endswith(MODEL_MARKER):
                    out.append("@model")
                    continue
                include = reader.include_target(line, base)
                if include in seen:
                    raise SpecError(f"{include}: included recursively")
                included = reader.read_lines(include, "included file", hand_run_allowed=False)
                if line.card == ".lib":
                    if len(line.words) < 3:
                        raise SpecError(f"{line.where}: .lib FILE without a section name")
                    included = reader.lib_section(included, line.words[2], include)
                out.extend(Template._inline_includes(included, include.parent, seen | {include}))
            else:
                out.append(line.text)
        return out

    @staticmethod
    def referenced(lines: list[str]) -> set[str]:
        """Every name inside the lines' {expressions}, lower case: a superset of the
        parameters they use (a number's exponent or suffix, as in 1e-3 or 1m, reads as a name
        too, so intersect with the declared parameters)."""
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

    @functools.cached_property
    def connectivity(self) -> Connectivity:
        """The testbench's nodes and elements, read from its element lines (``body``) and
        ``.global`` cards; names as ngspice compares them (lower case)."""
        return _connectivity(self.body, self.outside)

    def nodes(self) -> set[str]:
        """Nodes of the testbench's element lines and ``.global`` nodes (lower case). Lines
        whose nodes gcsim could not read are in ``connectivity.unread``."""
        return set(self.connectivity.nodes)

    def branch_sources(self) -> set[str]:
        """Testbench elements whose current ngspice keeps as a branch, read by i(NAME):
        voltage sources, inductors, E and H sources, B sources with V= (lower case)."""
        return set(self.connectivity.branches)

    def element_line(self, name: str) -> str | None:
        """The testbench line of element ``name`` (case-insensitive), if any."""
        for line in self.body:
            if line.split(None, 1)[0].lower() == name.lower():
                return line
        return None

    def render(self, params: dict[str, float], model_lines: list[str], analysis: list[str],
               instances: list[dict[str, float]] | None = None,
               save: list[str] | None = None, shared_sources: list[str] = ()) -> str:
        """Render a complete netlist.

        ``params`` overrides defaults for the whole run. With ``instances``, the testbench
        is wrapped in a subcircuit and placed once per entry, each with its own values of
        the parameters the entry names (``instance_name(i)`` is its name). Each of
        ``shared_sources`` (voltage sources of the testbench, with instances) becomes one
        top-level source of that name driving a global node, which every instance's copy
        follows through a unity VCVS: a ``.dc`` of the top-level source then sweeps every
        instance at once.
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
            body = list(self.body)
            for source in shared_sources:
                node = f"{SHARED_NODE}{source.lower()}"
                line = self.element_line(source)
                if line is None or not source.lower().startswith("v"):
                    raise ParameterError(f"{self.path.name}: no voltage source {source} to share")
                words = line.split()
                body[body.index(line)] = f"E{words[0]} {words[1]} {words[2]} {node} 0 1"
                lines += [f".global {node}", f"{words[0]} {node} 0 0"]
            lines.append(f".subckt {WRAPPER}" + (f" params: {header}" if header else ""))
            lines += body
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


@dataclass(frozen=True)
class Connectivity:
    """What a testbench's element lines connect. Each mapping goes from the lower-case name
    (as ngspice compares names) to the name as written."""

    nodes: dict[str, str]
    branches: dict[str, str]      # elements whose current i(NAME) reads
    elements: dict[str, str]      # every element, X instances included
    instances: dict[str, str]     # X lines: subcircuit instances
    unread: tuple[str, ...]       # element lines whose nodes could not all be read


# Node fields after the element name, by element letter (the rest take a model or value).
# E/G (4, or 2 in their expression forms), F/H/W (2 and a controlling source), X and the
# devices with a model name (M, Q, J, Z: every field before it) are read apart.
_NODE_FIELDS = {"r": 2, "c": 2, "l": 2, "v": 2, "i": 2, "d": 2, "b": 2, "f": 2, "h": 2,
                "w": 2, "s": 4, "t": 4, "o": 4, "u": 3, "k": 0}
# Devices whose nodes are the fields before their model name, and the fewest they have.
_MODEL_DEVICES = {"m": 4, "q": 3, "j": 3, "z": 3}
# Elements with a branch current (NAME#branch) for i(NAME); B sources only with V=.
_BRANCH_LETTERS = {"v", "l", "e", "h"}
# E and G sources whose output is an expression or a table: two nodes, no controlling pair.
_EXPRESSION_WORDS = ("vol", "cur", "value", "table", "laplace", "freq")
_POLY = re.compile(r"poly\(\s*(\d+)\s*\)$", re.IGNORECASE)


def _fields(line: str) -> list[str]:
    """A line's fields: split at spaces outside quotes, braces and parentheses, with
    ``key = value`` closed up to ``key=value``."""
    text = re.sub(r"\s*=\s*", "=", line.strip())
    fields, current, depth, quote = [], "", 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "({":
            depth += 1
        elif char in ")}":
            depth = max(depth - 1, 0)
        elif char.isspace() and not depth:
            if current:
                fields.append(current)
            current = ""
            continue
        current += char
    if current:
        fields.append(current)
    return fields


def _is_node(field: str) -> bool:
    return bool(field) and not any(c in field for c in "=(){}'\"")


def _element_nodes(letter: str, rest: list[str]) -> tuple[list[str], bool]:
    """The node fields of an element line (``rest``: the fields after its name), and
    whether they were all read."""
    if letter in _MODEL_DEVICES:      # nodes, then the model, then key=value or values
        words = [f for f in rest if "=" not in f]
        return words[:-1], len(words) - 1 >= _MODEL_DEVICES[letter]
    if letter == "x":                 # nodes, then the subcircuit, then params
        words = []
        for f in rest:
            if f.lower() == "params:":
                break
            if "=" not in f:
                words.append(f)
        return words[:-1], len(words) >= 1
    if letter in ("e", "g"):
        nodes, after = rest[:2], rest[2:]
        if len(nodes) < 2 or not after:
            return nodes, False
        word = after[0].lower()
        if word in _EXPRESSION_WORDS or (word.startswith(_EXPRESSION_WORDS)
                                         and not _is_node(word)):
            return nodes, True        # vol='...', value={...}, table {...} = ..., ...
        poly = _POLY.match(word)
        if poly:
            count = 2 * int(poly[1])
            return nodes + after[1:1 + count], len(after) > count
        return nodes + after[:2], len(after) >= 3
    if letter in _NODE_FIELDS:
        count = _NODE_FIELDS[letter]
        return rest[:count], len(rest) >= count
    return [], False                  # A, N, P, Y, ...: not read


def _connectivity(body: list[str], outside: list[str]) -> Connectivity:
    nodes: dict[str, str] = {}
    branches: dict[str, str] = {}
    elements: dict[str, str] = {}
    instances: dict[str, str] = {}
    unread: list[str] = []
    for line in outside:              # .global nodes exist at the top level too
        fields = _fields(line)
        if fields and fields[0].lower() == ".global":
            nodes.update((f.lower(), f) for f in fields[1:] if _is_node(f))
    for line in body:
        fields = _fields(line)
        if not fields or fields[0].startswith("."):
            continue                  # .ic / .nodeset: they name nodes, they make none
        name, rest = fields[0], fields[1:]
        letter = name[0].lower()
        elements[name.lower()] = name
        found, complete = _element_nodes(letter, rest)
        good = [f for f in found if _is_node(f)]
        nodes.update((f.lower(), f) for f in good)
        if not complete or len(good) != len(found):
            unread.append(line)
        if letter == "x":
            instances[name.lower()] = name
        if letter in _BRANCH_LETTERS or (
                letter == "b" and len(rest) > 2 and rest[2].lower().startswith("v=")):
            branches[name.lower()] = name
    return Connectivity(nodes, branches, elements, instances, tuple(unread))


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
    return f"{prefix}.{name}" if kind == "v" else f"{_branch_owner(name, prefix)}#branch"


def save_card(expression: str, instance: int | None = None) -> str:
    """The .save argument that keeps ``expression``'s vector."""
    kind, name = parse_vector(expression)
    if instance is None:
        return f"v({name})" if kind == "v" else f"i({name})"
    prefix = instance_name(instance)
    return f"v({prefix}.{name})" if kind == "v" else f"i({_branch_owner(name, prefix)})"


def _branch_owner(name: str, prefix: str) -> str:
    """ngspice's name of element ``name`` inside instance ``prefix``: its letter first
    (v.xp0.vbl, e.xp0.erp, l.xp0.l1). A dotted name keeps the v. of a voltage source."""
    letter = "v" if "." in name else name[0]
    return f"{letter}.{prefix}.{name}"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
