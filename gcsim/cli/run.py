"""`gcsim run`: the main job. Runs every characterisation spec, then prints a summary."""

from __future__ import annotations

import time
from pathlib import Path

import click
import pandas as pd

from gcsim.core import resources
from gcsim.core.atomic import check_targets, replacing
from gcsim.cli.common import design_option, one_line
from gcsim.core.errors import GcsimError


@click.command("run")
@click.option("--specs", "spec_dir", type=click.Path(file_okay=False, path_type=Path),
              default=resources.CHARACTERIZATION, show_default=True,
              help="Folder of characterisation specs (*.toml).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports"), show_default=True, help="Where tables and reports go.")
@click.option("--models", default=None, help="Device models for every spec (default: each "
                                              "spec's own, 'builtin').")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
              help="ngspice worker processes at once (default: cores).")
@design_option
def run_command(spec_dir, out_dir, models, jobs, design):
    """Run the main job: every characterisation sweep, every fit, then a one-screen summary.

    Tables land in OUT/sweeps/ (Parquet, with a JSON sidecar each), fits and their plots in
    OUT/fits/ (the committed fits/ is only rewritten by `gcsim regen`). Unchanged sweeps come
    from the cache.

    \b
    Examples:
      gcsim run --out reports
      gcsim run --models sky130:tt --out reports-sky130
    """
    from gcsim.pipeline import fit_all, headline, run_sweeps, swept_design
    from gcsim.characterize.summary import FIGURES, format_value
    from gcsim.fit.table import operating_point

    started = time.perf_counter()
    summary_rows = []

    def swept(outcome):
        stats = outcome.stats
        click.echo(f"swept {outcome.spec.name:32s} {outcome.rows:6d} rows  {outcome.failed:3d} "
                   f"failed  {stats['runs']:3d} runs {stats['cache_hits']:3d} cached  "
                   f"{stats['elapsed_s']:6.1f} s  -> {outcome.table}")
        figures = FIGURES.get(outcome.spec.stem)
        if figures and outcome.rows:
            # The mid-rail the sweep ran at: its sidecar's v_mid, else its design's.
            mid_rail = operating_point(outcome.table).get("v_mid_V")
            if mid_rail is None and outcome.design is not None:
                mid_rail = float(outcome.design.operating.mid_rail_V)
            for name, value in figures(outcome.table_data, mid_rail).items():
                summary_rows.append({"stage": outcome.spec.stem, "figure": name,
                                     "value": format_value(name, value)})

    def fitted(outcome):
        for label, value in headline(outcome.record):
            summary_rows.append({"stage": f"fit {outcome.name}", "figure": label.strip(),
                                 "value": value})

    try:
        _check_targets(spec_dir, out_dir)
        outcomes = run_sweeps(spec_dir, out_dir / "sweeps", models, jobs, on_done=swept,
                              design=design)
        fit_all(out_dir / "sweeps", out_dir / "fits", out_dir / "fits", on_done=fitted,
                on_skip=lambda name, why: click.echo(f"skipped fit {name}: {why}"),
                swept={outcome.table.stem for outcome in outcomes},
                design=swept_design(outcomes))
    except GcsimError as exc:
        raise click.ClickException(one_line(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: finished runs are cached; run again to "
                                   "resume") from None
    if summary_rows:
        table = pd.DataFrame(summary_rows)
        try:
            with replacing(out_dir / "summary.csv") as temporary:
                table.to_csv(temporary, index=False)
        except GcsimError as exc:
            raise click.ClickException(one_line(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"cannot write {out_dir / 'summary.csv'}: "
                                       f"{exc.strerror or exc}") from None
        from gcsim.core.design import choose_design

        chosen, shown = choose_design(design, models)
        click.echo(f"\nCharacterisation and fits (models: {shown or 'builtin'}, design: "
                   f"{chosen.name if chosen else 'builtin'}), "
                   f"{time.perf_counter() - started:.1f} s; fits and plots in {out_dir / 'fits'}")
        click.echo(table.to_string(index=False))
    from gcsim.cli.validate import final_validation

    final_validation(out_dir, models, jobs, design=design)


def _check_targets(spec_dir: Path, out_dir: Path) -> None:
    """Every file the run will write (sweep tables and sidecars, fits and plots, the summary,
    the validation report), refused in one line before the first ngspice run when one exists
    and is not a regular file (a FIFO, a device, a symlink, a folder)."""
    from gcsim.fit import kinds
    from gcsim.pipeline import EXTRA_FITS
    from gcsim.validate.compare import report_files

    targets = []
    for spec in sorted(Path(spec_dir).glob("*.toml")):
        table = out_dir / "sweeps" / f"{spec.stem}.parquet"
        targets += [table, table.with_suffix(".json")]
    for name in [kind.name for kind in kinds.all_kinds()] + list(EXTRA_FITS):
        targets += [out_dir / "fits" / f"{name}.json", out_dir / "fits" / f"{name}.png"]
    targets.append(out_dir / "summary.csv")
    targets += report_files(out_dir / "validate")
    check_targets(targets, "output")
