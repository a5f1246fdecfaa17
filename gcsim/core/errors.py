"""Exceptions that the CLI turns into one-line messages and a non-zero exit."""


class GcsimError(Exception):
    """A user-facing error: bad input, a missing tool, a corrupt file. One line, no traceback."""


class SpecError(GcsimError):
    """A characterisation spec is malformed; the message names the offending key."""


class ParameterError(GcsimError):
    """A parameter name or value was refused before any netlist was written."""


class NgspiceUnavailable(GcsimError):
    """The ngspice shared library cannot be found or loaded."""
