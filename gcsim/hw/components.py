"""The behavioural components a hardware model is made of: the cell's current law, its decay,
per-cell mismatch, and the model that bundles them with the readout and converters."""

from __future__ import annotations

import dataclasses
import math
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
class DecayAtTemperature:
    """The fitted window law at one temperature: tau and the asymptote of each written level."""

    temperature_C: float
    time_constant_s: float
    asymptote_levels_V: tuple[float, ...]
    asymptote_by_level_V: tuple[float, ...]


@dataclass(frozen=True)
class ExponentialDecay:
    """Stored voltage relaxing to an asymptote with time constant `time_constant_s`.

    V(age) = A + (V_written - A) * exp(-age / tau). The published model has A at mid-rail, so
    the signed weight V - 0.45 simply scales by exp(-decay_factor * age). A fitted decay may
    give each written level its own asymptote A(V_written) (linear between the fitted levels):
    the leak's rate depends on the level, and A stays a per-cell constant, so the decay still
    factors per token. With fits at several temperatures, `at_temperature` interpolates.
    """

    time_constant_s: float
    asymptote_V: float
    # The oldest age a fitted decay was fitted over (None: published, or not recorded);
    # beyond it the exponential extrapolates.
    fitted_age_max_s: float | None = None
    asymptote_levels_V: tuple[float, ...] | None = None
    asymptote_by_level_V: tuple[float, ...] | None = None
    temperature_C: float | None = None      # what the numbers above are at (None: unstated)
    by_temperature: tuple[DecayAtTemperature, ...] = ()

    def decay_factor(self, token_period_s: float) -> float:
        """Exponent per token of age: token period / time constant."""
        return token_period_s / self.time_constant_s

    def asymptote_of(self, written_V):
        """Each cell's asymptote: per level when fitted so, else the one asymptote."""
        if self.asymptote_levels_V is None:
            return self.asymptote_V
        return np.interp(np.asarray(written_V, dtype=np.float64), self.asymptote_levels_V,
                         self.asymptote_by_level_V)

    def stored_voltage_V(self, written_V, age_s):
        asymptote = self.asymptote_of(written_V)
        return asymptote + (np.asarray(written_V) - asymptote) * np.exp(
            -np.asarray(age_s) / self.time_constant_s
        )

    def with_read_disturb(self, disturb: ReadDisturb, token_period_s: float) -> ExponentialDecay:
        """This decay with one read per token's disturb folded in: a shift d(V) per read is a
        drift d / token_period, which the exponential takes as a shifted asymptote,
        A' = A + tau d / token_period (the same initial rate; the drift then relaxes with
        tau like the leak, where the reads' would not: within tau / age of it)."""
        levels = (np.asarray(self.asymptote_levels_V) if self.asymptote_levels_V is not None
                  else np.asarray(disturb.levels_V, dtype=float))
        asymptotes = np.asarray(self.asymptote_of(levels), dtype=float) * np.ones(levels.size)
        shifted = asymptotes + self.time_constant_s * disturb.per_read_V(levels) / token_period_s
        return dataclasses.replace(self, asymptote_levels_V=tuple(float(v) for v in levels),
                                   asymptote_by_level_V=tuple(float(v) for v in shifted))

    def temperatures_C(self) -> list[float]:
        return sorted(entry.temperature_C for entry in self.by_temperature)

    def at_temperature(self, temperature_C: float) -> ExponentialDecay:
        """The decay at `temperature_C`, between the fitted temperatures: ln tau linear in
        1/T (Arrhenius), each level's asymptote linear in T. Outside them: ValueError."""
        if self.temperature_C is not None and abs(temperature_C - self.temperature_C) < 1e-9:
            return self   # the record's own numbers (an edited time constant included)
        entries = sorted(self.by_temperature, key=lambda e: e.temperature_C)
        if not entries:
            raise ValueError(f"the decay has no temperature dependence (fitted at "
                             f"{'an unstated temperature' if self.temperature_C is None else f'{self.temperature_C:g} degC'} only); "
                             f"cannot run at {temperature_C:g} degC")
        low, high = entries[0].temperature_C, entries[-1].temperature_C
        if not low - 1e-9 <= temperature_C <= high + 1e-9:
            raise ValueError(f"temperature {temperature_C:g} degC is outside the decay fit's "
                             f"{low:g} ... {high:g} degC")
        upper = next(i for i, e in enumerate(entries) if e.temperature_C >= temperature_C - 1e-9)
        lower = max(upper - 1, 0)
        a, b = entries[lower], entries[upper]
        if b.temperature_C - a.temperature_C < 1e-9:
            weight_T = weight_inv = 0.0
        else:
            weight_T = (temperature_C - a.temperature_C) / (b.temperature_C - a.temperature_C)
            inv = [1.0 / (t + 273.15) for t in (a.temperature_C, b.temperature_C, temperature_C)]
            weight_inv = (inv[2] - inv[0]) / (inv[1] - inv[0])
        tau = math.exp((1 - weight_inv) * math.log(a.time_constant_s)
                       + weight_inv * math.log(b.time_constant_s))
        if a.asymptote_levels_V != b.asymptote_levels_V:
            raise ValueError("the decay fit's temperatures have different asymptote levels")
        asymptotes = tuple((1 - weight_T) * np.asarray(a.asymptote_by_level_V)
                           + weight_T * np.asarray(b.asymptote_by_level_V))
        levels = a.asymptote_levels_V
        mid = 0.5 * (levels[0] + levels[-1])
        return dataclasses.replace(
            self, time_constant_s=tau, asymptote_levels_V=levels,
            asymptote_by_level_V=tuple(float(x) for x in asymptotes),
            asymptote_V=float(np.interp(mid, levels, asymptotes)),
            temperature_C=float(temperature_C))


@dataclass(frozen=True)
class LevelTable:
    """A quantity known at a few stored levels (increasing), linear in between and held
    constant beyond them: what a fit swept at the DAC's levels gives."""

    levels_V: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self):
        levels = np.asarray(self.levels_V, float)
        if (levels.size < 1 or levels.size != len(self.values)
                or np.any(np.diff(levels) <= 0)):
            raise ValueError(f"{type(self).__name__} needs one value per level, the levels "
                             "increasing")

    def at(self, stored_V) -> np.ndarray:
        return np.interp(np.asarray(stored_V, dtype=np.float64), self.levels_V, self.values)


class ReadDisturb(LevelTable):
    """How far one read moves a stored voltage (values in volts per read)."""

    def per_read_V(self, stored_V) -> np.ndarray:
        return self.at(stored_V)


class WriteError(LevelTable):
    """Where a write lands: target + error(target), the error (values, volts) known at the
    target levels the write fit swept. The write device's channel charge and feed-through
    leave a systematic, per-level error however long the pulse, so it is not noise to average
    away: summed over a column it shifts the charge."""

    def written_V(self, target_V) -> np.ndarray:
        """The stored voltage a write of `target_V` leaves (targets outside the swept levels
        take the nearest level's error: the DAC clips to the stored range first)."""
        return np.asarray(target_V, dtype=np.float64) + self.at(target_V)


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
    # Where writes land (None: exactly on the DAC level, as the published model has it).
    write_error: WriteError | None = None
    # How far each read moves a stored voltage (None: reads do not disturb).
    read_disturb: ReadDisturb | None = None

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
