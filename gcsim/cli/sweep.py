"""`gcsim sweep` and `gcsim bench sweep`: the characterisation commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gcsim.spice import executors
from gcsim.characterize import spec as spec_module
from gcsim.characterize.cache import ResultCache
from gcsim.cli.common import design_option, fail
from gcsim.core import resources
from gcsim.core.design import choose_design
from gcsim.core.errors import GcsimError
from gcsim.core.values import parse_assignment



def shipped_spec(spec_file: Path) -> Path:
    """SPEC as given when it exists; else, for a bare name, the spec gcsim ships by that name."""
    if spec_file.exists() or spec_file.parent != Path("."):
        return spec_file
    shipped = resources.CHARACTERIZATION / spec_file.with_suffix(".toml").name
    return shipped if shipped.is_file() else spec_file


@click.command("sweep")
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Table to write (default: SPEC's name with .parquet/.csv, in the current "
                   "folder). A JSON sidecar with the provenance goes beside it.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default=None,
              help="Table format (default: from the output's suffix, else parquet).")
@click.option("--set", "assignments", multiple=True, metavar="NAME=VALUE",
              help="Override a template parameter, e.g. --set c_store=3f. Repeatable.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
              help="ngspice worker processes at once (default: number of cores).")
@click.option("--models", default=None, help="Device models: builtin, sky130:CORNER or "
                                              "path/to/lib.spice:SECTION "
                                              "(default: the spec's).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the result cache.")
@click.option("--progress/--no-progress", default=None,
              help="Force the progress bar on or off (default: on for a terminal).")
@click.option("--yes", "-y", "confirmed", is_flag=True,
              help=f"Run a sweep of more than {spec_module.LARGE_SWEEP_POINTS:,} points "
                   "(refused without it: it could take hours).")
@design_option
@executors.click_options
def sweep_command(spec_file, output, fmt, assignments, jobs, models, no_cache, progress,
                  confirmed, design, executor, scheduler):
    """Run the characterisation sweep SPEC through ngspice and save a tidy table.

    SPEC is a spec file, or the name of a spec gcsim ships (gain_cell_iv, sense_amp_transfer,
    ...; the files in the repository's characterization/ folder, also in an installed wheel).

    Points are batched into few ngspice runs (nested .dc, or many testbench instances
    per transient), run in recycled worker processes, and cached: an unchanged or an
    interrupted sweep resumes from the cache ($GCSIM_CACHE_DIR moves it). Failed points
    are listed in the sidecar with ngspice's message; the others are still saved, and the
    exit status is 3.

    With --executor dask the runs go to a Dask cluster instead (the same table, the same
    cache); see docs/guide/dask.md.

    \b
    Examples:
      gcsim sweep characterization/gain_cell_iv.toml -o out/iv.parquet --set c_store=3f
      gcsim sweep gain_cell_iv -o iv.parquet
      gcsim sweep characterization/gain_cell_pulse.toml --executor dask \\
          --scheduler tcp://10.0.0.5:8786
    """
    from gcsim.characterize.outputs import check_outputs
    from gcsim.characterize.sweep import Sweep, write_outputs

    try:
        overrides = dict(parse_assignment(text) for text in assignments)
        # --design alone brings its process (sky130 runs on sky130:tt), as regen and validate
        # take it; models alone keep the spec's own design choice.
        chosen, models = (choose_design(design, models) if design is not None
                          else (None, models))
        runner = executors.from_options(executor, scheduler)
        spec_file = shipped_spec(spec_file)
        spec = spec_module.load(spec_file)
        spec_module.check_size(spec, models, confirmed)
        if fmt is None:
            fmt = "csv" if output is not None and output.suffix.lower() == ".csv" else "parquet"
        if output is None:
            output = Path(spec_file.stem + (".csv" if fmt == "csv" else ".parquet"))
        # The table and its sidecar are checked now, not after hours of ngspice runs.
        check_outputs(output)
        cache = ResultCache(enabled=not no_cache)
        sweep = Sweep(spec, overrides, models, jobs, cache, progress, executor=runner,
                      design=chosen)
        with runner:
            result = sweep.run()
        sidecar = write_outputs(result, output, fmt)
    except GcsimError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: finished runs are cached; run the same "
                                   "command again to resume") from None
    stats = result.metadata["stats"]
    click.echo(f"{spec.name}: {len(result.table)} rows, {result.metadata['points']} points, "
               f"{len(result.failures)} failed; {stats['runs']} ngspice runs, "
               f"{stats['cache_hits']} from cache, {stats['elapsed_s']:.1f} s")
    click.echo(f"wrote {output} and {sidecar}")
    if cache.corrupt:
        click.echo(f"note: {cache.corrupt} damaged cache entries were found, removed and "
                   "recomputed", err=True)
    if result.failures:
        first = result.failures[0]
        where = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in first.items() if k != "message")
        message = " ".join(first["message"].split())
        reason = message if len(message) <= 100 else message[:97] + "..."
        click.echo(f"Error: {len(result.failures)} of {result.metadata['points']} points failed "
                   f"(first: {where}: {reason}); the others are in {output}, every failure is "
                   f"listed in {sidecar}", err=True)
        click.get_current_context().exit(3)


@click.command("sweep")
@click.option("--points", type=click.IntRange(2, 100000), default=1000, show_default=True,
              help="Number of pulse-sweep points (stored voltage x pulse width).")
@click.option("--models", default="builtin", show_default=True,
              help="Device models, e.g. builtin or sky130:tt. On a process other than "
                   "builtin the supply and the cell's device sizes come from its role "
                   "mapping (printed).")
@click.option("--sample", type=click.IntRange(3, 100000), default=None,
              help="Time the per-point way on this many points spread over the grid and "
                   "report it per point (default: all points on builtin, 3 otherwise; a "
                   "sky130 point costs about 0.1 s, a library gcsim cannot trim seconds).")
@click.option("--batch", type=click.IntRange(1, 100000), default=None,
              help="Points per batched ngspice run (default: 160 on builtin; otherwise "
                   "as few library loads per worker as 200 points per run allow).")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
              help="Worker processes for the batched engine (default: cores).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--executor", type=click.Choice(executors.NAMES), default="local",
              show_default=True,
              help="dask: time the sweep on 1 and then 2 Dask workers instead (and the local "
                   "executor as a reference).")
@click.option("--scheduler", metavar="tcp://HOST:PORT", default=None,
              help="With --executor dask: a cluster with at least 2 workers (default: start "
                   "a LocalCluster of 2 single-threaded workers on loopback).")
@click.option("--repeat", type=click.IntRange(1, 100), default=None,
              help="With --executor dask: time each worker count this many times, "
                   "interleaved, and report the medians (default 3).")
@click.option("--montecarlo", "montecarlo", type=click.IntRange(2, 10000), default=None,
              metavar="SAMPLES",
              help="Time the Monte Carlo spec (gain_cell_mismatch) with this many samples as "
                   "instances of one netlist against one ngspice run per sample instead.")
def bench_sweep_command(points, models, sample, batch, jobs, as_json, executor, scheduler,
                        repeat, montecarlo):
    """Time a gain-cell pulse sweep batched by gcsim against one PySpice run per point.

    Both ways run the same netlists and ngspice in this invocation, so the speed-up is a
    ratio measured under the same machine load. The cache is bypassed.

    With --executor dask it times the same batched sweep on 1 and on 2 Dask workers of
    one cluster, in this invocation, and prints the throughput ratio.

    \b
    Examples:
      gcsim bench sweep --points 1000 --json
      gcsim bench sweep --models sky130:tt      (needs: make sky130)
      gcsim bench sweep --executor dask --points 1000
      gcsim bench sweep --montecarlo 100 --models sky130:tt
    """
    from gcsim.bench.sweep import bench_sweep

    if montecarlo is not None:
        _bench_montecarlo(models, montecarlo, jobs, as_json)
        return
    if executor == "dask":
        _bench_dask(points, models, sample, batch, jobs, as_json, scheduler, repeat or 3)
        return
    if scheduler or repeat:
        fail(GcsimError(f"{'--scheduler' if scheduler else '--repeat'} needs --executor dask"))
    if sample is None and not models.startswith("builtin"):
        sample = 3
    try:
        report = bench_sweep(points, jobs, progress=not as_json, models=models,
                             sample=sample, batch=batch)
    except GcsimError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"pulse sweep, {report['points']} points, models {report['models']}")
    if report["design"]:
        click.echo(f"  design: {report['design']} (its levels and sizes)")
    click.echo(f"  batched (gcsim, {report['batched_runs']} ngspice runs, "
               f"{report['workers']} workers): {report['batched_s']:8.2f} s   "
               f"({report['batched_points_per_s']:.1f} points/s)")
    if report["per_point_extrapolated"]:
        click.echo(f"  one PySpice simulation per point:           {report['per_point_s']:8.2f} s"
                   f"   ({report['per_point_each_s']:.2f} s per point, timed on "
                   f"{report['per_point_sampled']} points, times {report['points']})")
    else:
        click.echo(f"  one PySpice simulation per point:           {report['per_point_s']:8.2f} s"
                   f"   ({report['per_point_points_per_s']:.1f} points/s)")
    click.echo(f"  speed-up: {report['speedup']:.1f}x   "
               f"(max |charge difference| {report['max_abs_charge_diff_C']:.2e} C"
               + (" on the sampled points)" if report["per_point_extrapolated"] else ")"))
    sys.stdout.flush()


def _bench_montecarlo(models, samples, jobs, as_json):
    from gcsim.bench.sweep import bench_montecarlo

    try:
        report = bench_montecarlo(models, samples, jobs)
    except GcsimError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"Monte Carlo spec, {report['samples']} samples ({report['points']} points), "
               f"models {report['models']}, design {report['design']}")
    click.echo(f"  samples as instances:  {report['batched_s']:8.2f} s in "
               f"{report['batched_runs']} ngspice runs")
    click.echo(f"  one run per sample:    {report['per_sample_s']:8.2f} s in "
               f"{report['per_sample_runs']} ngspice runs")
    click.echo(f"  speed-up: {report['speedup']:.1f}x   ({report['workers']} workers, "
               f"{report['cores']} cores, load average {report['load_average_1min']})")
    if "full_library_per_sample_s" in report:
        click.echo(f"  one run per sample loading the whole library (as before; timed on "
                   f"{report['full_library_samples']} samples): "
                   f"{report['full_library_per_sample_s']:.2f} s each, "
                   f"{report['full_library_extrapolated_s']:.1f} s for all; speed-up "
                   f"{report['speedup_vs_full_library']:.1f}x")
    for end in ("top", "bottom"):
        entry = report[f"current_at_{end}"]
        a, b = entry["batched"], entry["per_sample"]
        same = "identical samples" if entry["identical"] else \
            f"Kolmogorov-Smirnov p = {entry['ks_pvalue']:.2f}"
        click.echo(f"  read current at the {end} of the range: mean {a['mean_A'] * 1e6:.3f} / "
                   f"{b['mean_A'] * 1e6:.3f} uA, sigma {a['sigma_A'] * 1e9:.1f} / "
                   f"{b['sigma_A'] * 1e9:.1f} nA (instances / per sample; {same})")
    sys.stdout.flush()


def _bench_dask(points, models, sample, batch, jobs, as_json, scheduler, repeat):
    from gcsim.bench.sweep import bench_sweep_dask

    try:
        if sample is not None:
            raise GcsimError("--sample does not apply to --executor dask (no per-point runs)")
        if scheduler:
            scheduler = executors.check_address(scheduler)
        executors.import_distributed()
        report = bench_sweep_dask(points, models, batch, scheduler, jobs, progress=False,
                                  repeat=repeat)
    except GcsimError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return

    def times(values):
        return ", ".join(f"{v:.2f}" for v in values)

    click.echo(f"pulse sweep on Dask, {report['points']} points in {report['runs']} ngspice "
               f"runs of up to {report['batch']}, models {report['models']}")
    click.echo(f"  scheduler: {report['scheduler']}; worker threads: "
               + ", ".join(f"{a} ({t})" for a, t in report["workers"].items()))
    click.echo(f"  dask, 1 worker:   {report['dask_1_worker_points_per_s']:7.1f} points/s   "
               f"(median of {times(report['dask_1_worker_s'])} s)")
    click.echo(f"  dask, 2 workers:  {report['dask_2_workers_points_per_s']:7.1f} points/s   "
               f"(median of {times(report['dask_2_workers_s'])} s)")
    click.echo(f"  2 workers / 1 worker: {report['ratio_2_over_1']:.2f}x   "
               f"({report['cores']} cores, load average {report['load_average_1min']})")
    click.echo(f"  local executor, {report['local_jobs']} processes: "
               f"{report['local_points_per_s']:7.1f} points/s   ({report['local_s']:.2f} s, "
               "reference)")
    click.echo(f"  tables identical on every executor: "
               f"{'yes' if report['tables_identical'] else 'NO'}")
    sys.stdout.flush()
