"""How a tile's SPICE stages depend on ngspice's time step: runs one random tile under several
(max_step, trtol) settings and prints each one's ngspice CPU and its largest difference from the
first setting, the reference, per stage in % of full scale (the design's committed fits give
the full scales, as `gcsim validate tile` takes them):

    PYTHONPATH=. python docs/guide/scripts/tile_time_step.py --models sky130:tt \\
        --setting 10p:7 --setting 50p:7 --setting 200p:2 --setting 1n:2

A setting is MAX_STEP:TRTOL, or MAX_STEP:TRTOL:RELTOL (ngspice's relative tolerance, default
1e-3). The first one is the reference, so give it a fine step. A 16x16
sky130 tile takes about 40 s of wall time at 10 ps on two cores, and 15 s at 200 ps.
Figures: docs/reference/ngspice.md, "The tile's time step".
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from gcsim.cli.validate import design_for
from gcsim.core.design import choose_design, default_fits
from gcsim.core.values import parse_number
from gcsim.hw import load_fitted_models
from gcsim.spice import process as processes
from gcsim.validate.montecarlo import full_scales
from gcsim.validate.scenarios import random_inputs
from gcsim.validate.spice import run_tile
from gcsim.validate.tile import Tile
from gcsim.validate.timing import TileParams

STAGES = (("S", "S_C"), ("phi", "phi_s"), ("A", "A_C"), ("out", "out"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="builtin")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--cols", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--setting", action="append", required=True,
                        help="MAX_STEP:TRTOL[:RELTOL], e.g. 200p:2 or 10p:7:1e-4; the first is "
                             "the reference")
    args = parser.parse_args()

    chosen, _ = choose_design(None, args.models)
    models = processes.resolve(args.models)
    chosen = chosen or design_for(None, models.process)
    params = TileParams.defaults(signed=True, design=chosen)
    scales = full_scales(load_fitted_models(default_fits(chosen)))
    low, high = params.stored_range
    tile = Tile(*random_inputs(args.rows, args.cols, args.seed, high, low, **params.levels))

    runs = []
    for setting in args.setting:
        step_text, trtol_text, *reltol_text = setting.split(":")
        max_step = parse_number(step_text, "--setting")
        trtol = float(trtol_text)
        reltol = float(reltol_text[0]) if reltol_text else params.reltol
        stages = run_tile(tile, dataclasses.replace(params, max_step=max_step, trtol=trtol,
                                                    reltol=reltol), models, jobs=args.jobs)
        runs.append((setting, stages))
        print(f"{setting}: ngspice CPU {stages.cpu_s:.1f} s, wall {stages.elapsed_s:.1f} s",
              flush=True)
    reference_name, reference = runs[0]
    print(f"largest difference from {reference_name}, % of full scale:")
    for setting, stages in runs[1:]:
        cells = []
        for stage, attribute in STAGES:
            difference = (getattr(stages, attribute) - getattr(reference, attribute))
            cells.append(f"{stage} {100 * np.max(np.abs(difference)) / scales[stage]:.3f}")
        print(f"  {setting}: " + "  ".join(cells))


if __name__ == "__main__":
    main()
