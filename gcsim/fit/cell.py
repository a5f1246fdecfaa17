"""Gain-cell fits: the multiplication nonlinearity I(V_store, V_in) in the published polynomial
basis, and the charge one read pulse delivers, Q = I(V_store) * t_pulse + edge charge(V_store).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gcsim.fit.numerics import FitError, error_metrics, solve_linear
from gcsim.fit.schema import FitRecord, check_range, param
from gcsim.fit.basis import polynomial_basis


def spread_over_read_voltage(power_coefficients, read_on_V: float, order: int) -> np.ndarray:
    """Published-basis coefficients C_ij equal to I(x) = sum_i a_i x^i at V_in = read_on_V.

    At a single read voltage the V_in columns are collinear; this is their minimum-norm split,
    C_ij = a_i v^j / sum_j' v^(2j'). The published coefficients have exactly this shape
    (C_0j / C_00 = 0.9^j), i.e. the authors fitted at V_in = 0.9 V only.
    """
    out = []
    for i, j in polynomial_basis(order):
        norm = sum(read_on_V ** (2 * k) for k in range(order - i + 1))
        out.append(power_coefficients[i] * read_on_V**j / norm)
    return np.array(out)


def power_coefficients(coefficients, order: int, read_on_V: float) -> np.ndarray:
    """a_i of I(x) = sum_i a_i x^i at a fixed read voltage."""
    a = np.zeros(order + 1)
    for c, (i, j) in zip(coefficients, polynomial_basis(order)):
        a[i] += c * read_on_V**j
    return a


def fit_nonlinearity(table: pd.DataFrame, order: int = 3, v_in_V: float | None = None,
                     objective: str = "lsq", *, v_mid_V: float, read_on_V: float) -> FitRecord:
    """Fit i_out_A over (stored_voltage_V - v_mid_V, v_in_V) in the published triangular basis.

    `v_in_V` None fits the whole surface; a value fits only the rows at that read voltage (the
    array's on-level) and spreads the result over the basis like the published coefficients.
    """
    if order < 1:
        raise FitError(f"order must be at least 1, got {order}")
    data = table
    if v_in_V is not None:
        data = table[np.isclose(table["v_in_V"], v_in_V, atol=1e-9)]
        if data.empty:
            raise FitError(f"no rows at v_in_V = {v_in_V:g} (have "
                           f"{np.unique(table['v_in_V']).min():g}..."
                           f"{np.unique(table['v_in_V']).max():g} V)")
    x = data["stored_voltage_V"].to_numpy(float) - v_mid_V
    v_in = data["v_in_V"].to_numpy(float)
    current = data["i_out_A"].to_numpy(float)
    basis = polynomial_basis(order)
    if v_in_V is None:
        if np.unique(v_in).size < 2:
            raise FitError("the table has a single read voltage; fit it with --v-in "
                           f"{v_in[0]:g}")
        design = np.stack([x**i * v_in**j for i, j in basis], axis=1)
        coefficients = solve_linear(design, current, objective)
    else:
        a = solve_linear(np.stack([x**i for i in range(order + 1)], axis=1), current, objective)
        coefficients = spread_over_read_voltage(a, v_in_V, order)
    model = CellNonlinearity(tuple(coefficients), order, v_mid_V,
                             (float(data["stored_voltage_V"].min()),
                              float(data["stored_voltage_V"].max())),
                             (float(v_in.min()), float(v_in.max())))
    predicted = model.current_A(data["stored_voltage_V"], v_in)
    metrics = error_metrics(current, predicted, "A")
    on = np.isclose(v_in, read_on_V, atol=1e-9)
    if v_in_V is None and on.any():
        metrics["at_read_on_level"] = {"v_in_V": read_on_V,
                                       **error_metrics(current[on], predicted[on], "A",
                                                       metrics["full_scale_A"])}
    metrics["objective"] = objective
    read_level = v_in_V if v_in_V is not None else read_on_V
    return FitRecord(
        kind="nonlinearity",
        description=("Gain-cell read current I = sum_ij C_ij (V_store - v_mid)^i V_in^j, in the "
                     "published basis order (i,j) = " + ", ".join(f"({i},{j})" for i, j in basis)
                     + (f"; fitted at V_in = {v_in_V:g} V only" if v_in_V is not None else "")),
        parameters={
            "coefficients": param(coefficients, "A", "C_ij multiplies (V_store - v_mid)^i "
                                  "V_in^j with both in volts"),
            "exponents": param([list(e) for e in basis], "1"),
            "order": param(order, "1"),
            "v_mid": param(v_mid_V, "V"),
            "read_on_level": param(read_level, "V", "V_in during a read pulse"),
            "power_coefficients_at_read_on": param(power_coefficients(coefficients, order,
                                                                      read_level),
                                                   "A", "a_i of I = sum_i a_i x^i at the on-level"),
        },
        valid_range={"stored_voltage_V": list(model.stored_range_V),
                     "v_in_V": list(model.v_in_range_V)},
        metrics=metrics,
        provenance={},
    )


@dataclass(frozen=True)
class CellNonlinearity:
    """Evaluates a nonlinearity fit, refusing inputs outside its valid range unless clamped."""

    coefficients_A: tuple[float, ...]
    order: int
    v_mid_V: float
    stored_range_V: tuple[float, float]
    v_in_range_V: tuple[float, float]

    @classmethod
    def from_record(cls, record: FitRecord) -> CellNonlinearity:
        return cls(tuple(record.value("coefficients")), int(record.value("order")),
                   float(record.value("v_mid")), tuple(record.valid_range["stored_voltage_V"]),
                   tuple(record.valid_range["v_in_V"]))

    def current_A(self, stored_voltage_V, v_in_V, clamp: bool = False) -> np.ndarray:
        v_store = check_range("stored_voltage_V", stored_voltage_V, self.stored_range_V, clamp)
        v_in = check_range("v_in_V", v_in_V, self.v_in_range_V, clamp)
        x = v_store - self.v_mid_V
        total = np.zeros(np.broadcast_shapes(x.shape, v_in.shape))
        for c, (i, j) in zip(self.coefficients_A, polynomial_basis(self.order)):
            total = total + c * x**i * v_in**j
        return total


def fit_charge_per_pulse(table: pd.DataFrame, order: int = 3, edge_order: int = 3,
                         objective: str = "lsq", *, v_mid_V: float, read_on_V: float
                         ) -> FitRecord:
    """Fit charge_C = I(x) t_pulse_s + e(x), x = stored_voltage_V - v_mid_V, I and e polynomials.

    I(x) is the current while the pulse is on (it includes the storage node's coupling to the
    word lines, so it differs from the DC surface); e(x) is the charge the two edges add.
    """
    x = table["stored_voltage_V"].to_numpy(float) - v_mid_V
    width = table["t_pulse_s"].to_numpy(float)
    charge = table["charge_C"].to_numpy(float)
    if np.unique(width).size < 2:
        raise FitError("the charge-per-pulse fit needs at least two pulse widths")
    design = np.concatenate([np.stack([x**i * width for i in range(order + 1)], axis=1),
                             np.stack([x**i for i in range(edge_order + 1)], axis=1)], axis=1)
    solution = solve_linear(design, charge, objective)
    current = solution[: order + 1]
    edge = solution[order + 1:]
    stored_range = (float(table["stored_voltage_V"].min()), float(table["stored_voltage_V"].max()))
    width_range = (float(width.min()), float(width.max()))
    model = ChargePerPulse(tuple(current), tuple(edge), v_mid_V, stored_range, width_range)
    predicted = model.charge_C(table["stored_voltage_V"], width)
    metrics = error_metrics(charge, predicted, "C")
    metrics["objective"] = objective
    # The simulator adds the edges as an effective extra width: e(x) ~ t_edge * I(x).
    grid = np.linspace(stored_range[0], stored_range[1], 201) - v_mid_V
    i_grid = np.polynomial.polynomial.polyval(grid, current)
    e_grid = np.polynomial.polynomial.polyval(grid, edge)
    edge_time = float(np.dot(e_grid, i_grid) / np.dot(i_grid, i_grid))
    edge_error = np.abs(e_grid - edge_time * i_grid).max()
    metrics["edge_time_approximation"] = {
        "max_abs_error_C": float(edge_error),
        "max_error_pct_fs": 100.0 * float(edge_error) / metrics["full_scale_C"],
    }
    full_current = np.polynomial.polynomial.polyval(np.array(stored_range) - v_mid_V, current)
    energy = {}
    if "energy_J" in table:
        # Supply + word-line energy of one read: a fixed part (the edges) and a part that grows
        # with the width; averaged over the stored voltages.
        power, fixed = np.polyfit(width, table["energy_J"].to_numpy(float), 1)
        energy = {
            "energy_per_read_fixed": param(fixed, "J", "energy of a read pulse's edges"),
            "energy_per_read_power": param(power, "W", "energy per second of pulse width"),
            "energy_per_read_full": param(fixed + power * width.max(), "J",
                                          "one full-width read pulse, mean over stored values"),
        }
    return FitRecord(
        kind="charge_per_pulse",
        description=("Charge of one read pulse: Q = I(x) t_pulse + e(x), x = V_store - v_mid, "
                     "I(x) = sum_i current_i x^i, e(x) = sum_i edge_i x^i"),
        parameters={
            "current_coefficients": param(current, "A", "x^i, x in volts"),
            "edge_charge_coefficients": param(edge, "C", "x^i, x in volts"),
            "edge_time": param(edge_time, "s", "e(x) ~ edge_time * I(x): the edges act as "
                               "extra pulse width"),
            "coefficients": param(spread_over_read_voltage(current, read_on_V, order), "A",
                                  "I(x) in the published basis at the read on-level"),
            "order": param(order, "1"),
            "v_mid": param(v_mid_V, "V"),
            "read_on_level": param(read_on_V, "V"),
            "current_at_range_ends": param(full_current, "A"),
            **energy,
        },
        valid_range={"stored_voltage_V": list(stored_range), "t_pulse_s": list(width_range)},
        metrics=metrics,
        provenance={},
    )


@dataclass(frozen=True)
class ChargePerPulse:
    current_coefficients_A: tuple[float, ...]
    edge_coefficients_C: tuple[float, ...]
    v_mid_V: float
    stored_range_V: tuple[float, float]
    pulse_range_s: tuple[float, float]

    @classmethod
    def from_record(cls, record: FitRecord) -> ChargePerPulse:
        return cls(tuple(record.value("current_coefficients")),
                   tuple(record.value("edge_charge_coefficients")), float(record.value("v_mid")),
                   tuple(record.valid_range["stored_voltage_V"]),
                   tuple(record.valid_range["t_pulse_s"]))

    def current_A(self, stored_voltage_V, clamp: bool = False) -> np.ndarray:
        v = check_range("stored_voltage_V", stored_voltage_V, self.stored_range_V, clamp)
        return np.polynomial.polynomial.polyval(v - self.v_mid_V, self.current_coefficients_A)

    def charge_C(self, stored_voltage_V, t_pulse_s, clamp: bool = False) -> np.ndarray:
        v = check_range("stored_voltage_V", stored_voltage_V, self.stored_range_V, clamp)
        t = check_range("t_pulse_s", t_pulse_s, self.pulse_range_s, clamp)
        x = v - self.v_mid_V
        return (np.polynomial.polynomial.polyval(x, self.current_coefficients_A) * t
                + np.polynomial.polynomial.polyval(x, self.edge_coefficients_C))


def fit_write(table: pd.DataFrame, tolerance_V: float = 0.02,
              write_time_s: float | None = None) -> FitRecord:
    """Write characterisation: the shortest write pulse that lands every target within
    `tolerance_V` (default 20 mV, a sixth of the 3-bit DAC's 129 mV step: the write device's
    channel charge leaves about 9-14 mV however long the pulse), the energy of one write, and
    where each target level lands at `write_time_s` (the design's write pulse, which the array
    writes with; default the shortest settled width). The landing error is systematic per
    level, so the array simulator adds it to every written level."""
    widths = np.unique(table["t_write_s"])
    error = (table["stored_voltage_V"] - table["target_voltage_V"]).abs()
    worst = error.groupby(table["t_write_s"]).max().reindex(widths)
    settled = widths[worst.to_numpy() <= tolerance_V]
    if settled.size == 0:
        raise FitError(f"no write pulse width lands every target within {tolerance_V * 1e3:g} mV "
                       f"(best: {worst.min() * 1e3:.3g} mV)")
    write_time = float(settled.min())
    at = table[np.isclose(table["t_write_s"], write_time, rtol=1e-9, atol=0.0)]
    used_time = write_time if write_time_s is None else float(write_time_s)
    used = table[np.isclose(table["t_write_s"], used_time, rtol=1e-6, atol=0.0)]
    if used.empty:
        raise FitError(f"the write table has no t_write_s = {used_time:g} s, the design's write "
                       f"pulse (swept: {', '.join(f'{w:g}' for w in widths)})")
    landing = (used.groupby("target_voltage_V")["stored_voltage_V"].mean()
               .sort_index())
    level_error = landing.to_numpy() - landing.index.to_numpy()
    parameters = {
        "write_time": param(write_time, "s", f"shortest swept width with every target within "
                            f"{tolerance_V * 1e3:g} mV"),
        "tolerance": param(tolerance_V, "V"),
        "write_error_max": param(float(worst.loc[write_time]), "V"),
        "array_write_time": param(used_time, "s", "the write pulse the levels below land with "
                                  "(the design's)"),
        "target_levels": param(landing.index.to_numpy(float), "V"),
        "level_error": param(level_error, "V", "stored minus target at each target level, at "
                             "array_write_time; linear in between"),
    }
    if "energy_J" in table:
        parameters["energy_per_write"] = param(float(at["energy_J"].mean()), "J",
                                               "mean over targets at write_time")
        parameters["energy_per_write_max"] = param(float(at["energy_J"].max()), "J")
    return FitRecord(
        kind="write",
        description="Gain-cell write: settling time through the write device, energy per write",
        parameters=parameters,
        valid_range={"target_voltage_V": [float(table["target_voltage_V"].min()),
                                          float(table["target_voltage_V"].max())],
                     "t_write_s": [float(widths.min()), float(widths.max())]},
        metrics={"worst_error_by_width_V": {f"{w:.4g}": float(e) for w, e in
                                            zip(widths, worst.to_numpy())}},
        provenance={},
    )


def fit_read_disturb(table: pd.DataFrame) -> FitRecord:
    """Read disturb: how far one read moves the stored voltage, per level, from a table of the
    shift `reads` reads leave against a resting twin (netlists/gain_cell_read_disturb.cir, so
    the leak is not counted twice). A query of zero sends no pulse at all, so the widths the
    array uses are the non-zero ones; the simulator takes their mean per level."""
    if (table["reads"] < 1).any():
        raise FitError("read_disturb: every row needs reads >= 1")
    per_read = table.assign(per_read_V=table["disturb_V"] / table["reads"])
    pulsed = per_read[per_read["t_pulse_s"] > 0]
    if pulsed.empty:
        raise FitError("read_disturb needs at least one non-zero pulse width")
    by_level = pulsed.groupby("stored_voltage_V")["per_read_V"]
    levels = by_level.mean().sort_index()
    spread = by_level.agg(lambda x: float(x.max() - x.min())).reindex(levels.index)
    widths = np.unique(pulsed["t_pulse_s"])
    table_by_width = {f"{w:.4g}": [float(v) for v in pulsed[pulsed["t_pulse_s"] == w]
                                   .sort_values("stored_voltage_V")["per_read_V"]]
                      for w in widths}
    return FitRecord(
        kind="read_disturb",
        description=("Read disturb: the stored voltage's shift per read at each level (mean "
                     "over the non-zero read pulse widths; linear in between)"),
        parameters={
            "disturb_levels": param(levels.index.to_numpy(float), "V"),
            "disturb_per_read": param(levels.to_numpy(float), "V",
                                      "mean over the swept non-zero pulse widths"),
            "disturb_per_read_max": param(float(np.abs(pulsed["per_read_V"]).max()), "V"),
            "width_spread_max": param(float(spread.max()), "V",
                                      "largest change of a level's shift over the widths"),
        },
        valid_range={"stored_voltage_V": [float(levels.index.min()),
                                          float(levels.index.max())],
                     "t_pulse_s": [float(widths.min()), float(widths.max())]},
        metrics={"per_read_by_width_V": table_by_width},
        provenance={},
    )
