"""What every command shares: errors end as one `Error: ...` line and a non-zero exit, with
the traceback only under `gcsim --debug` (or GCSIM_DEBUG=1)."""

from __future__ import annotations

import os
import signal
import sys
import traceback

import click

from gcsim.core import interrupts

_debug = False

# --design on every command that builds netlists: a shipped design's name or a design file.
design_option = click.option(
    "--design", default=None, metavar="NAME|FILE",
    help="Design whose values the netlists take: a shipped one (builtin) or a design .toml "
         "(default: the models' process's design, builtin's on builtin).")


def set_debug(value: bool) -> None:
    global _debug
    _debug = bool(value)


def debugging() -> bool:
    return _debug or os.environ.get("GCSIM_DEBUG", "") not in ("", "0")


# Ctrl-C (SIGINT) and SIGTERM (what `timeout` and batch schedulers send) both raise
# Interrupted in the CLI's process, so every command's interrupt path runs: temporaries
# removed, one line, and the finished runs kept in the cache for a resume.
Terminated = interrupts.Interrupted


def handle_sigterm_like_ctrl_c() -> None:
    """Install the SIGINT and SIGTERM handlers in this (the CLI's) process. Each also records
    the request (gcsim.core.interrupts), which the worker pool raises again should Python drop
    the handler's exception. A worker forked from this process dies of SIGTERM as usual (and
    keeps SIGINT blocked: Ctrl-C is the parent's to handle)."""
    cli_pid = os.getpid()
    interrupts.clear()

    def on_stop(signum, frame):
        if os.getpid() != cli_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        name = signal.Signals(signum).name
        interrupts.request(name)   # raised again by the long loops if this is dropped
        raise Terminated(name)

    try:
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
    except ValueError:   # not the main thread (an embedding application): leave it be
        pass


# Longest error line: a message that echoes a huge input (a 100,000-character --set value,
# say) is cut here.
MAX_MESSAGE = 500


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none), cut to
    MAX_MESSAGE characters."""
    text = str(exc).strip()
    return cut(text.splitlines()[0]) if text else type(exc).__name__


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


class ReportingGroup(click.Group):
    """The top-level group. A command's own errors arrive as one-line click errors; under
    --debug the exception behind one is printed first. Anything else (a bug, an error
    gcsim did not foresee) also ends as one line, exit status 1, unless --debug is given,
    which lets the traceback through."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`gcsim ... | head`): stop quietly, as Unix tools do, with
            # stdout pointed at devnull so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(141) from None   # 128 + SIGPIPE, as a shell reports it
        except click.UsageError as exc:
            # A missing argument or a bad option of any sub-command: one line, like every other
            # error, naming where help is (click would print usage and hint lines first).
            message = " ".join(exc.format_message().split())
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            error = click.ClickException(cut(message + where))
            error.exit_code = exc.exit_code
            raise error from None
        except click.ClickException as exc:
            lines = exc.message.strip().splitlines()
            exc.message = cut(lines[0]) if lines else exc.message
            cause = exc.__cause__ or exc.__context__
            if debugging() and cause is not None and not isinstance(cause, click.ClickException):
                traceback.print_exception(type(cause), cause, cause.__traceback__,
                                          file=sys.stderr)
            raise
        except Exception as exc:    # the last line of defence
            if debugging():
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {one_line(exc)} (run `gcsim --debug "
                "...` for the traceback)") from None
