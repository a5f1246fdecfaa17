"""Arithmetic over named design values, so a spec can say ``"v_mid - 0.45"`` or
``"stored_max"`` and serve every design.

An expression holds numbers (SPICE suffixes allowed: ``3.6n``), names, ``+ - * /`` and
parentheses, nothing else: it is parsed here, never handed to Python or to SPICE, and its
result is one float that gcsim formats into the netlist like any other number.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping

from gcsim.core.errors import ParameterError
from gcsim.core.values import parse_number, shown

MAX_EXPRESSION = 200    # characters: a design term is a short formula
_TOKEN = re.compile(r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:meg|[tgkmuµnpfa])?"
                    r"(?![A-Za-z0-9_]))|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/()]))",
                    re.IGNORECASE | re.ASCII)


def is_expression(value: object) -> bool:
    """True for a string that is not a plain (SPICE) number: it must be an expression."""
    if not isinstance(value, str):
        return False
    try:
        parse_number(value)
    except ParameterError as exc:
        # A number out of range or not finite is a bad number, not an expression.
        return "is not a number" in str(exc)
    return False


def evaluate(text: str, names: Mapping[str, float], what: str = "value") -> float:
    """The value of ``text`` with ``names`` bound; ParameterError (naming ``what``) for
    anything else: an unknown name, a syntax error, a division by zero."""
    if len(text) > MAX_EXPRESSION:
        raise ParameterError(f"{what}: {shown(text)} is not a number (expected e.g. 0.45, "
                             f"15n, 1.2f), and an expression of design terms has at most "
                             f"{MAX_EXPRESSION} characters")
    tokens, position = [], 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise ParameterError(f"{what}: {shown(text)} is not a number (expected e.g. 0.45, "
                                 "15n, 1.2f) nor an expression of design terms (names, "
                                 "numbers, + - * / and parentheses)")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    parser = _Parser(tokens, names, text, what)
    value = parser.sum()
    if parser.index != len(tokens):
        raise ParameterError(f"{what}: {shown(text)}: unexpected {parser.tokens[parser.index][1]!r}")
    if not math.isfinite(value):
        raise ParameterError(f"{what}: {shown(text)} is not finite")
    return value


class _Parser:
    """sum := product (('+'|'-') product)*; product := unary (('*'|'/') unary)*;
    unary := ('+'|'-') unary | number | name | '(' sum ')'."""

    def __init__(self, tokens, names, text, what):
        self.tokens, self.names, self.text, self.what = tokens, names, text, what
        self.index = 0

    def _error(self, message: str) -> ParameterError:
        return ParameterError(f"{self.what}: {shown(self.text)}: {message}")

    def _peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def sum(self) -> float:
        value = self.product()
        while self._peek() in ("+", "-"):
            operator = self.tokens[self.index][1]
            self.index += 1
            right = self.product()
            value = value + right if operator == "+" else value - right
        return value

    def product(self) -> float:
        value = self.unary()
        while self._peek() in ("*", "/"):
            operator = self.tokens[self.index][1]
            self.index += 1
            right = self.unary()
            if operator == "/" and right == 0:
                raise self._error("division by zero")
            value = value * right if operator == "*" else value / right
        return value

    def unary(self) -> float:
        if self.index >= len(self.tokens):
            raise self._error("ends too early")
        kind, token = self.tokens[self.index]
        self.index += 1
        if token in ("+", "-"):
            value = self.unary()
            return -value if token == "-" else value
        if kind == "number":
            return parse_number(token, self.what)
        if kind == "name":
            key = token.lower()
            if key not in self.names:
                close = difflib.get_close_matches(key, list(self.names), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else (
                    " (docs/guide/designs.md lists the terms)")
                raise ParameterError(f"{self.what}: {shown(self.text)} is not a number "
                                     f"(expected e.g. 0.45, 15n, 1.2f) nor an expression of "
                                     f"design terms: no term {token!r}{hint}")
            return float(self.names[key])
        if token == "(":
            value = self.sum()
            if self._peek() != ")":
                raise self._error("a '(' is not closed")
            self.index += 1
            return value
        raise self._error(f"unexpected {token!r}")
