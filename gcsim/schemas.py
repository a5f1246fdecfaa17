"""The file formats gcsim reads and writes, as pydantic models.

FORMATS maps a format's name to its pydantic (v2) model. The documentation's file-format
reference and the JSON Schemas in docs/schemas/ are generated from it (docs/hooks/reference.py):
each model needs a docstring, every field a `description`, and a field that carries a unit
`json_schema_extra={"unit": "V"}`. The same models check the files when gcsim reads them, so
the reference, the editor schemas and the error messages cannot drift apart.
"""

from gcsim.characterize.spec import SPEC_SCHEMA
from gcsim.core.design import DESIGN_SCHEMA
from gcsim.fit.bundle import BUNDLE_SCHEMA
from gcsim.fit.schema import FIT_FILE_SCHEMA
from gcsim.spice.process import PROCESS_SCHEMA

FORMATS: dict = {
    "sweep-spec": SPEC_SCHEMA,
    "process": PROCESS_SCHEMA,
    "design": DESIGN_SCHEMA,
    "fit-file": FIT_FILE_SCHEMA,
    "fits-bundle": BUNDLE_SCHEMA,
}
