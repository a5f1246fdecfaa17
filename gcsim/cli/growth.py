"""`gcsim bench growth`: how the cost of validation, simulation and sweeps grows with size."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gcsim.cli.common import OneLineErrors, fail
from gcsim.core.errors import GcsimError
from gcsim.simulate.memory import MAX_DIM, MAX_HEADS, MAX_TOKENS, MAX_WINDOW


def _int_list(low: int, high: int, ordered: bool = True):
    """A click callback: "8,16,32" -> [8, 16, 32], each within [low, high]; `ordered`:
    sorted, and a repeated value refused."""
    def parse(ctx, param, value):
        if value is None:
            return None
        items = []
        for text in str(value).split(","):
            text = text.strip()
            if not text.isdigit():
                raise click.BadParameter(f"{text!r} is not a whole number (give e.g. "
                                         f"{param.default})")
            number = int(text)
            if not low <= number <= high:
                raise click.BadParameter(f"{number} is outside {low}..{high}")
            items.append(number)
        if not ordered:
            return items
        if len(set(items)) != len(items):
            raise click.BadParameter(f"{value!r} repeats a value")
        return sorted(items)
    return parse


def _name_list(choices: tuple[str, ...] | None = None):
    def parse(ctx, param, value):
        items = [item.strip() for item in str(value).split(",") if item.strip()]
        if not items:
            raise click.BadParameter("give at least one")
        if choices is not None:
            unknown = [item for item in items if item not in choices]
            if unknown:
                raise click.BadParameter(f"{unknown[0]!r}: one of {', '.join(choices)}")
        if len(set(items)) != len(items):
            raise click.BadParameter(f"{value!r} repeats a value")
        return items
    return parse


def _check_models(names: list[str]) -> None:
    """Each --models entry resolves (the process exists and is installed), before any run."""
    from gcsim.spice import process as processes

    for name in names:
        processes.resolve(name)


def _check_plot(path: Path | None) -> None:
    if path is None:
        return
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise GcsimError(f"--plot {path}: give a .png, .svg or .pdf file")
    if not path.parent.is_dir():
        raise GcsimError(f"--plot {path}: folder {path.parent} does not exist")


def _emit(report: dict, as_json: bool, text: str, plot, path: Path | None) -> None:
    if path is not None:
        try:
            report["plot"] = plot(report, path)
        except OSError as exc:
            fail(GcsimError(f"cannot write the plot {path}: {exc.strerror or exc}"))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(text)
        if path is not None:
            click.echo(f"wrote {path}")


_plot_option = click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Draw the log-log plot here (.png), with reference slopes so the bends show.")
_json_option = click.option("--json", "as_json", is_flag=True,
                            help="Print the JSON report (load average and command included).")


@click.group("growth")
def growth_group() -> None:
    """How cost grows with size: tile validation, simulator, sweeps.

    Each command times one kind of work over a range of sizes, against a baseline timed in
    the same run (the smallest tile, the float32 matmul floor at each shape, one point per
    ngspice run), prints the ratios with the machine's load average, and can draw a log-log
    plot with reference slopes.

    \b
    Example:
      gcsim bench growth validate --rows 8,16,32 --plot validate.png
    """


@growth_group.command("validate", cls=OneLineErrors)
@click.option("--models", default="builtin", show_default=True, callback=_name_list(),
              help="Comma-separated device models, each timed on its own design, e.g. "
                   "builtin,sky130:tt.")
@click.option("--rows", default="8,16,32,64,128", show_default=True,
              callback=_int_list(1, 256), help="Comma-separated tile rows (head dimension).")
@click.option("--cols", type=click.IntRange(2, 256), default=64, show_default=True,
              help="Tile columns (tokens).")
@click.option("--repeats", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Runs of each size, interleaved; the best (least wall time) is reported.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
              help="ngspice processes at once (default: cores).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random tile inputs.")
@_plot_option
@_json_option
def growth_validate(models, rows, cols, repeats, jobs, seed, plot_path, as_json):
    """Time the SPICE side of a tile validation against the tile's rows.

    Runs each tile as `gcsim validate tile` does (one ngspice process per K column and per
    V column, written through its write devices), and reports its wall time and ngspice CPU
    (the worker processes'), with ratios to the smallest tile, timed in the same run. Per
    run it adds ngspice's own accounting (circuit equations, time points, the time spent
    evaluating devices, in the sparse solver and at the operating point), and the fixed
    cost of a run: the tile's netlist emptied of its instances (the process, ngspice's
    start, the model library).

    \b
    Examples:
      gcsim bench growth validate --plot validate.png
      gcsim bench growth validate --models builtin,sky130:tt --json   (needs: make sky130)
      gcsim bench growth validate --rows 8,16 --cols 8
    """
    from gcsim.bench import growth

    try:
        _check_plot(plot_path)
        _check_models(models)
        report = growth.bench_validate(models, rows, cols, repeats, jobs, seed)
    except GcsimError as exc:
        fail(exc)
    report["command"] = _invocation()
    _emit(report, as_json, growth.format_validate(report), growth.plot_validate, plot_path)


@growth_group.command("simulate", cls=OneLineErrors)
@click.option("--tokens", default="1024,2048,4096,8192,16384,32768,65536", show_default=True,
              callback=_int_list(1, MAX_TOKENS), help="Comma-separated T, at --window.")
@click.option("--windows", default="256,512,1024,2048,4096", show_default=True,
              callback=_int_list(1, MAX_WINDOW), help="Comma-separated W, at --at-tokens.")
@click.option("--window", type=click.IntRange(1, MAX_WINDOW), default=1024, show_default=True,
              help="The window of the T series.")
@click.option("--at-tokens", type=click.IntRange(1, MAX_TOKENS), default=16384,
              show_default=True, help="The tokens of the W series.")
@click.option("--modes", default="paper,fitted", show_default=True,
              callback=_name_list(("paper", "fitted")), help="Comma-separated modes.")
@click.option("--heads", type=click.IntRange(1, MAX_HEADS), default=1, show_default=True,
              help="Attention heads.")
@click.option("--dim", type=click.IntRange(1, MAX_DIM), default=64, show_default=True,
              help="Head dimension.")
@click.option("--repeats", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Interleaved runs of each case at each shape; the best is kept.")
@click.option("--budget", "budget_s", type=click.FloatRange(0, 3600), default=20.0,
              show_default=True,
              help="Seconds after which a case stops repeating (it runs at least once).")
@click.option("--fits", "fits_dir", default=None,
              help="Fits bundle of the fitted mode [the repository's fits/builtin/].")
@click.option("--threads", type=click.IntRange(0, 256), default=1, show_default=True,
              help="BLAS threads for the floor and the simulator; 0: the library's own. "
                   "One thread measures the work itself: on a shared machine, waiting BLAS "
                   "threads make multi-threaded timings swing.")
@click.option("--yes", "confirmed", is_flag=True,
              help="Run even when the largest shape's estimated memory is more than the "
                   "machine has available.")
@_plot_option
@_json_option
def growth_simulate(tokens, windows, window, at_tokens, modes, heads, dim, repeats, budget_s,
                    fits_dir, threads, confirmed, plot_path, as_json):
    """Time the array simulator against T and against W, and the matmul floor at each shape.

    The floor, timed beside each run, is the float32 products a blocked polynomial-cell
    simulator cannot avoid: one per polynomial power for each of the two dot products, for
    each block of 128 queries against the keys its windows reach (`gcsim bench simulate`'s
    floor, on the band instead of T x T). The memory of the largest shape is checked first.

    \b
    Examples:
      gcsim bench growth simulate --plot simulate.png
      gcsim bench growth simulate --tokens 1024,4096 --windows 256,1024 --at-tokens 4096
    """
    from gcsim.bench import growth

    try:
        _check_plot(plot_path)
        if max(windows) > at_tokens:
            raise GcsimError(f"--windows up to {max(windows)} at --at-tokens {at_tokens}: a "
                             "window longer than the sequence is the sequence; raise "
                             "--at-tokens")
        report = growth.bench_simulate(tokens, windows, modes, window, at_tokens, heads, dim,
                                       repeats, budget_s, fits_dir, threads=threads or None,
                                       confirmed=confirmed)
    except (GcsimError, ValueError, OSError) as exc:
        fail(exc)
    except MemoryError:
        fail(GcsimError("out of memory: make the largest shape smaller (--tokens, --windows, "
                        "--heads)"))
    report["command"] = _invocation()
    _emit(report, as_json, growth.format_simulate(report), growth.plot_simulate, plot_path)


@growth_group.command("sweep", cls=OneLineErrors)
@click.option("--batches", default="1,4,16,64,256", show_default=True,
              callback=_int_list(1, 100000),
              help="Comma-separated points per ngspice run.")
@click.option("--models", default="builtin", show_default=True, callback=_name_list(),
              help="Comma-separated device models, e.g. builtin,sky130:tt.")
@click.option("--grid", default="16,32", show_default=True, callback=_int_list(2, 1000, ordered=False),
              help="Stored voltages, pulse widths of the pulse sweep (points: their product).")
@click.option("--repeats", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Runs of each batch, interleaved; the best (least wall time) is reported.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
              help="Worker processes (default: cores).")
@_plot_option
@_json_option
def growth_sweep(batches, models, grid, repeats, jobs, plot_path, as_json):
    """Time a sweep's throughput against the points per ngspice run.

    Runs the gain-cell pulse sweep (the cache bypassed) at each batch size, and reports
    points per second with the ratio to the smallest batch (one point per run by default),
    timed in the same run; per run, its CPU and ngspice's accounting; and the fixed cost of
    a run (the one-point netlist emptied of its instances).

    \b
    Examples:
      gcsim bench growth sweep --plot sweep.png
      gcsim bench growth sweep --models builtin,sky130:tt --json   (needs: make sky130)
    """
    from gcsim.bench import growth

    try:
        _check_plot(plot_path)
        if len(grid) != 2:
            raise GcsimError(f"--grid takes two numbers, stored voltages and pulse widths, "
                             f"e.g. 16,32; got {len(grid)}")
        _check_models(models)
        report = growth.bench_sweep(batches, models, (grid[0], grid[1]), repeats, jobs)
    except GcsimError as exc:
        fail(exc)
    report["command"] = _invocation()
    _emit(report, as_json, growth.format_sweep(report), growth.plot_sweep, plot_path)


def _invocation() -> str:
    """The command with every option's value, defaults included, for the report."""
    import shlex

    context = click.get_current_context()
    # The program's own name varies (python -m gcsim, a test runner's): the command's is gcsim.
    words = ["gcsim", *context.command_path.split()[-3:]]
    for parameter in context.command.params:
        value = context.params.get(parameter.name)
        flag = max(parameter.opts, key=len)
        if isinstance(parameter, click.Option) and parameter.is_flag:
            words += [flag] if value else []
        elif value is not None:
            text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
            words += [flag, text]
    return " ".join(shlex.quote(word) for word in words)
