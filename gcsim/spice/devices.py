"""Find every device-role instance of a rendered netlist, with its W and L, and refuse sizes
below the process's legal minimum (nothing is clamped: a too-small device is an error).

The netlist's hierarchy is walked from the top: ``.param`` values, subcircuit parameter
defaults and instance assignments are evaluated with a small arithmetic evaluator (numbers
with SPICE suffixes, parameter names, + - * / **, max, min, abs, sqrt), so a size written
as ``w={2*w_read}`` two subcircuits down is still checked.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from dataclasses import dataclass

from gcsim.core.errors import ParameterError, SpecError
from gcsim.core.values import parse_number

_SUFFIXED = re.compile(r"(?<![A-Za-z0-9_.])((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
                       r"(meg|[tgkmuµnpfa])(?![A-Za-z0-9_])", re.IGNORECASE)
_FUNCTIONS = {"max": max, "min": min, "abs": abs, "sqrt": math.sqrt}
_MAX_DEPTH = 64


class _Unknown(Exception):
    pass


@dataclass(frozen=True)
class DeviceInstance:
    path: str        # hierarchical instance name, e.g. xp3.x1.xn
    role: str
    w_m: float
    l_m: float


def evaluate(text: str, scope: dict[str, float]) -> float:
    """Evaluate a parameter value (``{expr}``, ``'expr'`` or a plain number/name)."""
    text = text.strip()
    if len(text) >= 2 and text[0] + text[-1] in ("{}", "''", '""'):
        text = text[1:-1]
    tree = _expression(text)
    if isinstance(tree, float):
        return tree
    return float(_eval(tree, scope, text))


@functools.lru_cache(maxsize=4096)
def _expression(text: str):
    """A number, or the parsed expression (batched netlists repeat the same few texts)."""
    try:
        return parse_number(text)
    except ParameterError:
        pass
    python = _SUFFIXED.sub(lambda m: repr(parse_number(m[1] + m[2])), text)
    try:
        return ast.parse(python.replace("^", "**"), mode="eval").body
    except SyntaxError:
        raise _Unknown(text) from None


def _eval(node, scope, text):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id.lower() in scope:
            return scope[node.id.lower()]
        raise _Unknown(text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand, scope, text)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult,
                                                            ast.Div, ast.Pow)):
        left, right = _eval(node.left, scope, text), _eval(node.right, scope, text)
        try:
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            return left ** right
        except (ZeroDivisionError, OverflowError):
            raise _Unknown(text) from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id.lower() in _FUNCTIONS and not node.keywords:
        try:
            return _FUNCTIONS[node.func.id.lower()](*(_eval(a, scope, text) for a in node.args))
        except (ValueError, TypeError):
            raise _Unknown(text) from None
    raise _Unknown(text)


def _tokens(line: str) -> list[str]:
    """Split a card into tokens, keeping ``{...}`` and quoted expressions whole and joining
    ``name = value`` into ``name=value``."""
    line = re.sub(r"\s*=\s*", "=", line)
    tokens, current, depth, quote = [], "", 0, ""
    for char in line:
        if quote:
            current += char
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
        if char.isspace() and depth == 0:
            if current:
                tokens.append(current)
            current = ""
        else:
            current += char
    if current:
        tokens.append(current)
    return tokens


def _assignments(tokens: list[str]) -> dict[str, str]:
    out = {}
    for token in tokens:
        if token.lower() == "params:":
            continue
        name, _, value = token.partition("=")
        out[name.lower()] = value
    return out


@dataclass
class _Subckt:
    name: str
    defaults: dict[str, str]
    body: list[str]


def _parse(text: str) -> tuple[dict[str, str], list[str], dict[str, _Subckt]]:
    params: dict[str, str] = {}
    top: list[str] = []
    subckts: dict[str, _Subckt] = {}
    stack: list[_Subckt] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "*$;":
            continue
        card = line.split(None, 1)[0].lower()
        if card == ".subckt":
            tokens = _tokens(line)
            first = next((i for i, t in enumerate(tokens) if "=" in t or t.lower() == "params:"),
                         len(tokens))
            sub = _Subckt(tokens[1].lower(), _assignments(tokens[first:]), [])
            stack.append(sub)
            continue
        if card == ".ends":
            if stack:
                sub = stack.pop()
                subckts[sub.name] = sub
            continue
        if stack:
            stack[-1].body.append(line)
        elif card == ".param":
            params.update(_assignments(_tokens(line)[1:]))
        elif card[0] in "xcrl":
            top.append(line)
    return params, top, subckts


_PASSIVE_UNITS = {"c": "F", "r": "ohm", "l": "H"}


@functools.lru_cache(maxsize=4096)
def _passive_value(line: str) -> str | None:
    """The value text of a capacitor, resistor or inductor card (``C1 a b 2f``,
    ``C1 a b c={c_store}``), or None when it has none (a model card's instance)."""
    tokens = _tokens(line)
    if len(tokens) < 4:
        return None
    key, sep, value = tokens[3].partition("=")
    if sep:
        return value if key.lower() in (tokens[0][0].lower(), "value") else None
    return tokens[3]


@functools.lru_cache(maxsize=4096)
def _instance(line: str) -> tuple[str, str, dict[str, str]]:
    tokens = _tokens(line)
    first = next((i for i, t in enumerate(tokens) if "=" in t or t.lower() == "params:"),
                 len(tokens))
    return tokens[0].lower(), tokens[first - 1].lower(), _assignments(tokens[first:])


def role_instances(netlist: str, models, negative: list | None = None) -> list[DeviceInstance]:
    """Every instance of a device role in ``netlist``, with its evaluated W and L. With a
    ``negative`` list, also collects (path, value, unit) of every capacitor, resistor or
    inductor whose value evaluates below zero."""
    params_text, top, subckts = _parse(netlist)
    scope: dict[str, float] = {}
    for name, value in params_text.items():
        try:
            scope[name] = evaluate(value, scope)
        except _Unknown:
            pass
    found: list[DeviceInstance] = []

    def walk(lines: list[str], local: dict[str, float], prefix: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise SpecError(f"netlist: subcircuits nest deeper than {_MAX_DEPTH} levels")
        local = dict(local)
        for line in lines:
            card = line.split(None, 1)[0].lower()
            if card == ".param":
                for name, value in _assignments(_tokens(line)[1:]).items():
                    try:
                        local[name] = evaluate(value, local)
                    except _Unknown:
                        local.pop(name, None)
                continue
            if card[0] in _PASSIVE_UNITS and negative is not None:
                text = _passive_value(line)
                try:
                    value = evaluate(text, local) if text else None
                except _Unknown:
                    value = None    # an expression of node voltages, say: ngspice's to judge
                if value is not None and value < 0:
                    negative.append((f"{prefix}{card}", value, _PASSIVE_UNITS[card[0]]))
                continue
            if card[0] != "x":
                continue
            name, target, assigns = _instance(line)
            path = f"{prefix}{name}"
            if target in models.roles:
                role = models.roles[target]
                sizes = {}
                for key, default in (("w", role.w_default_m), ("l", role.l_default_m)):
                    if key in assigns:
                        try:
                            sizes[key] = evaluate(assigns[key], local)
                        except _Unknown:
                            raise SpecError(f"{path} ({target}): cannot evaluate "
                                            f"{key}={assigns[key]} to check it against the "
                                            "process minimum") from None
                    elif default is not None:
                        sizes[key] = default
                    else:
                        raise SpecError(f"{path} ({target}): no {key} given and the role "
                                        "has no default")
                found.append(DeviceInstance(path, target, sizes["w"], sizes["l"]))
                continue
            sub = subckts.get(target)
            if sub is None:
                continue
            inner = dict(scope)
            for key, value in sub.defaults.items():
                try:
                    inner[key] = evaluate(value, inner)
                except _Unknown:
                    inner.pop(key, None)
            for key, value in assigns.items():
                try:
                    inner[key] = evaluate(value, local)
                except _Unknown:
                    inner.pop(key, None)
            walk(sub.body, inner, path + ".", depth + 1)

    walk(top, scope, "", 0)
    return found


def check_sizes(netlist: str, models) -> list[DeviceInstance]:
    """Raise ParameterError (one line) for a negative capacitor, resistor or inductor, or for
    the first role instance whose W or L is below the process's legal minimum; return all
    role instances otherwise."""
    negative: list = []
    instances = role_instances(netlist, models, negative)
    if negative:
        path, value, unit = negative[0]
        raise ParameterError(f"{path} has a negative value ({value:.4g} {unit}); a capacitor, "
                             "resistor or inductor must not be negative")
    for device in instances:
        role = models.roles[device.role]
        for key, value, minimum in (("W", device.w_m, role.w_min_m),
                                    ("L", device.l_m, role.l_min_m)):
            if value < minimum * (1 - 1e-9):
                raise ParameterError(
                    f"models {models.name}: {device.path} ({device.role} = {role.model}) has "
                    f"{key} = {value * 1e9:.4g} nm, below the process minimum "
                    f"{minimum * 1e9:.4g} nm")
    return instances
