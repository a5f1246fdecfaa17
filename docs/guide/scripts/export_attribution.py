"""Which feature of a fits bundle's model, absent from its published-form export, costs the model
adapted on the export its accuracy on the fitted cells.

Runs `gcsim accuracy mqar --mode exported --fits DIR --nonideality all` at the default
settings (the same seeds, so the same trained and adapted model as the default run), keeps the
export-adapted model, then evaluates it, as adapted (no calibration), on the fitted model with
one feature at a time replaced by the export's or removed, every non-ideality on (quantisation,
decay, the evaluated chip's mismatch):

    PYTHONPATH=. python docs/guide/scripts/export_attribution.py fits/builtin

Needs the `ml` extra. About four minutes on one thread (each line's figure is on the
evaluation's 256 held-out sequences).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

import gcsim.accuracy.evaluate as run_module
from gcsim.accuracy.adapt import swap_twins
from gcsim.accuracy.tasks import make_task
from gcsim.accuracy.train import evaluate
from gcsim.hw import load_fitted_models
from gcsim.hw.export import published_form
from gcsim.nn import GainCellAttention

# `gcsim accuracy mqar`'s defaults (gcsim/cli/accuracy.py).
TASK_OPTIONS = {"vocab": 256, "pairs": 32, "seq_len": 128}


def variants(fitted, form) -> dict:
    swap = dataclasses.replace
    return {
        "fitted": fitted,
        "without readout loading": swap(fitted, loading=None),
        "with the export's cubic cell": swap(fitted, cell=form.cell,
                                             readout=swap(fitted.readout, gain=1.0)),
        "without the readout's offset and saturation": swap(
            fitted, readout=swap(fitted.readout, offset_C=0.0, saturation_C=None)),
        "with the export's HardSigmoid converter": swap(fitted,
                                                        charge_to_pulse=form.charge_to_pulse),
        "with the export's output converter": swap(fitted,
                                                   output_converter=form.output_converter),
        "with both of the export's converters": swap(
            fitted, charge_to_pulse=form.charge_to_pulse,
            output_converter=form.output_converter),
        "without pulse edges": swap(fitted, pulse_edge_time_s=0.0),
        "without write error and read disturb": swap(fitted, write_error=None,
                                                     read_disturb=None),
        "with the export's decay": swap(fitted, decay=form.decay),
        "without the ring buffer": swap(fitted, ring_buffer=False),
        "without mismatch": swap(fitted, mismatch=None),
        "the export itself": swap(form, name="fitted"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fits", type=Path, help="fits bundle, e.g. fits/builtin")
    parser.add_argument("--json", type=Path, help="write the accuracies and losses here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    # The run's export-adapted model: the reference of its calibration onto the fitted cells.
    references = []
    calibrate = run_module.calibrate

    def keep_reference(model, reference, batch, **options):
        references.append(reference)
        return calibrate(model, reference, batch, **options)

    run_module.calibrate = keep_reference
    settings = run_module.AccuracySettings(
        task="mqar", task_options=TASK_OPTIONS, nonidealities=("all",), check_sequences=0,
        modes=(run_module.ModeSpec("exported", args.fits),))
    report = run_module.run(settings)
    run_module.calibrate = calibrate
    row = report["results"][0]
    print(f"exported, adapted {row['adapted_accuracy']:.3f}; on the fitted cells "
          f"{row['on_fitted_accuracy']:.3f} (calibrated there "
          f"{row['on_fitted_calibrated_accuracy']:.3f})")
    adapted = references[1]    # [0]: the softmax model, for the first calibration

    seeds = report["seeds"]
    eval_set = make_task("mqar", **TASK_OPTIONS).generate(
        settings.eval_sequences, np.random.default_rng(seeds["evaluation"]))
    fitted = load_fitted_models(args.fits)
    results = {}
    for name, model in variants(fitted, published_form(fitted).model).items():
        twins = []
        for layer in range(settings.layers):
            options = dict(window=report["settings"]["window"], array=settings.array,
                           dtype=torch.float32)
            if model.mismatch is not None:
                # The evaluated chip's draw, as gcsim accuracy's make_twins gives each layer.
                options["mismatch_seed"] = run_module._seed(seeds["mismatch_evaluation"], layer)
            twins.append(GainCellAttention("fitted", model=model, **options))
        accuracy, loss = evaluate(swap_twins(adapted, twins), eval_set, settings.eval_batch)
        results[name] = {"accuracy": accuracy, "loss": round(loss, 4)}
        print(f"  {name:45s} accuracy {accuracy:.3f}, loss {loss:.3f} nats")
    if args.json:
        args.json.write_text(json.dumps({"fits": str(args.fits), "run": row,
                                         "variants": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
