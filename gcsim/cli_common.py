"""What every command shares: errors end as one `Error: ...` line and a non-zero exit."""

from __future__ import annotations

import click


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def fail(exc: BaseException):
    """Raise `exc` as a click error: one line, exit status 1, no traceback."""
    raise click.ClickException(one_line(exc)) from None


class OneLineErrors(click.Command):
    """Reports bad options as a single `Error: ...` line, like every other error of the command."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            error = click.ClickException(exc.format_message())
            error.exit_code = exc.exit_code
            raise error from None
