"""Shared fitting numerics: linear solves under two objectives, and the error metrics every fit
reports."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.optimize import linprog

from gcsim.core.errors import GcsimError

OBJECTIVES = ("lsq", "minimax")


class FitError(GcsimError):
    """The data cannot support the requested fit (too few points, degenerate, no convergence)."""


def solve_linear(design: np.ndarray, target: np.ndarray, objective: str = "lsq") -> np.ndarray:
    """Coefficients c minimising ||design @ c - target|| in the 2-norm (`lsq`, minimum-norm when
    the columns are dependent) or the max-norm (`minimax`, a linear programme).

    Columns are scaled to unit norm first so that polynomial bases in SI units stay well
    conditioned.
    """
    if objective not in OBJECTIVES:
        raise FitError(f"unknown objective {objective!r} (choose {', '.join(OBJECTIVES)})")
    design = np.asarray(design, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if design.shape[0] < design.shape[1]:
        raise FitError(f"{design.shape[0]} points cannot determine {design.shape[1]} coefficients")
    if not (np.all(np.isfinite(design)) and np.all(np.isfinite(target))):
        raise FitError("the data contains NaN or infinite values")
    norms = np.linalg.norm(design, axis=0)
    norms[norms == 0] = 1.0
    scaled = design / norms
    target_scale = float(np.abs(target).max()) or 1.0
    y = target / target_scale
    if objective == "lsq":
        coefficients, *_ = scipy.linalg.lstsq(scaled, y, lapack_driver="gelsd")
    else:
        n_rows, n_cols = scaled.shape
        ones = np.ones((n_rows, 1))
        result = linprog(
            np.r_[np.zeros(n_cols), 1.0],
            A_ub=np.block([[scaled, -ones], [-scaled, -ones]]),
            b_ub=np.r_[y, -y],
            bounds=[(None, None)] * n_cols + [(0, None)],
            method="highs",
        )
        if result.status != 0:
            raise FitError(f"minimax fit did not converge: {result.message}")
        coefficients = result.x[:n_cols]
    return coefficients / norms * target_scale


def error_metrics(measured, predicted, unit: str, full_scale: float | None = None) -> dict:
    """R², RMSE and maximum error, absolute (in `unit`) and as a percentage of full scale.

    Full scale defaults to the largest |measured| value: the conservative choice for a signed
    quantity (a span-based full scale would halve the percentages).
    """
    measured = np.asarray(measured, dtype=np.float64)
    residual = np.asarray(predicted, dtype=np.float64) - measured
    full_scale = float(full_scale if full_scale is not None else np.abs(measured).max())
    rmse = float(np.sqrt(np.mean(residual**2)))
    max_abs = float(np.abs(residual).max())
    spread = float(np.sum((measured - measured.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / spread if spread > 0 else float("nan")
    return {
        "points": int(measured.size),
        "r2": r2,
        f"rmse_{unit}": rmse,
        f"max_abs_error_{unit}": max_abs,
        f"full_scale_{unit}": full_scale,
        "rmse_pct_fs": 100.0 * rmse / full_scale if full_scale else float("nan"),
        "max_error_pct_fs": 100.0 * max_abs / full_scale if full_scale else float("nan"),
    }
