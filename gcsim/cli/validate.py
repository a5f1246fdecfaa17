"""`gcsim validate tile` and `gcsim validate retention`: the behavioural models against SPICE."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from gcsim.core.design import choose_design, default_fits
from gcsim.core.errors import GcsimError
from gcsim.core.files import MAX_ARRAY_BYTES, check_regular
from gcsim.spice import executors
from gcsim.cli.common import OneLineErrors, design_option, one_line
from gcsim.validate.scenarios import INPUT_SCENARIOS

EXIT_FAILED = 3   # validation ran and a stage exceeded its threshold


def check_bundle_matches(model, design, models, fits_dir) -> None:
    """A bundle fitted on one design or process validated on another compares two different
    circuits: refused in one line, never a silent fallback."""
    from gcsim.core.design import process_of

    bundle_models = model.notes.get("models") or []
    processes = {process_of(m) for m in bundle_models}
    if processes and models.process not in processes:
        raise GcsimError(f"fits bundle {fits_dir} was fitted on {', '.join(bundle_models)}, and "
                         f"the tile runs {models.name}: give --fits the bundle of that process "
                         f"(e.g. fits/{models.process}) or --models of the bundle's")
    recorded = model.notes.get("design_sha256")
    if design is not None and recorded and recorded != design.sha256:
        raise GcsimError(f"fits bundle {fits_dir} was fitted on design "
                         f"{model.notes.get('design')} (sha256 {recorded[:12]}...), and the tile "
                         f"runs design {design.name} (sha256 {design.sha256[:12]}...): give "
                         "--fits that design's bundle, or --design the bundle's")


def design_for(design: str | None, process: str):
    """The design a tile takes its values from: --design, else the process's default (None:
    the testbenches' defaults); refused in one line when it belongs to another process."""
    from gcsim.core.design import default_design, load_design

    if design is None:
        return default_design(process)
    chosen = load_design(design)
    if chosen.process != process:
        raise GcsimError(f"design {chosen.name} is for process {chosen.process}, and the "
                         f"models are {process}: pick that process's models or design")
    return chosen


@click.group("validate")
def validate_group() -> None:
    """Validate the behavioural (fitted) models against SPICE, tile by tile.

    Each command builds the SPICE netlist of a whole tile (K array, readouts, charge-to-pulse
    converters, V array, V readouts), runs it in ngspice, runs the array simulator in `fitted`
    mode on the same inputs, and compares them stage by stage (S, phi, A, out). It exits with
    status 3 when a stage's RMSE exceeds its threshold (% of full scale).

    \b
    Example:
      gcsim validate tile --rows 8 --cols 8 --seed 1 --report out/validate
    """


def _common(func):
    options = [
        click.option("--rows", type=click.IntRange(1, 256), default=None,
                     help="K-array rows = head dimension (default 8, or from --q)."),
        click.option("--cols", type=click.IntRange(2, 256), default=None,
                     help="K-array columns = tokens (default 8, or from --k)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Random inputs on the DAC levels (q: 16 levels, k and v: 8)."),
        click.option("--models", default=None,
                     help="Device models: builtin, builtin:CORNER, sky130:CORNER, LIB:SECTION "
                          "[default: the design's process and corner, builtin:tt]."),
        click.option("--fits", "fits_dir", type=click.Path(path_type=Path), default=None,
                     help="Fits bundle for the behavioural model [default: the design's "
                          "committed bundle, fits/DESIGN/]."),
        click.option("--threshold", "thresholds", multiple=True, metavar="[STAGE=]PCT",
                     help="RMSE limit in % of full scale, per stage (S, phi, A, out) or for "
                          "all; repeatable. Default 2; out: one count (3.23)."),
        click.option("--max-error", "max_errors", multiple=True, metavar="[STAGE=]PCT",
                     help="Limit of the largest error, % of full scale, per stage or for all; "
                          "repeatable. Default 8; out: one count (3.23)."),
        click.option("--bias", "biases", multiple=True, metavar="[STAGE=]PCT",
                     help="Limit of the mean error's magnitude, % of full scale, per stage or "
                          "for all; repeatable. Default 1."),
        click.option("--json", "as_json", is_flag=True, help="Print the JSON report."),
        click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="Write report.json, stages.png and inputs.npz here."),
        click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
                     help="ngspice processes at once (default: cores)."),
        click.option("--single", is_flag=True,
                     help="Run the tile as one netlist instead of parallel column groups."),
        click.option("--readout", type=click.Choice(["signed", "charge"]), default="signed",
                     show_default=True,
                     help="V columns end in the signed converter netlist, or in their "
                          "integrators only (out is then the fitted converter on SPICE's A)."),
        click.option("--mc-seed", type=click.IntRange(0), default=None,
                     help="Monte Carlo, drawn from this seed: Pelgrom threshold mismatch on "
                          "every cell transistor (builtin), or the PDK's mismatch models on "
                          "every device (sky130); the model stays nominal."),
        click.option("--r-wire", default="0", show_default=True,
                     help="Wire resistance per cell pitch, ohm (e.g. 2, 1.5k)."),
        click.option("--c-wire", default="0", show_default=True,
                     help="Wire capacitance per cell pitch, farad (e.g. 0.1f)."),
        click.option("--temperature", default=None, metavar="DEG_C",
                     help="SPICE temperature of the tile, degrees C (default: the "
                          "testbenches', 27). The model stays the fits' (nominal): this "
                          "shows how far a fit holds."),
    ]
    for option in reversed(options):
        func = option(func)
    return executors.click_options(design_option(func))


def _load(path: Path | None, name: str) -> np.ndarray | None:
    if path is None:
        return None
    try:
        check_regular(path, f"{name} file", MAX_ARRAY_BYTES)
        array = np.load(path, allow_pickle=False)
    except GcsimError as exc:
        raise ValueError(str(exc)) from None
    except (OSError, ValueError, EOFError) as exc:
        reason = one_line(exc)
        raise ValueError(f"cannot read {name} from {path}: {reason}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise ValueError(f"{name} in {path} is not a single numeric array")
    return array


def _finish(report: dict, as_json: bool, table, written_line: str | None,
            failed_message: str) -> None:
    """Print a validation's report (JSON, or its table and the files written) and exit
    EXIT_FAILED naming the failed stages when it did not pass."""
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(table(report))
        if written_line:
            click.echo(written_line)
    if not report["passed"]:
        failed = [name for name, m in report["stages"].items() if not m["passed"]]
        click.echo(failed_message.format(", ".join(failed)), err=True)
        sys.exit(EXIT_FAILED)


def _report_files(report_dir: Path, write) -> list[Path]:
    """`write()`'s files, an OSError turned into one line naming the report folder."""
    try:
        return write()
    except OSError as exc:
        raise GcsimError(f"cannot write the report in {report_dir}: "
                         f"{exc.strerror or exc}") from None


def _run(scenario, rows, cols, seed, models, fits_dir, thresholds, as_json, report_dir, jobs,
         single, readout, mc_seed, r_wire, c_wire, q_path=None, k_path=None, v_path=None,
         max_age=None, executor="local", scheduler=None, design=None,
         temperature=None, inputs_name="random", extrapolate=False,
         write="devices") -> None:
    from gcsim.spice import process as processes
    from gcsim.hw import FitsBundleError, load_fitted_models
    from gcsim.validate import compare
    from gcsim.validate.scenarios import (InputError, check_inputs, scenario_inputs,
                                          validate_tile)
    from gcsim.validate.timing import TileParams
    from gcsim.core.values import parse_number

    jobs = jobs or max(1, os.cpu_count() or 1)
    written = []
    try:
        if report_dir is not None:   # checked now, not after the ngspice runs
            compare.check_report_files(report_dir)
        rmse_items, max_items, bias_items = thresholds
        limits = compare.parse_thresholds(rmse_items)
        max_limits = compare.parse_thresholds(max_items, "--max-error")
        bias_limits = compare.parse_thresholds(bias_items, "--bias")
        chosen, models = choose_design(design, models)
        model_set = processes.resolve(models or "builtin")
        chosen = chosen if chosen is not None else design_for(None, model_set.process)
        fits_dir = fits_dir if fits_dir is not None else default_fits(chosen)
        params = TileParams.defaults(parse_number(r_wire, "--r-wire"),
                                     parse_number(c_wire, "--c-wire"), readout == "signed",
                                     design=chosen, write=write)
        params.mc_seed = mc_seed
        if temperature is not None:
            params.values["temp_c"] = parse_number(temperature, "--temperature")
            if params["temp_c"] < -273.15:
                raise GcsimError(f"--temperature {params['temp_c']:g}: below absolute zero")
        if single is False and params.r_wire > 0:
            single = True   # word-line resistance couples the columns
        model = load_fitted_models(fits_dir)
        check_bundle_matches(model, chosen, model_set, fits_dir)
        if model.notes.get("stand_ins"):
            source_notes = {"stand_ins": list(model.notes["stand_ins"])}
            if not as_json:
                for line in source_notes["stand_ins"]:
                    click.echo(f"note: fits bundle: {line}", err=True)
        else:
            source_notes = {}
        given = [p is not None for p in (q_path, k_path, v_path)]
        if any(given) and not all(given):
            raise InputError("give all of --q, --k and --v, or none (random inputs)")
        if all(given):
            q, k, v = (_load(p, n) for p, n in ((q_path, "Q"), (k_path, "K"), (v_path, "V")))
            low, high = params.stored_range
            q, k, v = check_inputs(q, k, v, high, rows, cols, low=low)
            source = {"inputs": {"q": str(q_path), "k": str(k_path), "v": str(v_path)}}
        else:
            q, k, v = scenario_inputs(inputs_name, rows or 8, cols or 8, seed,
                                      params.stored_range[1], params.stored_range[0],
                                      **params.levels)
            source = {"inputs": inputs_name, "seed": seed}
        source["mc_seed"] = mc_seed
        source["temperature_C"] = params["temp_c"]
        source["design"] = chosen.name if chosen is not None else None
        source["design_sha256"] = chosen.sha256 if chosen is not None else None
        source.update(source_notes)
        token_period = None
        if scenario == "retention":
            if max_age is None:
                # The window the design supports: its oldest key is window x token period old.
                point = model.operating_point
                age = (chosen.timing.window_tokens * chosen.timing.token_period_s
                       if chosen is not None else point.window * point.token_period_s)
            else:
                age = parse_number(max_age, "--max-age")
            if not age > 0:
                raise InputError("--max-age must be > 0")
            token_period = age / (k.shape[0] - 1)
            source["max_age_s"] = age
            fitted_ages = model.decay.fitted_age_max_s
            if fitted_ages is not None and age > fitted_ages * (1 + 1e-9):
                beyond = (f"--max-age {age:.4g} s is beyond the ages 0 ... {fitted_ages:.4g} s "
                          f"the decay fit ({fits_dir}/decay.json) covers")
                if not extrapolate:
                    raise InputError(f"{beyond}; pass --extrapolate to run the model there "
                                     "anyway")
                warning = f"{beyond}: the model extrapolates"
                source["warnings"] = [warning]
                click.echo(f"warning: {warning}", err=True)
        # Every ngspice run of the tile (its columns, the retention holds) goes to the
        # executor: local worker processes, or a Dask cluster.
        with executors.from_options(executor, scheduler) as runner, executors.use(runner):
            result = validate_tile(q, k, v, model, model_set, scenario=scenario, jobs=jobs,
                                   split=not single, thresholds=limits, params=params,
                                   token_period_s=token_period, extra=source,
                                   max_errors=max_limits, biases=bias_limits)
        if report_dir is not None:
            written = _report_files(report_dir, lambda: compare.write_report(
                result.report, result.stages, report_dir, inputs={"q": q, "k": k, "v": v}))
    except (GcsimError, FitsBundleError, ValueError) as exc:
        raise click.ClickException(one_line(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted") from None
    written_line = (f"wrote {', '.join(str(path) for path in written[:-1])} and {written[-1]}"
                    if written else None)
    _finish(result.report, as_json, format_summary, written_line,
            "validation FAILED: {} above threshold")


def format_summary(report: dict) -> str:
    from gcsim.validate.compare import format_table

    spice = report["spice"]
    head = (f"validate {report['scenario']}: {report['rows']}x{report['cols']} tile, models "
            f"{report['models']}"
            + (f" at {report['temperature_C']:g} °C" if report.get("temperature_C") is not None
               else "") + f", {report['fits']}\n"
            f"  SPICE: {spice['runs']} ngspice runs ({spice['mode']}, {spice['jobs']} jobs), "
            f"{spice['elapsed_s']:.1f} s (ngspice CPU {spice['cpu_s']:.1f} s); "
            f"total {report['elapsed_s']:.1f} s")
    write = report.get("write") or {}
    if write.get("mode") == "devices":
        head += (f"\n  write: through the write devices, {write['t_write_s'] * 1e9:.3g} ns word "
                 f"line to {write['v_wwl_V']:g} V (+{write['t_wwl_fall_s'] * 1e9:.3g} ns fall), "
                 f"DAC offset {write['dac_offset_V'] * 1e3:+.3g} mV; reads start "
                 f"{write['phase_s'] * 1e9:.3g} ns later")
    elif write.get("mode") == "ideal":
        head += "\n  write: ideal (every storage node starts at its level)"
    if report.get("token_period_s"):
        head += (f"\n  ages: key j read {report['token_period_s']:.4g} s x (C-1-j) after its "
                 f"write (oldest {report['token_period_s'] * (report['cols'] - 1):.4g} s)")
    return head + "\n" + format_table(report) + \
        f"\n{'PASSED' if report['passed'] else 'FAILED'}"


@validate_group.command("tile", cls=OneLineErrors)
@_common
@click.option("--q", "q_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Query, .npy of shape (rows,), values in [0, 1].")
@click.option("--k", "k_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keys, .npy of shape (cols, rows), stored voltages in the design's DAC "
                   "range (dac.stored_min_V to stored_max_V).")
@click.option("--inputs", "inputs_name", type=click.Choice(list(INPUT_SCENARIOS)),
              default="random", show_default=True,
              help="Named input scenario (random levels, attention-like structure, saturating "
                   "columns, alternate rails, the worst column current); --q/--k/--v instead "
                   "give your own.")
@click.option("--v", "v_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Values, .npy of shape (cols, rows), stored voltages in the design's DAC "
                   "range (dac.stored_min_V to stored_max_V).")
@click.option("--write", type=click.Choice(["devices", "ideal"]), default="devices",
              show_default=True,
              help="devices: SPICE writes every K and V cell through its write device first, "
                   "as gain_cell_write.cir does (the design's write pulse and DAC offset), so "
                   "the stored levels carry the write error; ideal: every storage node starts "
                   "at its level.")
def tile_command(rows, cols, seed, models, fits_dir, thresholds, max_errors, biases, as_json,
                 report_dir, jobs,
                 single, readout, mc_seed, r_wire, c_wire, temperature, design, executor,
                 scheduler, q_path, k_path, v_path, inputs_name, write):
    """Validate one freshly written tile: random inputs (--seed) or your own (--q/--k/--v).

    \b
    Example:
      gcsim validate tile --rows 64 --cols 64 --seed 0 --threshold phi=3 --report out/val
      gcsim validate tile --rows 64 --cols 64 --executor dask --scheduler tcp://head:8786
      gcsim validate tile --models sky130:ss --rows 16 --cols 16 --temperature 85
      gcsim validate tile --rows 64 --cols 64 --inputs structured
    """
    _run("tile", rows, cols, seed, models, fits_dir, (thresholds, max_errors, biases), as_json,
         report_dir, jobs,
         single, readout, mc_seed, r_wire, c_wire, q_path, k_path, v_path,
         executor=executor, scheduler=scheduler, design=design, temperature=temperature,
         inputs_name=inputs_name, write=write)


@validate_group.command("retention", cls=OneLineErrors)
@_common
@click.option("--max-age", default=None,
              help="Age of the oldest key (column 0), seconds; key j is read "
                   "max_age * (C-1-j)/(C-1) after its write [default: the design's window x "
                   "token period, the oldest key attention reads].")
@click.option("--extrapolate", is_flag=True,
              help="Allow a --max-age beyond the ages the decay fit covers (the report says "
                   "the model extrapolates).")
def retention_command(rows, cols, seed, models, fits_dir, thresholds, max_errors, biases,
                      as_json, report_dir, jobs,
                      single, readout, mc_seed, r_wire, c_wire, temperature, design, executor,
                      scheduler, max_age, extrapolate):
    """Validate the decay model in the array: keys and values written at different times.

    SPICE holds each cell for its age on the retention testbench (at --temperature, read once
    per token period when the fits have a read disturb), then reads the tile from the aged
    voltages (each storage node starts there, .ic: no write phase); the model applies its
    fitted decay, at the same temperature, to the same ages.

    \b
    Examples:
      gcsim validate retention --rows 64 --cols 64
      gcsim validate retention --rows 8 --cols 8 --max-age 0.4m --temperature 85
    """
    _run("retention", rows, cols, seed, models, fits_dir, (thresholds, max_errors, biases),
         as_json, report_dir, jobs,
         single, readout, mc_seed, r_wire, c_wire, max_age=max_age, executor=executor,
         scheduler=scheduler, design=design, temperature=temperature, extrapolate=extrapolate)


def final_validation(out_dir: Path, models: str | None, jobs: int | None,
                     size: int = 64, design: str | None = None) -> None:
    """`gcsim run`'s last step: a size x size tile against this run's fits (OUT/fits; a run
    that produced no complete bundle says so and validates nothing); prints the stage table
    and writes OUT/validate/. Failing stages are reported, not raised: the run itself
    succeeded."""
    from gcsim.spice import process as processes
    from gcsim.core.errors import GcsimError
    from gcsim.hw import FitsBundleError, load_fitted_models
    from gcsim.validate import compare
    from gcsim.validate.scenarios import random_inputs, validate_tile
    from gcsim.validate.timing import TileParams

    try:
        chosen, selector = choose_design(design, models)
        selector = selector or "builtin"
        model_set = processes.resolve(selector)
        chosen = chosen if chosen is not None else design_for(None, model_set.process)
        # This run's bundle only: falling back to a committed one would validate fits this
        # run did not make, under this run's name.
        fits_dir = out_dir / "fits"
        model = load_fitted_models(fits_dir)
        check_bundle_matches(model, chosen, model_set, fits_dir)
        params = TileParams.defaults(design=chosen)
        q, k, v = random_inputs(size, size, 0, params.stored_range[1],
                                params.stored_range[0], **params.levels)
        result = validate_tile(q, k, v, model, model_set,
                               jobs=jobs or max(1, os.cpu_count() or 1), params=params,
                               extra={"inputs": "random", "seed": 0,
                                      "design": chosen.name if chosen else None})
        compare.write_report(result.report, result.stages, out_dir / "validate",
                             inputs={"q": q, "k": k, "v": v})
    except (GcsimError, FitsBundleError, ValueError, OSError) as exc:
        click.echo(f"\nvalidation skipped: {one_line(exc)}")
        return
    click.echo(f"\nValidation against SPICE (gcsim validate tile --rows {size} --cols {size} "
               f"--seed 0 --models {selector}; report in {out_dir / 'validate'})")
    click.echo(format_summary(result.report))


def _sigma_ratio(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(":")
    try:
        band = (float(low), float(high)) if sep else (1.0 / float(text), float(text))
    except ValueError:
        raise GcsimError(f"--sigma-ratio {text!r}: expected LOW:HIGH (e.g. 0.67:1.5) or "
                         "one factor (1.5)") from None
    if not (0 < band[0] <= 1 <= band[1] < float("inf")):
        raise GcsimError(f"--sigma-ratio {text!r}: expected 0 < LOW <= 1 <= HIGH")
    return band


@validate_group.command("montecarlo", cls=OneLineErrors)
@click.option("--rows", type=click.IntRange(1, 256), default=16, show_default=True,
              help="K-array rows = head dimension.")
@click.option("--cols", type=click.IntRange(2, 256), default=16, show_default=True,
              help="K-array columns = tokens.")
@click.option("--samples", "-n", type=click.IntRange(2, 10000), default=20, show_default=True,
              help="Monte Carlo samples a side: SPICE tiles with mc seeds 1..N, model draws "
                   "with mismatch seeds 1..N.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The one tile input, drawn from this seed (--inputs scenario).")
@click.option("--inputs", "inputs_name", type=click.Choice(list(INPUT_SCENARIOS)),
              default="random", show_default=True, help="Named input scenario of the tile.")
@click.option("--models", default=None,
              help="Device models: builtin (Pelgrom on the cells), sky130:CORNER (the PDK's "
                   "mismatch models on every device) [default: the design's].")
@click.option("--fits", "fits_dir", type=click.Path(path_type=Path), default=None,
              help="Fits bundle with a mismatch fit [default: the design's committed bundle].")
@click.option("--sigma-ratio", "sigma_ratio", default="0.67:1.5", show_default=True,
              metavar="LOW:HIGH", help="Pass band of sigma(model) / sigma(SPICE) per stage.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.01, show_default=True,
              help="KS test: fail a stage when its permutation p-value is below this.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Write report.json, montecarlo.png and deviations.npz here.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
              help="ngspice processes at once (default: cores).")
@executors.click_options
@design_option
def montecarlo_command(rows, cols, samples, seed, inputs_name, models, fits_dir, sigma_ratio,
                       alpha, as_json, report_dir, jobs, executor, scheduler, design):
    """Validate the mismatch model statistically: N Monte Carlo SPICE tiles against N seeded
    mismatch draws of the model, on one fixed input.

    Per stage (S, phi, A, out), the deviations from each side's nominal run, pooled over
    columns and samples in % of full scale, are compared: the ratio of their standard
    deviations (model / SPICE, within --sigma-ratio; 95 % bootstrap interval over samples) and
    a two-sample KS test whose p-value comes from permuting whole samples (columns of one tile
    share their K-side pulses, so they are not independent). Exits with status 3 when a stage
    fails.

    \b
    Examples:
      gcsim validate montecarlo --rows 16 --cols 16 --samples 20 --report out/mc
      gcsim validate montecarlo --models sky130:tt --samples 8 --json
    """
    from gcsim.spice import process as processes
    from gcsim.hw import FitsBundleError, load_fitted_models
    from gcsim.validate import montecarlo
    from gcsim.validate.scenarios import scenario_inputs
    from gcsim.validate.timing import TileParams

    jobs = jobs or max(1, os.cpu_count() or 1)
    written = []
    try:
        band = _sigma_ratio(sigma_ratio)
        if report_dir is not None:   # checked now, not after the ngspice runs
            montecarlo.check_report_files(report_dir)
        chosen, models = choose_design(design, models)
        model_set = processes.resolve(models or "builtin")
        chosen = chosen if chosen is not None else design_for(None, model_set.process)
        fits_dir = fits_dir if fits_dir is not None else default_fits(chosen)
        params = TileParams.defaults(design=chosen)
        model = load_fitted_models(fits_dir)
        check_bundle_matches(model, chosen, model_set, fits_dir)
        q, k, v = scenario_inputs(inputs_name, rows, cols, seed, params.stored_range[1],
                                  params.stored_range[0], **params.levels)
        extra = {"inputs": inputs_name, "seed": seed,
                 "design": chosen.name if chosen is not None else None}

        def progress(message):
            if not as_json:
                click.echo(f"  {message}", err=True)

        with executors.from_options(executor, scheduler) as runner, executors.use(runner):
            result = montecarlo.validate_montecarlo(
                q, k, v, model, model_set, samples=samples, jobs=jobs, params=params,
                sigma_ratio=band, alpha=alpha, extra=extra, progress=progress)
        if report_dir is not None:
            written = _report_files(report_dir, lambda: montecarlo.write_report(
                result, report_dir, {"q": q, "k": k, "v": v}))
    except (GcsimError, FitsBundleError, ValueError) as exc:
        raise click.ClickException(one_line(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted") from None
    _finish(result.report, as_json, montecarlo.format_table,
            f"wrote {', '.join(str(path) for path in written)}" if written else None,
            "montecarlo validation FAILED: {}")
