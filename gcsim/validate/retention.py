"""Aged stored voltages from SPICE, for the retention scenario.

A cell written at voltage w and read `age` seconds later holds whatever its leakage left. That
is simulated, not modelled: the characterisation's retention testbench
(netlists/gain_cell_retention.cir: write transistor off, every line at rest, gmin lowered so
ngspice adds no leak of its own) runs one instance per distinct written voltage in one
transient up to the oldest age, and each instance's v(sn) is read at every age needed. The tile
netlist then starts each cell at its aged voltage, so the read itself is simulated on
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
                  params: dict[str, float] | None = None, read_period_s: float | None = None,
                  read_width_s: float | None = None) -> np.ndarray:
    """Stored voltage of each cell (written_V, age_s broadcast together) after its age, on
    the cell `params` describes (the tile's values; those the testbench declares are taken,
    the rest ignored; None: the testbench's defaults), read every `read_period_s` when
    given."""
    written_V, age_s = np.broadcast_arrays(np.asarray(written_V, float), np.asarray(age_s, float))
    levels = np.unique(written_V)
    oldest = float(age_s.max())
    if oldest <= 0:
        return written_V.copy()
    reading = read_period_s is not None
    template = Template.load(resources.NETLISTS / ("gain_cell_read_disturb.cir" if reading
                                                   else "gain_cell_retention.cir"))
    initial = "v_store" if reading else "v_init"
    instances = [{initial: float(level)} for level in levels]
    step = oldest / points
    # The read pulses' corners are breakpoints, so ngspice steps onto every edge whatever the
    # maximum step (a 10x finer one moves the result by < 0.05 uV).
    analysis = [f".tran {f(step)} {f(oldest)} 0 {f(step)}"]
    saves = [save_card("v(sn)", n) for n in range(len(levels))]
    hold = {name: float(value) for name, value in (params or {}).items()
            if name in template.defaults and name not in ("v_init", "v_store")}
    if reading:
        if not (read_period_s > 0 and read_width_s is not None and read_width_s >= 0):
            raise GcsimError("a read hold needs a positive period and a width >= 0")
        # The first read comes one token after the write, as the next query's.
        hold.update({"t_period": read_period_s, "t_pulse": read_width_s,
                     "t_delay": read_period_s})
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
