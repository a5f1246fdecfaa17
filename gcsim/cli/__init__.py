"""The command line: one module per command, and the helpers they share (`common`)."""

from gcsim.cli.main import main

__all__ = ["main"]
