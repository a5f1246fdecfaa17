"""Build the array simulator's `fitted` hardware model from a fits bundle."""

from __future__ import annotations

from gcsim.fit.bundle import FitsBundle
from gcsim.fit.schema import FitFileError
from gcsim.hw.components import CellMismatch, ExponentialDecay, HardwareModel, PolynomialCell
from gcsim.hw.loading import ReadoutLoading
from gcsim.hw.published import PAPER, published_readout_chain
from gcsim.hw.stages import ChargeToPulse, Readout, SignedConverter


def hardware_model(bundle: FitsBundle) -> HardwareModel:
    """The `fitted` mode's model: cell, decay, readout and converters from the bundle's fits."""
    if "charge_per_pulse" in bundle.records:
        record = bundle.records["charge_per_pulse"]
        edge_time = float(record.value("edge_time"))
    else:
        record = bundle.records["nonlinearity"]
        edge_time = 0.0
    cell = PolynomialCell(coefficients_A=tuple(float(c) for c in record.value("coefficients")),
                          v_mid_V=float(record.value("v_mid")))
    try:
        _ = cell.degree
    except ValueError as exc:
        raise FitFileError(f"fits bundle {bundle.directory}: {exc}") from None
    read_on = float(record.value("read_on_level"))
    decay_record = bundle.records["decay"]
    decay = ExponentialDecay(time_constant_s=float(decay_record.value("time_constant")),
                             asymptote_V=float(decay_record.value("asymptote")),
                             fitted_age_max_s=(float(decay_record.value("age_max"))
                                               if "age_max" in decay_record.parameters
                                               else None))
    readout = Readout()
    if "sense_amp" in bundle.records:
        amp = bundle.records["sense_amp"]
        high = float(amp.value("saturation_charge_high"))
        extra = amp.parameters
        readout = Readout(
            gain=float(extra.get("charge_gain", {}).get("value", 1.0)),
            offset_C=float(extra.get("charge_offset", {}).get("value", 0.0)),
            saturation_C=high if high > 0 else None,
        )
    c2p_record = bundle.records["charge_to_pulse"]
    c2p = ChargeToPulse(slope_s_per_C=float(c2p_record.value("slope")),
                        t_max_s=float(c2p_record.value("t_max")),
                        offset_C=float(c2p_record.value("offset")),
                        threshold_C=(float(c2p_record.value("threshold"))
                                     if "threshold" in c2p_record.parameters else None))
    if "signed_converter" in bundle.records:
        out_record = bundle.records["signed_converter"]
        output = SignedConverter(float(out_record.value("full_scale")),
                                 int(out_record.value("levels")))
    else:
        output = published_readout_chain()[2]
    mismatch = None
    if "mismatch" in bundle.records:
        mm = bundle.records["mismatch"]
        mismatch = CellMismatch(float(mm.value("current_sigma_rel")),
                                float(mm.value("stored_voltage_shift_sigma")))
    if decay.time_constant_s <= 0 or c2p.slope_s_per_C <= 0 or c2p.t_max_s <= 0:
        raise FitFileError(f"fits bundle {bundle.directory}: non-positive time constant, "
                           "slope or t_max")
    loading = None
    if "readout_loading" in bundle.records and "cell_conductance" in bundle.records:
        from gcsim.hw.loading import ReadoutLoading

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
            v_conversion_current_A=(1.0 / float(bundle.records["signed_converter"]
                                                .value("slope"))
                                    if "signed_converter" in bundle.records else None),
        )
        if min(loading.k_window_s, loading.v_window_s) <= 0:
            raise FitFileError(f"fits bundle {bundle.directory}: readout_loading has a "
                               "non-positive integration window")
    return HardwareModel(
        name="fitted",
        label=f"fitted ({bundle.directory})",
        cell=cell,
        decay=decay,
        readout=readout,
        charge_to_pulse=c2p,
        output_converter=output,
        read_on_V=read_on,
        default_decay_factor=None,
        default_token_period_s=PAPER.token_period_s,
        mismatch=mismatch,
        pulse_edge_time_s=edge_time,
        loading=loading,
    )
