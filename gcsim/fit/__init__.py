"""Compact models fitted to sweep tables: the fitters, the fit-file schema, and bundles."""

from gcsim.fit.bundle import FitsBundle, load_bundle, write_parameter_bundle
from gcsim.fit.schema import FitFileError, FitRecord, RangeError, load, save

__all__ = ["FitFileError", "FitRecord", "FitsBundle", "RangeError", "load", "load_bundle", "save",
           "write_parameter_bundle"]
