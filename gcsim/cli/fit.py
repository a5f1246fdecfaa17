"""`gcsim fit`, `gcsim regen` and `gcsim export`: the compact-model commands."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import click

from gcsim.spice import executors
from gcsim.core import resources
from gcsim.cli.common import design_option, fail
from gcsim.core.errors import GcsimError
from gcsim.fit.schema import REQUIRED_PARAMETERS
from gcsim.core.values import parse_number


def _column_map(pairs) -> dict[str, str]:
    mapping = {}
    for text in pairs:
        ours, sep, theirs = text.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise GcsimError(f"--column {text!r}: expected GCSIM_COLUMN=YOUR_COLUMN, e.g. "
                             "stored_voltage_V=Vstore")
        mapping[ours.strip()] = theirs.strip()
    return mapping


# Options each kind accepts (CLI name -> fitter keyword).
KIND_OPTIONS = {
    "nonlinearity": {"order", "v_in_V", "objective", "v_mid_V", "read_on_V"},
    "charge_per_pulse": {"order", "edge_order", "objective", "v_mid_V", "read_on_V"},
    "decay": {"age_max_s", "nominal_temperature_C"},
    "sense_amp": {"linearity_tolerance"},
    "charge_to_pulse": set(),
    "signed_converter": {"levels"},
    "mismatch": {"v_in_V"},
    "write": set(),
    "read_disturb": set(),
    "cell_conductance": {"order", "v_mid_V", "read_on_V"},
    "readout_loading": set(),
}


FLAGS = {"order": "--order", "edge_order": "--edge-order", "objective": "--objective",
         "levels": "--levels", "v_in_V": "--v-in", "age_max_s": "--age-max",
         "nominal_temperature_C": "--nominal-temperature",
         "linearity_tolerance": "--linearity-tolerance", "v_mid_V": "--v-mid",
         "read_on_V": "--read-on"}


@click.command("fit")
@click.argument("kind", type=click.Choice(list(REQUIRED_PARAMETERS)))
@click.argument("table", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Fit file to write (default: KIND.json in the current folder); the plot "
                   "goes beside it as .png.")
@click.option("--column", "columns", multiple=True, metavar="GCSIM=YOURS",
              help="Map a column gcsim expects to your table's name for it, e.g. "
                   "--column i_out_A=Iout. Repeatable.")
@click.option("--order", type=click.IntRange(1, 15), default=None,
              help="Polynomial order (nonlinearity, charge_per_pulse; default 3).")
@click.option("--edge-order", type=click.IntRange(0, 15), default=None,
              help="charge_per_pulse: order of the edge-charge polynomial (default 3).")
@click.option("--v-in", "v_in", default=None,
              help="nonlinearity: fit only the rows at this read voltage (the design's read-on "
                   "level, e.g. builtin's 0.9 V), like the "
                   "published coefficients; default: the whole surface. mismatch: the read "
                   "voltage to use.")
@click.option("--v-mid", "v_mid", default=None,
              help="Cell fits: the mid-rail the stored voltage is centred on (default: the "
                   "sweep's, from its sidecar).")
@click.option("--read-on", "read_on", default=None,
              help="Cell fits: the read word line's on-level (default: the sweep's v_in).")
@click.option("--objective", type=click.Choice(["lsq", "minimax"]), default=None,
              help="Least squares (default) or minimise the maximum error.")
@click.option("--age-max", default=None,
              help="decay: the ages the simulator's exponential must match, e.g. 0.82m "
                   "(default: 1024 tokens x 0.8 µs).")
@click.option("--nominal-temperature", default=None,
              help="decay: the temperature (°C) whose curves the simulator uses (default 27).")
@click.option("--linearity-tolerance", default=None,
              help="sense_amp: deviation from the line that ends the linear range, as a "
                   "fraction of the output swing (default 0.01).")
@click.option("--levels", type=click.IntRange(2, 4096), default=None,
              help="signed_converter: output levels (default 32).")
@click.option("--json", "as_json", is_flag=True, help="Print the fit file instead of a summary.")
def fit_command(kind, table, output, columns, order, edge_order, v_in, v_mid, read_on, objective,
                age_max, nominal_temperature, linearity_tolerance, levels, as_json):
    """Fit one compact model of KIND to TABLE (a gcsim sweep, or any CSV/Parquet table).

    Writes a validated JSON fit file (parameters with units, valid ranges, metrics,
    provenance) and a PNG of data against fit with the residuals.

    \b
    Examples:
      gcsim fit nonlinearity reports/sweeps/gain_cell_iv.parquet -o iv_fit.json
      gcsim fit nonlinearity DATA.csv --column stored_voltage_V=Vstore \\
          --column v_in_V=Vin --column i_out_A=Iout
      gcsim fit decay reports/sweeps/gain_cell_retention.parquet --age-max 2m
    """
    from gcsim.fit.table import OPERATING_POINT, fit_table, operating_point, write_fit
    from gcsim.hw.published import PAPER
    from gcsim.pipeline import context_options
    from gcsim.pipeline import headline as describe

    try:
        options = {}
        given = {"order": order, "edge_order": edge_order, "objective": objective,
                 "levels": levels,
                 "v_mid_V": None if v_mid is None else parse_number(v_mid, "--v-mid"),
                 "read_on_V": None if read_on is None else parse_number(read_on, "--read-on"),
                 "v_in_V": None if v_in is None else parse_number(v_in, "--v-in"),
                 "age_max_s": None if age_max is None else parse_number(age_max, "--age-max"),
                 "nominal_temperature_C": None if nominal_temperature is None
                 else parse_number(nominal_temperature, "--nominal-temperature"),
                 "linearity_tolerance": None if linearity_tolerance is None
                 else parse_number(linearity_tolerance, "--linearity-tolerance")}
        for name, value in given.items():
            if value is None:
                continue
            if name not in KIND_OPTIONS[kind]:
                raise GcsimError(f"{FLAGS[name]} does not apply to a {kind} fit")
            options[name] = value
        if "linearity_tolerance" in options and not 0 < options["linearity_tolerance"] < 1:
            raise GcsimError("--linearity-tolerance must be between 0 and 1")
        if "age_max_s" in options and options["age_max_s"] <= 0:
            raise GcsimError("--age-max must be positive")
        needed = [name for name in OPERATING_POINT
                  if name in KIND_OPTIONS[kind] and name not in options]
        found = operating_point(table) if needed else {}
        assumed = [name for name in needed if name not in found]
        if assumed:
            # A table gcsim did not sweep: the published operating point, said out loud below.
            published = {"v_mid_V": PAPER.mid_rail_V, "read_on_V": PAPER.read_on_V}
            options.update({name: published[name] for name in assumed})
        options = {**context_options(kind), **options}
        record, data = fit_table(kind, table, _column_map(columns), **options)
        output = output or Path(f"{kind}.json")
        json_path, plot_path = write_fit(record, data, output)
    except GcsimError as exc:
        fail(exc)
    if assumed:
        click.echo(f"note: {table} has no sweep sidecar with the operating point; used the "
                   f"published one (v_mid {PAPER.mid_rail_V:g} V, read-on {PAPER.read_on_V:g} V); "
                   "set --v-mid and --read-on for yours", err=True)
    if as_json:
        click.echo(json_path.read_text().rstrip())
        return
    click.echo(f"fitted {kind} on {len(data)} rows of {table} -> {json_path} (+ {plot_path.name})")
    for label, value in describe(record):
        click.echo(f"  {label:30s} {value}")


@click.command("regen")
@click.option("--specs", "spec_dir", type=click.Path(file_okay=False, path_type=Path),
              default=resources.CHARACTERIZATION, show_default=True, help="Folder of specs.")
@click.option("--fits", "fits_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where the fit files go [default: the design's committed "
                                 "bundle, fits/DESIGN/].")
@click.option("--reports", "reports_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports"), show_default=True,
              help="Where sweep tables (REPORTS/sweeps) and plots (REPORTS/fits) go.")
@click.option("--models", default=None, help="Device models (default: each spec's, builtin).")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
              help="ngspice worker processes at once (default: cores).")
@click.option("--check", is_flag=True,
              help="Regenerate into a scratch folder and compare with FITS instead of "
                   "writing it; exit 1 on any difference other than dates.")
@design_option
@executors.click_options
def regen_command(spec_dir, fits_dir, reports_dir, models, jobs, check, design, executor,
                  scheduler):
    """Regenerate every fitted model: run every spec, then every fit.

    Unchanged sweeps come from the cache, so a second run takes seconds. Each committed
    bundle fits/DESIGN/ is exactly what this produces on that design (`--check` proves it):
    --design sky130 (or --models sky130:tt) writes fits/sky130/.

    With --executor dask the sweeps run on a Dask cluster, with the same results and
    cache.

    \b
    Examples:
      gcsim regen
      gcsim regen --check
      gcsim regen --design sky130
      gcsim regen --executor dask --scheduler tcp://10.0.0.5:8786
    """
    from gcsim.pipeline import compare_fits, fit_all, run_sweeps, swept_design
    from gcsim.pipeline import headline as describe

    try:
        runner = executors.from_options(executor, scheduler)
    except GcsimError as exc:
        fail(exc)
    from gcsim.core.design import DESIGNS, choose_design

    try:
        chosen, models = choose_design(design, models)
        if fits_dir is None:
            shipped = chosen is None or (chosen.path is not None and
                                         chosen.path.resolve().parent == DESIGNS.resolve())
            if not shipped:
                raise GcsimError(f"--design {design}: a design of your own needs --fits DIR "
                                 "(the committed fits/ holds the shipped designs' bundles)")
            fits_dir = resources.fits_for(chosen.name) if chosen else resources.FITS
    except GcsimError as exc:
        fail(exc)
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="gcsim-regen-")) if check else None
    target = scratch / "fits" if check else fits_dir
    try:
        with runner:
            swept = run_sweeps(spec_dir, reports_dir / "sweeps", models, jobs, executor=runner,
                       design=chosen,
                       on_done=lambda o: click.echo(
                           f"swept {o.spec.name:32s} {o.rows:6d} rows {o.failed:3d} failed "
                           f"{o.stats['cache_hits']:3d}/{o.stats['planned_runs']:<3d} runs "
                           "cached"))
        outcomes = fit_all(reports_dir / "sweeps", target, reports_dir / "fits",
                           on_skip=lambda name, why: click.echo(f"skipped {name}: {why}"),
                           swept={outcome.table.stem for outcome in swept},
                           design=swept_design(swept))
        for outcome in outcomes:
            click.echo(f"fitted {outcome.name:22s} -> {outcome.json_path}")
            for label, value in describe(outcome.record):
                click.echo(f"  {label:30s} {value}")
        if check:
            differences = compare_fits(fits_dir, target)
            if differences:
                for line in differences[:20]:
                    click.echo(f"differs: {line}", err=True)
                raise GcsimError(f"{len(differences)} difference(s) between {fits_dir} and a "
                                 f"fresh regen; run `gcsim regen` and commit {fits_dir}")
            click.echo(f"{fits_dir} matches a fresh regen (dates aside)")
    except GcsimError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: finished runs are cached; run again to "
                                   "resume") from None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    click.echo(f"done in {time.perf_counter() - started:.1f} s")


@click.group("export")
def export_group():
    """Export fitted models to other tools' formats.

    \b
    Examples:
      gcsim export paper-model fits/builtin --token-period 0.8e-6
      gcsim export paper-coefficients fits/builtin/charge_per_pulse.json
    """


@export_group.command("paper-model")
@click.argument("fits_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--token-period", type=float, default=None,
              help="Token period in seconds for the decay factor [the design's].")
@click.option("--temperature", type=float, default=None,
              help="Temperature in °C of the decay [the bundle's nominal one].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def export_paper_model(fits_dir, token_period, temperature, as_json):
    """A fits bundle in the published model's form, for the published PyTorch training code.

    Prints the 10 cell coefficients (the fitted current at the read level projected onto the
    published cubic, in µA over the published stored range [0, 0.9] V that the design's DAC
    range maps onto), the decay factor per token (token period / retention time constant),
    the HardSigmoid saturation (the code's 80) and the output full scale (its 40), in the
    code's units (µA x T_max), and then what the form cannot express, each with its size.
    `gcsim accuracy --modes ...,exported` measures what that costs on a task.

    \b
    Examples:
      gcsim export paper-model fits/builtin
      gcsim export paper-model fits/sky130 --token-period 1e-6 --temperature 85 --json
    """
    from gcsim.hw import load_fitted_models
    from gcsim.hw.export import published_form

    try:
        model = load_fitted_models(fits_dir)
        form = published_form(model, token_period, temperature, source=str(fits_dir))
    except (GcsimError, ValueError, OSError) as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps({**form.numbers, "not_expressed": list(form.not_expressed)},
                              indent=2))
        return
    numbers = form.numbers
    error = numbers["cubic_error_percent_of_max_current"]
    click.echo(f"published form of {fits_dir} (token period {numbers['token_period_s']:.3g} s, "
               f"{numbers['temperature_C']} °C)")
    click.echo("  coefficients (µA, order (i,j) = "
               + " ".join(f"{i}{j}" for i, j in numbers["coefficient_order"]) + "):")
    click.echo("    [" + ", ".join(f"{c:.8g}" for c in numbers["coefficients"]) + "]")
    click.echo(f"    cubic off the fitted cell by {error['rms']:.2f} % RMS, {error['max']:.2f} % "
               "max of the largest current")
    click.echo(f"  stored values: {numbers['stored_mapping']}")
    click.echo(f"  decay factor per token  {numbers['decay_factor']:.6g}   (published 1.6e-4; "
               f"tau {numbers['retention_time_constant_s']:.4g} s)")
    click.echo(f"  HardSigmoid saturation  {numbers['hardsigmoid_saturation']:.6g}   "
               "(published 80)")
    click.echo(f"  output full scale       {numbers['output_full_scale']:.6g}   (published 40), "
               f"{numbers['output_levels']} levels")
    click.echo("  not expressed:")
    for line in form.not_expressed:
        click.echo(f"    - {line}")


@export_group.command("paper-coefficients")
@click.argument("fit_file", type=click.Path(dir_okay=False, path_type=Path))
def export_paper_coefficients(fit_file):
    """Print a cell fit's 10 coefficients in the published model's order and units, as JSON.

    Order (i,j) = (0,0),(0,1),(0,2),(0,3),(1,0),(1,1),(1,2),(2,0),(2,1),(3,0); units µA, with
    V_in in volts (0.9 V during a pulse) and x = stored voltage - 0.45 V. The published
    PyTorch training code can use them in place of its hard-coded cell. Takes a
    nonlinearity or a charge_per_pulse fit of order 3.

    \b
    Example:
      gcsim export paper-coefficients fits/nonlinearity.json > coefficients.json
    """
    from gcsim.fit import schema
    from gcsim.hw import PAPER, polynomial_basis

    try:
        record = schema.load(fit_file)
        if record.kind not in ("nonlinearity", "charge_per_pulse"):
            raise GcsimError(f"{fit_file} holds a {record.kind} fit; export needs a "
                             "nonlinearity or charge_per_pulse fit")
        if int(record.value("order")) != 3:
            raise GcsimError(f"{fit_file}: the published model has order 3; this fit has "
                             f"order {record.value('order')}")
        if abs(float(record.value("v_mid")) - PAPER.mid_rail_V) > 1e-12:
            raise GcsimError(f"{fit_file}: the published model is centred on "
                             f"{PAPER.mid_rail_V:g} V; this "
                             f"fit on {record.value('v_mid')} V")
    except GcsimError as exc:
        fail(exc)
    coefficients = [c * 1e6 for c in record.value("coefficients")]
    click.echo(json.dumps({
        "coefficients_uA": coefficients,
        "order": [list(e) for e in polynomial_basis(3)],
        "x": f"stored_voltage_V - {float(record.value('v_mid')):g}",
        "v_in_V": float(record.value("read_on_level")),
        "source": str(fit_file),
        "kind": record.kind,
    }, indent=2))
