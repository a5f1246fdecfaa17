"""`gcsim run`: the main job. Runs every characterisation spec, then prints a summary."""

from __future__ import annotations

import time
from pathlib import Path

import click
import pandas as pd

from gcsim import paths, spec as spec_module
from gcsim.cache import ResultCache
from gcsim.errors import GcsimError


@click.command("run")
@click.option("--specs", "spec_dir", type=click.Path(file_okay=False, path_type=Path),
              default=paths.CHARACTERIZATION, show_default=True,
              help="Folder of characterisation specs (*.toml).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports"), show_default=True, help="Where tables and reports go.")
@click.option("--models", default=None, help="Device models for every spec (default: each "
                                              "spec's own, 'builtin').")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
              help="ngspice worker processes at once (default: cores).")
def run_command(spec_dir, out_dir, models, jobs):
    """Run the main job: every characterisation sweep, then a one-screen summary.

    Tables land in OUT/sweeps/ (Parquet, with a JSON sidecar each); unchanged sweeps come
    from the cache.

    \b
    Example:
      gcsim run --out reports
    """
    from gcsim.summary import FIGURES, format_value
    from gcsim.sweep import Sweep, write_outputs

    specs = sorted(spec_dir.glob("*.toml"))
    if not specs:
        raise click.ClickException(f"no *.toml specs in {spec_dir}")
    started = time.perf_counter()
    summary_rows = []
    try:
        for path in specs:
            spec = spec_module.load(path)
            result = Sweep(spec, models=models, workers=jobs, cache=ResultCache()).run()
            output = out_dir / "sweeps" / f"{path.stem}.parquet"
            write_outputs(result, output, "parquet")
            stats = result.metadata["stats"]
            click.echo(f"swept {path.name:28s} {len(result.table):6d} rows  "
                       f"{len(result.failures):3d} failed  {stats['runs']:3d} runs "
                       f"{stats['cache_hits']:3d} cached  {stats['elapsed_s']:6.1f} s  -> {output}")
            figures = FIGURES.get(path.stem)
            if figures and len(result.table):
                for name, value in figures(result.table).items():
                    summary_rows.append({"sweep": path.stem, "figure": name,
                                         "value": format_value(name, value)})
    except GcsimError as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: finished runs are cached; run again to "
                                   "resume") from None
    if summary_rows:
        table = pd.DataFrame(summary_rows)
        table.to_csv(out_dir / "summary.csv", index=False)
        click.echo("\nGain-cell characterisation (models: "
                   f"{models or 'builtin'}), {time.perf_counter() - started:.1f} s")
        click.echo(table.to_string(index=False))
