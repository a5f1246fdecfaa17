"""Readout loading: the column charge lost to a virtual ground that moves, in `fitted` mode.

The integrator holds the bitline at mid-rail only to within dV(t) = offset + a Q(t) + b I(t)
(gcsim.fit.loading). Every cell on the bitline answers with -g dV, where g is its conductance,
g_on while its pulse is on and g_off at rest. Over the integration window T the column loses

    dS = integral G(t) dV(t) dt
      ~ G (offset T + a integral Q dt + b S),     G = sum_i g_off,i + sum_i (g_on,i - g_off,i) w_i / T

(G replaced by its time average, first order in dV). A pulse of width w starting at t0 holds its
charge for the rest of the window, so integral Q dt = sum_j I_j (w_j (T - t0) - w_j^2 / 2): the
same array product as S with the widths replaced by that weight. The correction therefore costs
two more array products, each the size of the one that gives S (a Q dt + b S is one product,
linear in the weights; the pulsed cells' extra conductance is the other; the resting
conductance is a sum, not a product), and keeps every feature of the cell model (decay,
mismatch) because it runs through the same GainCellArray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gcsim.hw.stages import GainCellArray


@dataclass(frozen=True)
class ReadoutLoading:
    offset_V: float
    charge_coefficient_V_per_C: float
    current_coefficient_V_per_A: float
    on_conductance_S: tuple[float, ...]      # power coefficients in V_store - v_mid
    off_conductance_S: tuple[float, ...]
    k_window_s: float
    k_pulse_start_s: float
    v_window_s: float
    v_pulse_start_s: float
    # The converters' discharge currents (1 / slope of their fits): the cells, all at rest, keep
    # answering the deviation while a converter empties the integrator.
    k_conversion_current_A: float | None = None
    v_conversion_current_A: float | None = None

    def conversion_scale(self, rest_conductance_S, charge_C, current_A: float | None):
        """Pulse-width factor of a converter emptying a loaded integrator at `current_A`.

        While it sinks (charge > 0) the bitline sits at offset - b I, and the resting cells
        push G (b I - offset) back in; sourcing (charge < 0), they pull G (b I + offset). The
        net rate is I (1 - G b) + sign(charge) G offset, so the pulse lasts I / rate times
        longer than an ideal integrator's.
        """
        if current_A is None:
            return 1.0
        g = rest_conductance_S
        rate = (1.0 - g * self.current_coefficient_V_per_A
                + np.sign(charge_C) * g * self.offset_V / current_A)
        return 1.0 / rate

    def arrays(self, current: GainCellArray, written_V, correction_dtype=None,
               **array_args) -> LoadedArray:
        """The conductance arrays beside a current array built from the same `written_V` and
        `array_args` (its power_coefficients_A are replaced by the conductances'). The
        correction's products (the deviation and the conductances) run in `correction_dtype`
        (default: the current array's): the correction is a few per cent of the charge, so
        float32 keeps it to about 1e-8 of the charge at half the cost of float64."""
        return self._build(written_V, correction_dtype, array_args, current)

    def build(self, written_V, correction_dtype=None, **array_args) -> LoadedArray:
        """`arrays` with the current array built here too, from `array_args`: the current and
        conductance arrays then share the powers of the stored voltage (GainCellArray.family)."""
        return self._build(written_V, correction_dtype, array_args, None)

    def _build(self, written_V, correction_dtype, array_args: dict,
               current: GainCellArray | None) -> LoadedArray:
        array_args = dict(array_args)
        dtype = np.dtype(array_args.pop("dtype", current.dtype if current is not None
                                        else np.float64))
        correction_dtype = np.dtype(correction_dtype or dtype)
        current_coefficients = array_args.pop("power_coefficients_A", None)
        order = max(len(self.on_conductance_S), len(self.off_conductance_S))
        on = np.zeros(order)
        off = np.zeros(order)
        on[:len(self.on_conductance_S)] = self.on_conductance_S
        off[:len(self.off_conductance_S)] = self.off_conductance_S
        sets, dtypes = [off, on - off], [correction_dtype, correction_dtype]
        if current is None:
            sets.append(current_coefficients)
            dtypes.append(dtype)
        if correction_dtype != dtype:   # the current again, in the correction's precision
            sets.append(current_coefficients)
            dtypes.append(correction_dtype)
        arrays = GainCellArray.family(written_V, sets, dtypes, **array_args)
        rest, extra = arrays[:2]
        if current is None:
            current = arrays[2]
        moving = arrays[-1] if correction_dtype != dtype else current
        return LoadedArray(self, current, rest, extra, moving)


@dataclass
class LoadedArray:
    """A gain-cell array read through a loading integrator: `column_charges_C` and
    `row_charges_C` as GainCellArray's, with the charge the moving bitline costs taken off."""

    loading: ReadoutLoading
    current: GainCellArray
    rest: GainCellArray      # g_off
    extra: GainCellArray     # g_on - g_off
    moving: GainCellArray | None = None   # the current array in the correction's precision

    def _loaded(self, product, totals, widths, window: float, start: float, fold=None):
        """Charge and resting conductance through `product(array, weights)`, one of
        GainCellArray's column or row products, and `totals(array)`, its unit-width sum; the
        charge has the loading taken off. Three products in all: the charge, the deviation
        (its charge and current terms are one product, linear in the weights) and the
        pulsed cells' extra conductance; the resting conductance needs none. `fold` sums the
        products of cells that share one integrator (a physical array's sub-tiles) before
        the conductance meets the deviation: their product is not a sum over sub-tiles."""
        lo = self.loading
        fold = fold or (lambda x: x)
        widths = np.asarray(widths)
        w = np.minimum(widths, max(window - start, 0.0))
        hold = w * (window - start) - 0.5 * w * w   # per cell: integral of its charge dt
        deviation = lo.charge_coefficient_V_per_C * hold + lo.current_coefficient_V_per_A * widths
        if self.moving is None or self.moving is self.current:
            # One array for both: one product with both weights, its key matrix read once.
            both = product(self.current, np.stack([widths, deviation.astype(widths.dtype)]))
            charge, moving = fold(both[0]), fold(both[1])
        else:
            charge = fold(product(self.current, widths))
            moving = fold(product(self.moving, deviation))
        rest = totals(self.rest)
        conductance = rest + fold(product(self.extra, w)) / window
        return charge - conductance * (lo.offset_V * window + moving), rest

    def column_charges_C(self, widths, query_start: int, key_start: int, key_stop: int):
        return self.column_charges_and_rest_C(widths, query_start, key_start, key_stop)[0]

    def column_charges_and_rest_C(self, widths, query_start: int, key_start: int,
                                  key_stop: int):
        """The column charges, and each column's conductance with every cell at rest."""
        n_q = np.shape(widths)[0]
        return self._loaded(
            lambda array, weights: array.column_charges_C(weights, query_start, key_start,
                                                          key_stop),
            lambda array: array.column_totals_C(n_q, query_start, key_start, key_stop),
            widths, self.loading.k_window_s, self.loading.k_pulse_start_s)

    def row_charges_C(self, widths, query_start: int, key_start: int, array_size: int,
                      read=None, fold=None, rest_totals=None):
        return self.row_charges_and_rest_C(widths, query_start, key_start, array_size, read,
                                           fold, rest_totals)[0]

    def row_charges_and_rest_C(self, widths, query_start: int, key_start: int, array_size: int,
                               read=None, fold=None, rest_totals=None):
        """The V columns' charges and resting conductances, (sub-tile, query, column) each.
        `read` (n_queries, n_keys): which keys' sub-tiles the query reads at all (its window);
        a sub-tile that is not read is not integrated and gets no loading. Default: the
        sub-tiles with any pulse.

        When several sub-tiles share one integrator (a ring buffer's physical array), `fold`
        sums per-sub-tile values (sub-tile, ...) into per-integrator ones, and
        `rest_totals(array)` gives each integrator's unit-width sum over the cells on its
        bitline, (integrator, query, column); the results are then per integrator."""
        widths = np.asarray(widths)
        n_q, n_k = widths.shape
        if fold is None:
            def totals(array):
                return array.row_totals_C(n_q, query_start, key_start, array_size, n_k)
        else:
            totals = rest_totals
        out, rest = self._loaded(
            lambda array, weights: array.row_charges_C(weights, query_start, key_start,
                                                       array_size),
            totals, widths, self.loading.v_window_s, self.loading.v_pulse_start_s, fold)
        if read is None:
            read = widths > 0
        read = np.asarray(read, dtype=bool)
        n_sub = -(-n_k // array_size)
        padded = np.zeros((n_q, n_sub * array_size), dtype=bool)
        padded[:, :n_k] = read
        used = padded.reshape(n_q, n_sub, array_size).any(axis=2).T   # (sub, query)
        if fold is not None:
            used = fold(used.astype(np.uint8)) > 0
        out *= used[:, :, None]
        return out, rest
