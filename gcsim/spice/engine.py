"""The ngspice engine's public names in one place; the work is done in run (one run in this
process), pool (local worker processes), version (the version probe) and launcher (runs from
a Dask worker).

Callers reach run_many and ngspice_version through this module (``engine.run_many``), so a
test that replaces ``engine.<name>`` reaches every such caller.
"""

from gcsim.spice.launcher import isolated_ngspice_version, run_isolated
from gcsim.spice.pool import DEFAULT_EXECUTOR, run_in_one_worker, run_many
from gcsim.spice.run import (RunRequest, RunResult, library_path, new_ngspice,
                             run_in_this_process)
from gcsim.spice.version import ngspice_version

__all__ = [
    "DEFAULT_EXECUTOR", "RunRequest", "RunResult", "isolated_ngspice_version", "library_path",
    "new_ngspice", "ngspice_version", "run_in_one_worker", "run_in_this_process", "run_isolated",
    "run_many",
]
