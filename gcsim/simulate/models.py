"""Behavioural models of the gain cell, its decay, the readout and the converters, one set per mode.

`PAPER` owns every published constant; the `paper`, `linear` and `fitted` models are built from the
same generic objects, so a fits bundle only has to supply their parameters.
"""

from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gcsim.simulate.stages import ChargeToPulse, Readout, SignedConverter

MICROAMPERE = 1e-6


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


@dataclass(frozen=True)
class PublishedConstants:
    """Every number of the published behavioural model (MISSION.md, Leroux et al. 2025), once.

    The cell polynomial is in µA, with x = V_store - 0.45 V and V_in in volts. Charges of the
    published model are in units of 1 µA x T_max (here 15 fC).
    """

    cell_coefficients_uA: tuple[float, ...] = (
        0.17393044, 0.15653739, 0.14088365, 0.12679529, 5.51975209,
        4.96777688, 4.4709992, -1.44776001, -1.30298401, 46.05483778,
    )  # fmt: skip
    supply_V: float = 0.9
    mid_rail_V: float = 0.45
    read_on_V: float = 0.9  # read word line during the query pulse
    pulse_max_s: float = 15e-9  # T_max
    score_saturation_units: float = 80.0  # S_sat of the HardSigmoid, in µA x T_max
    output_full_scale_units: float = 40.0  # full scale of the signed converter, in µA x T_max
    decay_factor: float = 1.6e-4  # per token of age
    retention_time_constant_s: float = 5e-3
    token_period_s: float = 0.8e-6
    query_levels: int = 16
    stored_levels: int = 8
    output_levels: int = 32
    array_size: int = 64
    window: int = 1024

    @property
    def charge_unit_C(self) -> float:
        """The published model's charge unit, 1 µA for one full pulse T_max, in coulombs."""
        return MICROAMPERE * self.pulse_max_s


PAPER = PublishedConstants()


@dataclass(frozen=True)
class PolynomialCell:
    """Cell read current I = sum_ij C_ij x**i V_in**j in amperes, with x = V_store - v_mid_V.

    The basis is the published triangular one (see `polynomial_basis`). The current only flows
    while the read pulse holds V_in at its on-level, so the arrays evaluate it at that level.
    """

    coefficients_A: tuple[float, ...]
    v_mid_V: float = PAPER.mid_rail_V

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
    asymptote_V: float = PAPER.mid_rail_V
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

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> MismatchSample:
        gain = 1.0 + self.gain_sigma * rng.standard_normal(shape)
        shift = self.vt_sigma_V * rng.standard_normal(shape)
        return MismatchSample(gain=gain, vt_shift_V=shift)


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
    read_on_V: float = PAPER.read_on_V
    default_decay_factor: float | None = None  # used when neither factor nor period is given
    default_token_period_s: float = PAPER.token_period_s
    mismatch: CellMismatch | None = None
    # The charge a pulse's two edges add, as extra width on every pulse that is on at all.
    pulse_edge_time_s: float = 0.0
    # The column integrators' moving virtual ground and the cells' answer to it
    # (gcsim.simulate.loading.ReadoutLoading); None: ideal readout.
    loading: object | None = None
    notes: dict = field(default_factory=dict)

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


def _published_readout_chain(constants: PublishedConstants = PAPER):
    unit = constants.charge_unit_C
    readout = Readout()
    c2p = ChargeToPulse(
        slope_s_per_C=constants.pulse_max_s / (constants.score_saturation_units * unit),
        t_max_s=constants.pulse_max_s,
    )
    out = SignedConverter(
        full_scale_C=constants.output_full_scale_units * unit, levels=constants.output_levels
    )
    return readout, c2p, out


def paper_cell(constants: PublishedConstants = PAPER) -> PolynomialCell:
    return PolynomialCell(
        coefficients_A=tuple(c * MICROAMPERE for c in constants.cell_coefficients_uA),
        v_mid_V=constants.mid_rail_V,
    )


def paper_model(constants: PublishedConstants = PAPER) -> HardwareModel:
    """The published behavioural model (MISSION.md), in SI units."""
    readout, c2p, out = _published_readout_chain(constants)
    return HardwareModel(
        name="paper",
        label="paper (published behavioural model)",
        cell=paper_cell(constants),
        decay=ExponentialDecay(constants.retention_time_constant_s, constants.mid_rail_V),
        readout=readout,
        charge_to_pulse=c2p,
        output_converter=out,
        read_on_V=constants.read_on_V,
        default_decay_factor=constants.decay_factor,
        default_token_period_s=constants.token_period_s,
    )


def linear_gain_A_per_V(cell: PolynomialCell, read_on_V: float, half_range_V: float) -> float:
    """Least-squares slope through the origin of I(x) over x in [-half_range, +half_range].

    slope = int x I(x) dx / int x^2 dx; only odd powers contribute: a_i * 3 r^(i-1) / (i + 2).
    """
    a = cell.power_coefficients_A(read_on_V)
    r = half_range_V
    return float(sum(a[i] * 3.0 * r ** (i - 1) / (i + 2) for i in range(1, len(a), 2)))


def linear_model(constants: PublishedConstants = PAPER) -> HardwareModel:
    """Linear hardware: I = g * (V_store - 0.45), same decay, HardSigmoid and converters as `paper`.

    g is the least-squares linear fit of the published cell curve at V_in = 0.9 V over the full
    stored range (about 19.21 µA/V), so S and the outputs have the paper model's scale; the
    authors' own linear model used 19.3 µA/V. (The Taylor term at x = 0 alone, 13.6 µA/V, would
    ignore the strong cubic term and understate the scale.)
    """
    paper = paper_model(constants)
    gain = linear_gain_A_per_V(paper.cell, constants.read_on_V, constants.mid_rail_V)
    # In the published basis, the only term is (i, j) = (1, 0): I = C_10 * x.
    coefficients = (0.0, 0.0, 0.0, 0.0, gain, 0.0, 0.0, 0.0, 0.0, 0.0)
    return dataclasses.replace(
        paper,
        name="linear",
        label=f"linear (I = {gain / MICROAMPERE:.2f} µA/V x (V_store - 0.45 V))",
        cell=PolynomialCell(coefficients_A=coefficients, v_mid_V=constants.mid_rail_V),
        notes={"linear_gain_A_per_V": gain},
    )


def fitted_model_from_paper_coefficients(constants: PublishedConstants = PAPER) -> HardwareModel:
    """A fitted-mode model whose parameters are the published ones (no fits bundle).

    The decay comes from the time constant and token period, as it would from a bundle.
    """
    return dataclasses.replace(
        paper_model(constants),
        name="fitted",
        label="fitted (paper coefficients; no fits bundle)",
        default_decay_factor=None,
    )


class FitsBundleError(ValueError):
    """The fits bundle is missing or malformed."""


def default_fits_dir() -> Path | None:
    """The repository's committed bundle (fits/), when it holds one."""
    from gcsim import paths

    return paths.FITS if (paths.FITS / "decay.json").is_file() else None


def load_fitted_models(directory: str | Path) -> HardwareModel:
    """Build the `fitted` mode's model from a fits bundle directory (see gcsim.fit.bundle)."""
    from gcsim.fit.bundle import load_bundle
    from gcsim.fit.schema import FitFileError

    try:
        return load_bundle(directory).hardware_model()
    except FitFileError as exc:
        raise FitsBundleError(str(exc)) from None


def model_for_mode(mode: str, fits_dir: str | Path | None = None) -> HardwareModel:
    """The hardware model of a non-ideal mode; `fitted` needs the bundle directory."""
    if mode == "paper":
        return paper_model()
    if mode == "linear":
        return linear_model()
    if mode == "fitted":
        if fits_dir is None:
            fits_dir = default_fits_dir()
            if fits_dir is None:
                raise FitsBundleError("mode 'fitted' needs a fits bundle (--fits DIR); the "
                                      "repository's fits/ holds none (run gcsim regen)")
        return load_fitted_models(fits_dir)
    raise ValueError(f"unknown mode {mode!r}; choose ideal, linear, paper or fitted")
