"""The published quantiser, shared by the converters and the fits that check them."""

from __future__ import annotations

import numpy as np


def quantize(x, lo: float, hi: float, levels: int, out: np.ndarray | None = None) -> np.ndarray:
    """Published quantiser: step * round(x / step), with step = (hi - lo) / (levels - 1).

    The grid passes through zero, not through `lo`, as the published output counter's does
    (its [-1, 1] with 32 levels); a DAC's levels start at `lo`: see `quantize_levels`.
    """
    if levels < 2:
        raise ValueError(f"quantisation needs at least 2 levels, got {levels}")
    step = (hi - lo) / (levels - 1)
    out = np.divide(x, step, out=out)
    np.round(out, out=out)
    return np.multiply(out, step, out=out)


def quantize_levels(x, lo: float, hi: float, levels: int, out: np.ndarray | None = None
                    ) -> np.ndarray:
    """A DAC's quantiser: the nearest of lo + k * step, k = 0 ... levels - 1 (x within [lo,
    hi]), step = (hi - lo) / (levels - 1). With lo = 0 it is `quantize` exactly; with a range
    that starts above zero (sky130's 0.05 ... 1.75 V) the published grid through zero would
    write levels the DAC does not have (0 V below the range, and never the top)."""
    out = np.subtract(x, lo, out=out)
    quantize(out, 0.0, hi - lo, levels, out=out)
    return np.add(out, lo, out=out)
