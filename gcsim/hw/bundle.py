"""Build the array simulator's `fitted` hardware model from a fits bundle."""

from __future__ import annotations

import math

from gcsim.fit.bundle import DESIGN_FILE, FitsBundle
from gcsim.fit.schema import FitFileError
from gcsim.hw.components import (CellMismatch, DecayAtTemperature, ExponentialDecay,
                                 HardwareModel, PolynomialCell, ReadDisturb,
                                 WriteError)
from gcsim.hw.loading import ReadoutLoading
from gcsim.hw.operating import OperatingPoint
from gcsim.hw.published import PAPER_OPERATING_POINT, published_readout_chain
from gcsim.hw.stages import ChargeToPulse, Readout, SignedConverter


def _cell(bundle: FitsBundle) -> tuple[PolynomialCell, float, float]:
    """The cell's current law, its read-on level in volts, and the query pulses' edge time in
    seconds: from charge_per_pulse (the current while a pulse is on, and the charge its edges
    add as an extra width) when the bundle has it, else from the DC nonlinearity fit (no
    edges)."""
    if "charge_per_pulse" in bundle.records:
        record = bundle.records["charge_per_pulse"]
        edge_time_s = float(record.value("edge_time"))
    else:
        record = bundle.records["nonlinearity"]
        edge_time_s = 0.0
    cell = PolynomialCell(coefficients_A=tuple(float(c) for c in record.value("coefficients")),
                          v_mid_V=float(record.value("v_mid")))
    try:
        _ = cell.degree   # refuses a coefficient count that no triangular basis has
    except ValueError as exc:
        raise FitFileError(f"fits bundle {bundle.directory}: {exc}") from None
    return cell, float(record.value("read_on_level")), edge_time_s


def _decay(bundle: FitsBundle) -> ExponentialDecay:
    """The stored voltage's decay: per-level asymptotes and every fitted temperature when the
    record has them, with the ages its fit covers when the record says."""
    record = bundle.records["decay"]
    parameters = record.parameters
    levels = by_level = None
    if "asymptote_levels" in parameters and "asymptote_by_level" in parameters:
        levels = tuple(float(v) for v in record.value("asymptote_levels"))
        by_level = tuple(float(v) for v in record.value("asymptote_by_level"))
        if len(levels) != len(by_level) or len(levels) < 1 or any(
                b <= a for a, b in zip(levels, levels[1:])):
            raise FitFileError(f"fits bundle {bundle.directory}: decay.json: asymptote_levels "
                               "must increase and match asymptote_by_level one to one")
    per_temperature = []
    for entry in (record.extra or {}).get("per_temperature", []):
        law = entry.get("window_level_law") if isinstance(entry, dict) else None
        if law is None:
            continue
        try:
            per_temperature.append(DecayAtTemperature(
                float(entry["temperature_C"]), float(law["time_constant_s"]),
                tuple(float(v) for v in law["levels_V"]),
                tuple(float(v) for v in law["asymptotes_V"])))
        except (KeyError, TypeError, ValueError):
            raise FitFileError(f"fits bundle {bundle.directory}: decay.json: a "
                               "per_temperature entry's window_level_law is malformed") from None
        bad = per_temperature[-1]
        if not (bad.time_constant_s > 0 and math.isfinite(bad.time_constant_s)) or len(
                bad.asymptote_levels_V) != len(bad.asymptote_by_level_V):
            raise FitFileError(f"fits bundle {bundle.directory}: decay.json: the window law at "
                               f"{bad.temperature_C:g} degC is malformed")
    nominal = parameters.get("nominal_temperature", {}).get("value")
    return ExponentialDecay(time_constant_s=float(record.value("time_constant")),
                            asymptote_V=float(record.value("asymptote")),
                            fitted_age_max_s=(float(record.value("age_max"))
                                              if "age_max" in parameters else None),
                            asymptote_levels_V=levels, asymptote_by_level_V=by_level,
                            temperature_C=None if nominal is None else float(nominal),
                            by_temperature=tuple(per_temperature))


def _readout(bundle: FitsBundle) -> Readout:
    """The column readout from the sense-amp fit; an ideal one without it."""
    if "sense_amp" not in bundle.records:
        return Readout()
    amp = bundle.records["sense_amp"]
    high = float(amp.value("saturation_charge_high"))
    extra = amp.parameters
    return Readout(
        gain=float(extra.get("charge_gain", {}).get("value", 1.0)),
        offset_C=float(extra.get("charge_offset", {}).get("value", 0.0)),
        saturation_C=high if high > 0 else None,
    )


def _charge_to_pulse(bundle: FitsBundle) -> ChargeToPulse:
    """The HardSigmoid converter, with its comparator threshold when the fit has one."""
    record = bundle.records["charge_to_pulse"]
    return ChargeToPulse(slope_s_per_C=float(record.value("slope")),
                         t_max_s=float(record.value("t_max")),
                         offset_C=float(record.value("offset")),
                         threshold_C=(float(record.value("threshold"))
                                      if "threshold" in record.parameters else None))


def _output_converter(bundle: FitsBundle) -> SignedConverter:
    """The signed output converter from its fit; the published one without it."""
    if "signed_converter" not in bundle.records:
        return published_readout_chain()[2]
    record = bundle.records["signed_converter"]
    offset = record.parameters.get("charge_offset", {}).get("value", 0.0)
    return SignedConverter(float(record.value("full_scale")), int(record.value("levels")),
                           float(offset))


def _mismatch(bundle: FitsBundle) -> CellMismatch | None:
    """The per-cell mismatch distributions, when the bundle has them."""
    if "mismatch" not in bundle.records:
        return None
    record = bundle.records["mismatch"]
    correlation = record.parameters.get("gain_shift_correlation", {}).get("value", 0.0)
    return CellMismatch(float(record.value("current_sigma_rel")),
                        float(record.value("stored_voltage_shift_sigma")), float(correlation))


def _level_table(bundle: FitsBundle, kind: str, levels: str, values: str, cls):
    """A per-level table (`cls`, a LevelTable) from `kind`'s record, None without the record
    or its parameters (an older bundle)."""
    record = bundle.records.get(kind)
    if record is None or levels not in record.parameters or values not in record.parameters:
        return None
    try:
        return cls(tuple(float(v) for v in record.value(levels)),
                   tuple(float(v) for v in record.value(values)))
    except (TypeError, ValueError) as exc:
        raise FitFileError(f"fits bundle {bundle.directory}: {kind}.json: {exc}") from None


def _loading(bundle: FitsBundle, c2p: ChargeToPulse) -> ReadoutLoading | None:
    """The readout loading, when the bundle has both its fit and the cells' conductances.
    The converters' discharge currents come from their slopes (the V converter's only when
    the bundle has its fit)."""
    if "readout_loading" not in bundle.records or "cell_conductance" not in bundle.records:
        return None
    lo = bundle.records["readout_loading"]
    cc = bundle.records["cell_conductance"]
    loading = ReadoutLoading(
        offset_V=float(lo.value("offset")),
        charge_coefficient_V_per_C=float(lo.value("charge_coefficient")),
        current_coefficient_V_per_A=float(lo.value("current_coefficient")),
        on_conductance_S=tuple(float(c) for c in cc.value("on_coefficients")),
        off_conductance_S=tuple(float(c) for c in cc.value("off_coefficients")),
        k_window_s=float(lo.value("k_window")),
        k_pulse_start_s=float(lo.value("k_pulse_start")),
        v_window_s=float(lo.value("v_window")),
        v_pulse_start_s=float(lo.value("v_pulse_start")),
        k_conversion_current_A=1.0 / c2p.slope_s_per_C,
        v_conversion_current_A=(1.0 / float(bundle.records["signed_converter"].value("slope"))
                                if "signed_converter" in bundle.records else None),
    )
    if min(loading.k_window_s, loading.v_window_s) <= 0:
        raise FitFileError(f"fits bundle {bundle.directory}: readout_loading has a "
                           "non-positive integration window")
    return loading


# What stands in for each optional fit a bundle lacks (the rule of what `fitted` mode needs:
# decay.json, charge_to_pulse.json and charge_per_pulse.json or nonlinearity.json; the rest
# is optional, and the model says what stood in).
STAND_INS = {
    "sense_amp": "an ideal column readout (gain 1, no offset, no saturation)",
    "signed_converter": "the published signed output converter (full scale 40 µA x T_max)",
    "mismatch": "no per-cell mismatch",
    "readout_loading": "an ideal virtual ground (no readout loading)",
    "cell_conductance": "an ideal virtual ground (no readout loading)",
    "write": "writes land exactly on the DAC levels",
    "read_disturb": "reads do not move the stored voltages",
}


# What stands in for a bundle without the design its sweeps ran on.
DESIGN_STAND_IN = (f"no {DESIGN_FILE}: the published operating point "
                   f"({PAPER_OPERATING_POINT.describe()})")


def stand_ins(bundle: FitsBundle) -> list[str]:
    """One line per optional fit (and the design) the bundle lacks, saying what stands in."""
    lines = [f"no {kind}.json: {what}" for kind, what in STAND_INS.items()
             if kind not in bundle.records]
    write = bundle.records.get("write")
    if write is not None and "level_error" not in write.parameters:
        lines.append(f"write.json without level_error: {STAND_INS['write']}")
    if bundle.design is None:
        lines.append(DESIGN_STAND_IN)
    return lines


def operating_point(bundle: FitsBundle) -> OperatingPoint:
    """The operating point of the design the bundle carries; the published one without."""
    if bundle.design is None:
        return PAPER_OPERATING_POINT
    return OperatingPoint.from_design(bundle.design)


def hardware_model(bundle: FitsBundle) -> HardwareModel:
    """The `fitted` mode's model: cell, decay, readout and converters from the bundle's fits.
    Its notes["stand_ins"] lists what stood in for the optional fits the bundle lacks."""
    cell, read_on_V, edge_time_s = _cell(bundle)
    decay = _decay(bundle)
    readout = _readout(bundle)
    c2p = _charge_to_pulse(bundle)
    output = _output_converter(bundle)
    mismatch = _mismatch(bundle)
    point = operating_point(bundle)
    if decay.time_constant_s <= 0 or c2p.slope_s_per_C <= 0 or c2p.t_max_s <= 0:
        raise FitFileError(f"fits bundle {bundle.directory}: non-positive time constant, "
                           "slope or t_max")
    return HardwareModel(
        name="fitted",
        label=f"fitted ({bundle.directory})",
        cell=cell,
        decay=decay,
        readout=readout,
        charge_to_pulse=c2p,
        output_converter=output,
        read_on_V=read_on_V,
        default_decay_factor=None,
        default_token_period_s=point.token_period_s,
        mismatch=mismatch,
        pulse_edge_time_s=edge_time_s,
        loading=_loading(bundle, c2p),
        ring_buffer=True,
        notes={"stand_ins": stand_ins(bundle), "models": list(bundle.models),
               "design": bundle.design.name if bundle.design is not None else None,
               "design_sha256": bundle.design.sha256 if bundle.design is not None else None},
        operating_point=point,
        # where writes land, measured at the array's write pulse; how far a read moves a cell
        write_error=_level_table(bundle, "write", "target_levels", "level_error", WriteError),
        read_disturb=_level_table(bundle, "read_disturb", "disturb_levels",
                                  "disturb_per_read", ReadDisturb),
    )
