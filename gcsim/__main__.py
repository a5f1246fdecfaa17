"""`python -m gcsim` is the `gcsim` command."""

from gcsim.cli import main

main()
