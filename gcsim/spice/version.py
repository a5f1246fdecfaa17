"""The ngspice version (part of every cache key), read in a throwaway worker process so the
caller never loads ngspice itself."""

from __future__ import annotations

import functools
import os

from gcsim.core.errors import NgspiceUnavailable
from gcsim.spice.pool import fork_context, start_worker
from gcsim.spice.run import new_ngspice


@functools.lru_cache(maxsize=1)
def ngspice_version() -> str:
    """The version line of the ngspice shared library, read once per process in a
    throwaway worker (so `gcsim run` probes once for all its specs)."""
    return probe_version(fork_context())


def probe_version(context) -> str:
    """Ask a fresh worker from ``context`` for ngspice's version line."""
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_version_worker, args=(sender,), daemon=True)
    start_worker(process)
    sender.close()
    if not receiver.poll(60):
        process.kill()
        raise NgspiceUnavailable("ngspice did not answer a version query within 60 s")
    try:
        answer = receiver.recv()
    except EOFError:
        raise NgspiceUnavailable("ngspice crashed on a version query") from None
    finally:
        process.join(timeout=5)
    if isinstance(answer, Exception):
        raise NgspiceUnavailable(str(answer))
    return answer


def _version_worker(connection) -> None:
    try:
        shared = new_ngspice()
        text = shared.exec_command("version -s")
        line = next((l.strip() for l in text.splitlines() if "ngspice" in l.lower()),
                    f"ngspice-{shared.ngspice_version}")
        connection.send(line.strip("* ").strip())
    except Exception as exc:  # noqa: BLE001 - forwarded to the parent
        connection.send(NgspiceUnavailable(str(exc)))
    finally:
        connection.close()
        os._exit(0)
