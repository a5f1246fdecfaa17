"""The published quantiser, shared by the converters and the fits that check them."""

from __future__ import annotations

import numpy as np


def quantize(x, lo: float, hi: float, levels: int, out: np.ndarray | None = None) -> np.ndarray:
    """Published quantiser: step * round(x / step), with step = (hi - lo) / (levels - 1).

    The grid passes through zero, not through `lo`; with lo = 0 (the DACs) that is the same thing.
    """
    if levels < 2:
        raise ValueError(f"quantisation needs at least 2 levels, got {levels}")
    step = (hi - lo) / (levels - 1)
    out = np.divide(x, step, out=out)
    np.round(out, out=out)
    return np.multiply(out, step, out=out)
