"""Imported once by the forkserver that starts ngspice workers on a Dask worker (see
launcher._Launcher), so each run's process inherits PySpice's import (0.25 s)."""

from gcsim.spice import run

run.preimport()
