"""A request to stop (SIGTERM) that outlives a swallowed exception.

The CLI's SIGTERM handler raises, like Ctrl-C. But Python drops an exception raised while a
finaliser or a fork hook happens to run ("Exception ignored in ..."), and the sweep would then
run to its end. So the request is also recorded here, and the long loops (the worker pool's)
raise it again at their next turn.
"""

from __future__ import annotations


class Interrupted(KeyboardInterrupt):
    """Stop requested by a signal; every command's Ctrl-C path handles it."""


_requested: str | None = None


def request(reason: str) -> None:
    global _requested
    _requested = reason


def clear() -> None:
    """Forget any request: a new command starts (the CLI calls this when it starts one)."""
    global _requested
    _requested = None


def raise_if_requested() -> None:
    """Raise Interrupted if a stop was requested (and not yet acted on)."""
    global _requested
    if _requested is not None:
        reason, _requested = _requested, None
        raise Interrupted(reason)
