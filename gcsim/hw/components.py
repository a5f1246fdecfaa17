"""The behavioural components a hardware model is made of: the cell's current law, its decay,
per-cell mismatch, and the model that bundles them with the readout and converters."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gcsim.fit.basis import degree_for_terms, polynomial_basis
from gcsim.hw.constants import PAPER_OPERATING_POINT
from gcsim.hw.operating import OperatingPoint
from gcsim.hw.stages import ChargeToPulse, Readout, SignedConverter


@dataclass(frozen=True)
class PolynomialCell:
    """Cell read current I = sum_ij C_ij x**i V_in**j in amperes, with x = V_store - v_mid_V.

    The basis is the published triangular one (see `polynomial_basis`). The current only flows
    while the read pulse holds V_in at its on-level, so the arrays evaluate it at that level.
    """

    coefficients_A: tuple[float, ...]
    v_mid_V: float

    @property
    def degree(self) -> int:
        return degree_for_terms(len(self.coefficients_A))

    def current_A(self, v_store_V, v_in_V):
        """Read current of a cell storing `v_store_V` with its read port at `v_in_V`."""
        x = np.asarray(v_store_V, dtype=np.float64) - self.v_mid_V
        v_in = np.asarray(v_in_V, dtype=np.float64)
        total = np.zeros(np.broadcast_shapes(x.shape, v_in.shape))
        for c, (i, j) in zip(self.coefficients_A, polynomial_basis(self.degree)):
            total = total + c * x**i * v_in**j
        return total

    def power_coefficients_A(self, v_in_V: float) -> np.ndarray:
        """a_i with I(x) = sum_i a_i x**i at a fixed read voltage (the pulse's on-level)."""
        a = np.zeros(self.degree + 1)
        for c, (i, j) in zip(self.coefficients_A, polynomial_basis(self.degree)):
            a[i] += c * v_in_V**j
        return a


@dataclass(frozen=True)
class ExponentialDecay:
    """Stored voltage relaxing to `asymptote_V` with time constant `time_constant_s`.

    V(age) = asymptote + (V_written - asymptote) * exp(-age / tau). The published model has the
    asymptote at mid-rail, so the signed weight V - 0.45 simply scales by exp(-decay_factor * age).
    """

    time_constant_s: float
    asymptote_V: float
    # The oldest age a fitted decay was fitted over (None: published, or not recorded);
    # beyond it the exponential extrapolates.
    fitted_age_max_s: float | None = None

    def decay_factor(self, token_period_s: float) -> float:
        """Exponent per token of age: token period / time constant."""
        return token_period_s / self.time_constant_s

    def stored_voltage_V(self, written_V, age_s):
        return self.asymptote_V + (np.asarray(written_V) - self.asymptote_V) * np.exp(
            -np.asarray(age_s) / self.time_constant_s
        )


@dataclass(frozen=True)
class CellMismatch:
    """Distributions of per-cell mismatch: relative current gain, threshold (stored-voltage) shift.

    `draw` samples one value per physical cell, once; the sample is then held for every token.
    """

    gain_sigma: float = 0.0
    vt_sigma_V: float = 0.0
    correlation: float = 0.0    # of the gain and the shift: they are drawn jointly

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> MismatchSample:
        gain_normal = rng.standard_normal(shape)
        shift_normal = rng.standard_normal(shape)
        if self.correlation:
            rho = float(np.clip(self.correlation, -1.0, 1.0))
            shift_normal = rho * gain_normal + np.sqrt(1.0 - rho * rho) * shift_normal
        return MismatchSample(gain=1.0 + self.gain_sigma * gain_normal,
                              vt_shift_V=self.vt_sigma_V * shift_normal)


@dataclass(frozen=True)
class MismatchSample:
    """One drawn set of per-cell values, shape (heads, arrays, rows, columns) of physical cells."""

    gain: np.ndarray
    vt_shift_V: np.ndarray


@dataclass(frozen=True)
class HardwareModel:
    """Everything a mode needs: cell, decay, readout, converters, read voltages and defaults."""

    name: str
    label: str
    cell: PolynomialCell
    decay: ExponentialDecay
    readout: Readout
    charge_to_pulse: ChargeToPulse
    output_converter: SignedConverter
    read_on_V: float
    default_token_period_s: float  # the token period when none is given
    default_decay_factor: float | None = None  # used when neither factor nor period is given
    mismatch: CellMismatch | None = None
    # The charge a pulse's two edges add, as extra width on every pulse that is on at all.
    pulse_edge_time_s: float = 0.0
    # The column integrators' moving virtual ground and the cells' answer to it
    # (gcsim.hw.loading.ReadoutLoading); None: ideal readout.
    loading: object | None = None
    # Whether the window's keys are read per physical array of the ring buffer that holds
    # them (one conversion per array, however the window splits its rows between old and new
    # keys) or per aligned sub-tile, each converted on its own (the published model).
    ring_buffer: bool = False
    notes: dict = field(default_factory=dict)
    # DAC ranges, mid-rail, read level, T_max, token period and array layout: the published
    # one unless the model was built from a bundle that carries its design.
    operating_point: OperatingPoint = PAPER_OPERATING_POINT

    def resolve_decay_factor(
        self, decay_factor: float | None = None, token_period_s: float | None = None
    ) -> float:
        if decay_factor is not None:
            return float(decay_factor)
        if token_period_s is not None:
            return self.decay.decay_factor(token_period_s)
        if self.default_decay_factor is not None:
            return self.default_decay_factor
        return self.decay.decay_factor(self.default_token_period_s)


def linear_gain_A_per_V(cell: PolynomialCell, read_on_V: float, half_range_V: float) -> float:
    """Least-squares slope through the origin of I(x) over x in [-half_range, +half_range].

    slope = int x I(x) dx / int x^2 dx; only odd powers contribute: a_i * 3 r^(i-1) / (i + 2).
    """
    a = cell.power_coefficients_A(read_on_V)
    r = half_range_V
    return float(sum(a[i] * 3.0 * r ** (i - 1) / (i + 2) for i in range(1, len(a), 2)))
