"""A fits bundle: a folder of fit files that loads as one object, and becomes the array
simulator's `fitted` hardware model."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from gcsim import __version__
from gcsim.fit import schema
from gcsim.fit.schema import FitFileError, FitRecord, param

# file name -> kind; a bundle holds at most one of each.
FILES = {
    "nonlinearity.json": "nonlinearity",
    "charge_per_pulse.json": "charge_per_pulse",
    "decay.json": "decay",
    "sense_amp.json": "sense_amp",
    "charge_to_pulse.json": "charge_to_pulse",
    "signed_converter.json": "signed_converter",
    "mismatch.json": "mismatch",
    "write.json": "write",
    "cell_conductance.json": "cell_conductance",
    "readout_loading.json": "readout_loading",
}
REQUIRED = ("decay.json", "charge_to_pulse.json")
CELL_FILES = ("charge_per_pulse.json", "nonlinearity.json")  # the first present drives the cell


@dataclass
class FitsBundle:
    directory: Path
    records: dict[str, FitRecord]   # by kind

    def __contains__(self, kind: str) -> bool:
        return kind in self.records

    def __getitem__(self, kind: str) -> FitRecord:
        return self.records[kind]

    def hardware_model(self):
        """The `fitted` mode's model: cell, decay, readout and converters from these fits."""
        from gcsim.simulate.models import (
            PAPER,
            CellMismatch,
            ExponentialDecay,
            HardwareModel,
            PolynomialCell,
            _published_readout_chain,
        )
        from gcsim.simulate.stages import ChargeToPulse, Readout, SignedConverter

        if "charge_per_pulse" in self.records:
            record = self.records["charge_per_pulse"]
            edge_time = float(record.value("edge_time"))
        else:
            record = self.records["nonlinearity"]
            edge_time = 0.0
        cell = PolynomialCell(coefficients_A=tuple(float(c) for c in record.value("coefficients")),
                              v_mid_V=float(record.value("v_mid")))
        try:
            _ = cell.degree
        except ValueError as exc:
            raise FitFileError(f"fits bundle {self.directory}: {exc}") from None
        read_on = float(record.value("read_on_level"))
        decay_record = self.records["decay"]
        decay = ExponentialDecay(time_constant_s=float(decay_record.value("time_constant")),
                                 asymptote_V=float(decay_record.value("asymptote")),
                                 fitted_age_max_s=(float(decay_record.value("age_max"))
                                                   if "age_max" in decay_record.parameters
                                                   else None))
        readout = Readout()
        if "sense_amp" in self.records:
            amp = self.records["sense_amp"]
            high = float(amp.value("saturation_charge_high"))
            extra = amp.parameters
            readout = Readout(
                gain=float(extra.get("charge_gain", {}).get("value", 1.0)),
                offset_C=float(extra.get("charge_offset", {}).get("value", 0.0)),
                saturation_C=high if high > 0 else None,
            )
        c2p_record = self.records["charge_to_pulse"]
        c2p = ChargeToPulse(slope_s_per_C=float(c2p_record.value("slope")),
                            t_max_s=float(c2p_record.value("t_max")),
                            offset_C=float(c2p_record.value("offset")),
                            threshold_C=(float(c2p_record.value("threshold"))
                                         if "threshold" in c2p_record.parameters else None))
        if "signed_converter" in self.records:
            out_record = self.records["signed_converter"]
            output = SignedConverter(float(out_record.value("full_scale")),
                                     int(out_record.value("levels")))
        else:
            output = _published_readout_chain()[2]
        mismatch = None
        if "mismatch" in self.records:
            mm = self.records["mismatch"]
            mismatch = CellMismatch(float(mm.value("current_sigma_rel")),
                                    float(mm.value("stored_voltage_shift_sigma")))
        if decay.time_constant_s <= 0 or c2p.slope_s_per_C <= 0 or c2p.t_max_s <= 0:
            raise FitFileError(f"fits bundle {self.directory}: non-positive time constant, "
                               "slope or t_max")
        loading = None
        if "readout_loading" in self.records and "cell_conductance" in self.records:
            from gcsim.simulate.loading import ReadoutLoading

            lo = self.records["readout_loading"]
            cc = self.records["cell_conductance"]
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
                v_conversion_current_A=(1.0 / float(self.records["signed_converter"]
                                                    .value("slope"))
                                        if "signed_converter" in self.records else None),
            )
            if min(loading.k_window_s, loading.v_window_s) <= 0:
                raise FitFileError(f"fits bundle {self.directory}: readout_loading has a "
                                   "non-positive integration window")
        return HardwareModel(
            name="fitted",
            label=f"fitted ({self.directory})",
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


def load_bundle(directory: str | Path) -> FitsBundle:
    """Load and validate every fit file of a bundle; one-line errors for anything wrong."""
    root = Path(directory)
    if not root.is_dir():
        raise FitFileError(f"fits bundle not found: {root} is not a directory")
    missing = [name for name in REQUIRED if not (root / name).is_file()]
    if not any((root / name).is_file() for name in CELL_FILES):
        missing.insert(0, " or ".join(CELL_FILES))
    if missing:
        raise FitFileError(f"fits bundle {root} is missing {', '.join(missing)}")
    records = {}
    for name, kind in FILES.items():
        if (root / name).is_file():
            records[kind] = schema.load(root / name, kind=kind)
    return FitsBundle(root, records)


def write_parameter_bundle(directory: str | Path, coefficients_A, *, time_constant_s: float,
                           asymptote_V: float, slope_s_per_C: float, t_max_s: float,
                           c2p_offset_C: float = 0.0, readout_gain: float = 1.0,
                           readout_offset_C: float = 0.0, saturation_C: float | None = None,
                           output_full_scale_C: float | None = None, levels: int = 32,
                           mismatch: tuple[float, float] | None = None, v_mid_V: float = 0.45,
                           read_on_V: float = 0.9, note: str = "hand-written parameters"
                           ) -> Path:
    """Write a bundle from given parameters rather than from sweeps: for hand-made models, the
    published model as a bundle, and tests. Provenance says where the numbers came from."""
    from gcsim.simulate.models import degree_for_terms, polynomial_basis

    root = Path(directory)
    order = degree_for_terms(len(coefficients_A))
    provenance = {"origin": note, "gcsim_version": __version__,
                  "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()}

    def record(kind, parameters, valid_range=None):
        return FitRecord(kind=kind, parameters=parameters, valid_range=valid_range or {},
                         metrics={}, provenance=provenance, description=note)

    files = {
        "nonlinearity.json": record("nonlinearity", {
            "coefficients": param(coefficients_A, "A"),
            "exponents": param([list(e) for e in polynomial_basis(order)], "1"),
            "order": param(order, "1"), "v_mid": param(v_mid_V, "V"),
            "read_on_level": param(read_on_V, "V")}),
        "decay.json": record("decay", {
            "time_constant": param(time_constant_s, "s"), "asymptote": param(asymptote_V, "V"),
            "law_time_constant": param(time_constant_s, "s"),
            "law_asymptote": param(asymptote_V, "V"),
            "law_voltage_scale": param(1e3, "V", "large: the law is a plain exponential"),
            "nominal_temperature": param(27.0, "degC")}),
        "charge_to_pulse.json": record("charge_to_pulse", {
            "slope": param(slope_s_per_C, "s/C"), "offset": param(c2p_offset_C, "C"),
            "t_max": param(t_max_s, "s"),
            "saturation_charge": param(c2p_offset_C + t_max_s / slope_s_per_C, "C")}),
    }
    if saturation_C is not None or readout_gain != 1.0 or readout_offset_C != 0.0:
        high = saturation_C if saturation_C is not None else -1.0
        files["sense_amp.json"] = record("sense_amp", {
            "gain": param(1.0, "V/C"), "offset": param(0.0, "V"),
            "linear_range_low": param(-abs(high), "C"), "linear_range_high": param(abs(high), "C"),
            "saturation_low": param(-abs(high), "V"), "saturation_high": param(abs(high), "V"),
            "saturation_charge_low": param(-abs(high), "C"),
            "saturation_charge_high": param(high, "C", "negative: no saturation"),
            "charge_gain": param(readout_gain, "1"), "charge_offset": param(readout_offset_C, "C")})
    if output_full_scale_C is not None:
        files["signed_converter.json"] = record("signed_converter", {
            "full_scale": param(output_full_scale_C, "C"), "slope": param(t_max_s /
                                                                          output_full_scale_C,
                                                                          "s/C"),
            "t_max": param(t_max_s, "s"), "levels": param(levels, "1")})
    if mismatch is not None:
        files["mismatch.json"] = record("mismatch", {
            "current_sigma_rel": param(mismatch[0], "1"),
            "stored_voltage_shift_sigma": param(mismatch[1], "V")})
    root.mkdir(parents=True, exist_ok=True)
    for name, rec in files.items():
        schema.save(rec, root / name)
    return root
