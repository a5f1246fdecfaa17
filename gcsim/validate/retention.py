"""Aged stored voltages from SPICE, for the retention scenario.

A cell written at voltage w and read `age` seconds later holds whatever its leakage left. That
is simulated, not modelled: the characterisation's retention testbench
(netlists/gain_cell_retention.cir: write transistor off, every line at rest, gmin lowered so
ngspice adds no leak of its own) runs one instance per distinct written voltage in one
transient up to the oldest age, and each instance's v(sn) is read at every age needed. The tile
netlist then starts each cell at its aged voltage (`.ic`), so the read itself is simulated on
the cell as it is after the hold. What this leaves out: nothing disturbs the cells during the
hold (no reads or writes of neighbours). The hold runs on the tile's cell (its design's sizes,
supply and word-line rest level) at the tile's temperature.
"""

from __future__ import annotations

import numpy as np

from gcsim.spice import engine
from gcsim.core import resources
from gcsim.spice import process as processes
from gcsim.core.errors import GcsimError
from gcsim.spice.template import Template, save_card, vector_name
from gcsim.core.values import format_number as f


def aged_voltages(written_V: np.ndarray, age_s: np.ndarray, models: processes.ModelSet,
                  jobs: int = 1, points: int = 400,
                  params: dict[str, float] | None = None) -> np.ndarray:
    """Stored voltage of each cell (written_V, age_s broadcast together) after its age, on
    the cell `params` describes (the tile's values; those the retention testbench declares
    are taken, the rest ignored; None: the testbench's defaults)."""
    written_V, age_s = np.broadcast_arrays(np.asarray(written_V, float), np.asarray(age_s, float))
    levels = np.unique(written_V)
    oldest = float(age_s.max())
    if oldest <= 0:
        return written_V.copy()
    template = Template.load(resources.NETLISTS / "gain_cell_retention.cir")
    instances = [{"v_init": float(level)} for level in levels]
    step = oldest / points
    analysis = [f".tran {f(step)} {f(oldest)} 0 {f(step)}"]
    saves = [save_card("v(sn)", n) for n in range(len(levels))]
    hold = {name: float(value) for name, value in (params or {}).items()
            if name in template.defaults and name != "v_init"}
    netlist = template.render(hold, models.lines(), analysis, instances=instances, save=saves)
    vectors = ["time"] + [vector_name("v(sn)", n) for n in range(len(levels))]
    request = engine.RunRequest(netlist, vectors, models.ngbehavior, 600.0)
    for _, result in engine.run_many([request], max(1, jobs)):
        if not result.ok:
            raise GcsimError(f"ngspice failed on the retention hold: {result.error}")
        time_s = result.vectors["time"]
        if time_s[-1] < oldest * (1 - 1e-6):
            raise GcsimError("ngspice stopped the retention hold early")
    out = np.empty_like(written_V)
    for n, level in enumerate(levels):
        trace = result.vectors[vector_name("v(sn)", n)]
        chosen = written_V == level
        out[chosen] = np.interp(age_s[chosen], time_s, trace)
    return out
