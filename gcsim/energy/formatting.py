"""Numbers with SI prefixes for the energy report (1.12e-9 J -> '1.12 nJ')."""

from __future__ import annotations

import math

_PREFIXES = [(1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, "")]


def format_si(value: float, unit: str = "", digits: int = 3) -> str:
    """1.12e-9, 'J' -> '1.12 nJ'."""
    if value is None or not math.isfinite(value):
        return f"{value} {unit}".strip()
    if value == 0:
        return f"0 {unit}".strip()
    magnitude = abs(value)
    scale, prefix = _PREFIXES[0]
    for s, p in _PREFIXES:
        if magnitude >= s * 0.9995:
            scale, prefix = s, p
    if magnitude >= 1e3 and unit == "":
        return f"{value:,.0f}"
    return f"{value / scale:.{digits}g} {prefix}{unit}".strip()
