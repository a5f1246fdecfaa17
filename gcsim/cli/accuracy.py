"""Click command: `gcsim accuracy`, task accuracy of a small transformer per hardware mode and
non-ideality, before and after adaptation. PyTorch (the `ml` extra) is imported only when the
command runs, so the rest of the CLI works without it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import click

from gcsim.cli.common import OneLineErrors, fail
from gcsim.core.errors import GcsimError

TASK_NAMES = ("mqar", "induction")
MODE_NAMES = ("ideal", "linear", "paper", "fitted", "exported")
NONIDEALITY_NAMES = ("none", "quantize", "decay", "mismatch", "all")
NO_TORCH = ("gcsim accuracy needs PyTorch, which gcsim's `ml` extra installs: "
            "pip install -e .[ml]")


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter(f"must be >= 1, got {value}")
    return value


@click.command("accuracy", cls=OneLineErrors)
@click.argument("task", type=click.Choice(TASK_NAMES), default="mqar")
@click.option("--vocab", type=int, default=None, callback=_positive,
              help="Vocabulary size [mqar 256, induction 32; --quick 64 / 16].")
@click.option("--pairs", type=int, default=None, callback=_positive,
              help="mqar: key-value pairs per sequence [32; --quick 8].")
@click.option("--queries", type=int, default=None, callback=_positive,
              help="mqar: queries per sequence [one per pair].")
@click.option("--seq-len", type=int, default=None, callback=_positive,
              help="Tokens per sequence [128; --quick 64 (mqar), 32 (induction)].")
@click.option("--layers", type=int, default=None, callback=_positive,
              help="Transformer layers [2].")
@click.option("--heads", type=int, default=None, callback=_positive,
              help="Heads per layer, each of dimension 64 (one head fills an array's rows) [1].")
@click.option("--steps", type=int, default=None, callback=_positive,
              help="Softmax training's step budget; it stops once 99 % of a validation batch "
                   "is right [1000; --quick 300].")
@click.option("--batch", type=int, default=None, callback=_positive,
              help="Training batch, sequences [64].")
@click.option("--lr", type=float, default=None, help="Softmax training learning rate [3e-3].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the data, the model's initialisation and the held-out set.")
@click.option("--mode", "modes", type=click.Choice(MODE_NAMES), multiple=True,
              help="Modes to evaluate (repeatable) [all five; fitted and exported once per "
                   "bundle]. exported: the bundle's published form, as `gcsim export "
                   "paper-model` gives it, run by the published model.")
@click.option("--fits", "fits_dirs", multiple=True, metavar="DIR",
              help="Fits bundle for the fitted and exported modes (repeatable) [the shipped "
                   "fits/builtin and fits/sky130].")
@click.option("--nonideality", "nonidealities", type=click.Choice(NONIDEALITY_NAMES),
              multiple=True,
              help="Non-idealities to switch on, one at a time and all together (repeatable) "
                   "[all five columns].")
@click.option("--token-period", type=float, default=None,
              help="Token period in seconds, which sets the decay per token [each model's "
                   "own: 0.8 us for the published model and the shipped designs].")
@click.option("--extrapolate", is_flag=True,
              help="Fitted modes: run the decay beyond the ages its fit covers (a long "
                   "--token-period) instead of refusing; the report says so.")
@click.option("--mismatch-seed", type=int, default=0, show_default=True,
              help="The evaluated chip's per-cell mismatch draw; adaptation trains on the "
                   "next seed's chip.")
@click.option("--window", type=int, default=None, callback=_positive,
              help="Sliding window in tokens [the sequence length].")
@click.option("--array", type=int, default=None, callback=_positive,
              help="Array size: key positions per array [64].")
@click.option("--eval-sequences", type=int, default=None, callback=_positive,
              help="Held-out sequences per accuracy [256; --quick 64].")
@click.option("--scaler-steps", type=int, default=None,
              help="Adaptation steps on the scalers alone [20; --quick 10].")
@click.option("--weight-steps", type=int, default=None,
              help="Adaptation steps on every weight [60; --quick 20].")
@click.option("--no-adapt", is_flag=True, help="Report accuracy before adaptation only.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default=None,
              help="Precision of the hardware twin in evaluation and adaptation [float32; "
                   "the twin-vs-simulator check always runs in float64].")
@click.option("--threads", type=int, default=1, show_default=True, callback=_positive,
              help="PyTorch threads. The tensors are small: a second thread gains little, and "
                   "on cores shared with other work it can cost several times over.")
@click.option("--quick", is_flag=True,
              help="A tiny run (about a minute on two cores), as `make test` runs it.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bars on stderr [on a terminal].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write accuracy.json, accuracy.csv and accuracy.png here.")
def accuracy_command(task, vocab, pairs, queries, seq_len, layers, heads, steps, batch, lr, seed,
                     modes, fits_dirs, nonidealities, token_period, extrapolate, mismatch_seed,
                     window, array, eval_sequences, scaler_steps, weight_steps, no_adapt, dtype,
                     threads, quick, progress, as_json, out_dir):
    """Task accuracy of a small transformer on gain-cell attention, per mode and non-ideality,
    before and after adaptation.

    Generates an in-context task on the fly (mqar: multi-query associative recall; induction:
    induction heads), trains a small transformer (head dimension 64) with softmax attention,
    then computes its attention in each mode through the differentiable twin of the array
    simulator (gcsim.nn), behind per-head scalers calibrated on statistics. Each fits bundle
    runs as fitted (its own model) and as exported (its published form, the numbers `gcsim
    export paper-model` gives the published code): the difference is what that code cannot
    express. Quantisation,
    decay and mismatch are switched on one at a time and all together. Adaptation, as the
    published method: the scalers are calibrated, then trained, then every weight is
    fine-tuned with the hardware in the loop (every non-ideality on, on another chip's
    mismatch draw). Needs PyTorch (pip install -e .[ml]).

    \b
    Examples:
      gcsim accuracy mqar --out reports/accuracy
      gcsim accuracy mqar --quick --json
      gcsim accuracy mqar --pairs 16 --mode paper --mode fitted --fits fits/sky130
      gcsim accuracy mqar --mode fitted --mode exported --fits fits/builtin
      gcsim accuracy induction --token-period 5e-6 --nonideality none --nonideality decay
    """
    if not _torch_available():
        fail(GcsimError(NO_TORCH))
    try:
        from gcsim.accuracy import evaluate, report
    except ImportError as exc:
        fail(GcsimError(f"gcsim accuracy cannot load its modules ({exc}); {NO_TORCH}"))
    try:
        settings = _settings(evaluate, task, vocab, pairs, queries, seq_len, layers, heads,
                             steps, batch, lr, seed, modes, fits_dirs, nonidealities,
                             token_period, extrapolate, mismatch_seed, window, array,
                             eval_sequences, scaler_steps, weight_steps, no_adapt, dtype, quick)
        if out_dir is not None:
            report.output_targets(out_dir)
        log = (lambda line: click.echo(line, err=True)) if not as_json else None
        result = evaluate.run(settings, progress=progress, threads=threads, log=log)
        written = report.write_outputs(out_dir, result) if out_dir is not None else []
    except (GcsimError, ValueError) as exc:
        fail(exc)
    except OSError as exc:
        fail(GcsimError(f"cannot write output: {exc}"))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for line in report.format_report(result):
        click.echo(line)
    if written:
        click.echo(f"wrote {', '.join(p.name for p in written)} to {out_dir}")


def _settings(evaluate, task, vocab, pairs, queries, seq_len, layers, heads, steps, batch, lr,
              seed, modes, fits_dirs, nonidealities, token_period, extrapolate, mismatch_seed,
              window, array, eval_sequences, scaler_steps, weight_steps, no_adapt, dtype,
              quick):
    from dataclasses import replace

    from gcsim.core import resources

    if task == "induction" and (pairs is not None or queries is not None):
        raise GcsimError("--pairs and --queries are mqar's; induction takes --vocab and "
                         "--seq-len")
    fits = [Path(d) for d in fits_dirs] or [resources.fits_for("builtin"),
                                            resources.fits_for("sky130")]
    for directory in fits:
        if not directory.is_dir():
            raise GcsimError(f"--fits {directory}: not a directory (a fits bundle, e.g. "
                             "fits/builtin)")
    chosen = modes or MODE_NAMES
    if fits_dirs and not set(evaluate.BUNDLE_MODES) & set(chosen):
        raise GcsimError("--fits needs the fitted or the exported mode (add --mode fitted "
                         "or --mode exported)")
    specs = [evaluate.ModeSpec(mode) for mode in MODE_NAMES
             if mode in chosen and mode not in evaluate.BUNDLE_MODES]
    # Each bundle's fitted model next to its published-form export.
    specs += [evaluate.ModeSpec(mode, directory) for directory in fits
              for mode in evaluate.BUNDLE_MODES if mode in chosen]
    settings = evaluate.AccuracySettings(task=task, seed=seed, modes=tuple(specs),
                                         mismatch_seed=mismatch_seed,
                                         token_period_s=token_period, extrapolate=extrapolate)
    defaults = {"mqar": {"vocab": 256, "pairs": 32, "seq_len": 128},
                "induction": {"vocab": 32, "seq_len": 128}}[task]
    settings = replace(settings, task_options=defaults)
    if quick:
        settings = evaluate.quick_settings(replace(settings, task_options={}))
    given_task = {"vocab": vocab, "pairs": pairs, "queries": queries, "seq_len": seq_len}
    settings = replace(settings, task_options={
        **settings.task_options, **{k: v for k, v in given_task.items() if v is not None}})
    given = {"layers": layers, "heads": heads, "steps": steps, "batch": batch, "lr": lr,
             "window": window, "array": array, "eval_sequences": eval_sequences,
             "scaler_steps": scaler_steps, "weight_steps": weight_steps, "dtype": dtype}
    settings = replace(settings, **{k: v for k, v in given.items() if v is not None})
    if nonidealities:
        settings = replace(settings, nonidealities=tuple(nonidealities))
    if no_adapt:
        settings = replace(settings, adapt=False)
    return settings.check()
