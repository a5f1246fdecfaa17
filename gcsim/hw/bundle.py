"""Build the array simulator's `fitted` hardware model from a fits bundle."""

from __future__ import annotations

from gcsim.fit.bundle import DESIGN_FILE, FitsBundle
from gcsim.fit.schema import FitFileError
from gcsim.hw.components import CellMismatch, ExponentialDecay, HardwareModel, PolynomialCell
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
    """The stored voltage's decay, with the ages its fit covers when the record says."""
    record = bundle.records["decay"]
    return ExponentialDecay(time_constant_s=float(record.value("time_constant")),
                            asymptote_V=float(record.value("asymptote")),
                            fitted_age_max_s=(float(record.value("age_max"))
                                              if "age_max" in record.parameters else None))


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
}


# What stands in for a bundle without the design its sweeps ran on.
DESIGN_STAND_IN = (f"no {DESIGN_FILE}: the published operating point "
                   f"({PAPER_OPERATING_POINT.describe()})")


def stand_ins(bundle: FitsBundle) -> list[str]:
    """One line per optional fit (and the design) the bundle lacks, saying what stands in."""
    lines = [f"no {kind}.json: {what}" for kind, what in STAND_INS.items()
             if kind not in bundle.records]
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
    )
