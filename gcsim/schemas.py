"""The file formats gcsim reads and writes, as pydantic models.

FORMATS maps a format's name to its pydantic (v2) model. The documentation's file-format
reference and the JSON Schemas in docs/schemas/ are generated from it (docs/hooks/reference.py):
each model needs a docstring, every field a `description`, and a field that carries a unit
`json_schema_extra={"unit": "V"}`.
"""

FORMATS: dict = {}
