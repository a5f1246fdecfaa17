"""Strict parsing of SPICE numbers, the only gate through which user values reach a netlist.

A value is a finite number, optionally with one SPICE scale suffix (``15n``, ``1.2f``,
``3Meg``). Anything else is refused, so no text of the user's ever lands in a netlist:
what is written is always gcsim's own formatting of a float.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from gcsim.core.errors import ParameterError

# SPICE scale suffixes (case-insensitive, "meg" before "m"); "mil" is deliberately absent.
# Kept as powers of ten so that "120n" becomes exactly the float nearest 120e-9.
SCALE_EXPONENT = {"t": 12, "g": 9, "meg": 6, "k": 3, "m": -3, "u": -6, "µ": -6,
                  "n": -9, "p": -12, "f": -15, "a": -18}

_NUMBER = re.compile(
    r"^(?P<mantissa>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?P<suffix>meg|[tgkmuµnpfa])?$",
    re.IGNORECASE | re.ASCII,     # ASCII: \d is 0-9 only
)
MAX_NAME = 100     # characters in a parameter, source or device name
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")    # matched whole (fullmatch): no trailing newline


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for one-line error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_number(value: object, what: str = "value") -> float:
    """Return ``value`` as a finite float, or raise ParameterError naming ``what``."""
    if isinstance(value, bool):
        raise ParameterError(f"{what}: expected a number, got a boolean")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _NUMBER.fullmatch(value.strip())
        if not match:
            raise ParameterError(
                f"{what}: {shown(value)} is not a number (expected e.g. 0.45, 15n, 1.2f)")
        exponent = SCALE_EXPONENT[match["suffix"].lower()] if match["suffix"] else 0
        try:
            number = float(Decimal(match["mantissa"]).scaleb(exponent))
        except ArithmeticError:     # decimal.InvalidOperation: an exponent beyond any float
            raise ParameterError(f"{what}: {shown(value)} is out of range") from None
    else:
        raise ParameterError(f"{what}: expected a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise ParameterError(f"{what}: {shown(value)} is not finite")
    return number


def check_name(name: object, what: str = "parameter name") -> str:
    """Return ``name`` if it is a plain identifier; SPICE would read anything else as syntax."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ParameterError(f"{what}: {shown(name)} is not a valid identifier")
    if len(name) > MAX_NAME:
        raise ParameterError(f"{what}: {shown(name)} is longer than {MAX_NAME} characters")
    return name


def format_number(value: float) -> str:
    """Format a checked float for a netlist: repr round-trips exactly and has no suffix."""
    number = float(value)
    if not math.isfinite(number):
        raise ParameterError(f"refusing to write non-finite value {value!r} to a netlist")
    return repr(number)


def parse_assignment(text: str) -> tuple[str, float]:
    """Parse a command-line ``NAME=VALUE`` into a checked name and number."""
    name, sep, value = text.partition("=")
    if not sep:
        raise ParameterError(f"--set {shown(text)}: expected NAME=VALUE")
    name = check_name(name.strip(), f"--set {shown(text)}")
    return name, parse_number(value.strip(), f"--set {name}")
