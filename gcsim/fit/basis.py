"""The published triangular polynomial basis: terms x**i * V_in**j with i + j <= degree."""

from __future__ import annotations

import math


def polynomial_basis(degree: int) -> list[tuple[int, int]]:
    """Exponent pairs (i, j) of x**i * V_in**j with i + j <= degree, in the published order.

    For degree 3 this is (0,0),(0,1),(0,2),(0,3),(1,0),(1,1),(1,2),(2,0),(2,1),(3,0).
    """
    if degree < 0:
        raise ValueError(f"polynomial degree must be >= 0, got {degree}")
    return [(i, j) for i in range(degree + 1) for j in range(degree - i + 1)]


def degree_for_terms(n_terms: int) -> int:
    """Degree of the published triangular basis that has `n_terms` terms."""
    degree = int(round((math.sqrt(8 * n_terms + 1) - 3) / 2))
    if len(polynomial_basis(degree)) != n_terms:
        raise ValueError(
            f"{n_terms} coefficients do not fill a triangular (i + j <= n) polynomial basis"
        )
    return degree
