"""A fits bundle: a folder of fit files that loads and validates as one object (I/O only; the
hardware model is built from it in gcsim.hw.bundle)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from gcsim import __version__
from gcsim.fit import schema
from gcsim.fit.basis import degree_for_terms, polynomial_basis
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
