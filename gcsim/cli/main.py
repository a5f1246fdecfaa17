"""Command-line interface: one click group, with sub-commands registered from their modules."""

from __future__ import annotations

import click

from gcsim import __version__
from gcsim.cli.common import ReportingGroup, handle_sigterm_like_ctrl_c, set_debug


@click.group(cls=ReportingGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gcsim")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, param, value: set_debug(value),
              help="On an error, show the Python traceback as well as the one-line message "
                   "(also: GCSIM_DEBUG=1).")
def main() -> None:
    """gcsim: characterise gain-cell attention circuits in ngspice, fit them, simulate them.

    Every error ends as one `Error: ...` line and exit status 1 (a sweep with failed points
    exits with 3); `gcsim --debug COMMAND ...` adds the traceback.

    \b
    Example:
      gcsim sweep characterization/gain_cell_iv.toml -o iv.parquet
    """
    handle_sigterm_like_ctrl_c()


@main.group()
def bench() -> None:
    """Benchmarks that print ratios against a baseline measured in the same run.

    \b
    Example:
      gcsim bench sweep --points 1000 --json
    """


# Sub-command registration: each module adds its commands to `main` or `bench`.
# --- registrations below ---
from gcsim.cli.sweep import bench_sweep_command, sweep_command  # noqa: E402

main.add_command(sweep_command)
bench.add_command(bench_sweep_command)
from gcsim.cli.simulate import bench_simulate, simulate_group  # noqa: E402

main.add_command(simulate_group)
bench.add_command(bench_simulate, name="simulate")
from gcsim.cli.run import run_command  # noqa: E402

main.add_command(run_command)
from gcsim.cli.fit import export_group, fit_command, regen_command  # noqa: E402

main.add_command(fit_command)
main.add_command(regen_command)
main.add_command(export_group)
from gcsim.cli.validate import validate_group  # noqa: E402

main.add_command(validate_group)
from gcsim.cli.energy import energy_command  # noqa: E402

main.add_command(energy_command)
from gcsim.cli.growth import growth_group  # noqa: E402

bench.add_command(growth_group)
from gcsim.cli.accuracy import accuracy_command  # noqa: E402

main.add_command(accuracy_command)
