"""Fault injection for the test suite: a Ctrl-C at a named phase of a long command.

With `SUBGEN_INTERRUPT_AT=<phase>[@<seconds>]`, a command writes the phase's name to the file
named by `SUBGEN_INTERRUPT_READY` when a phase whose name starts with <phase> begins (or that
many seconds into it, while the phase works on), and the test then sends the Ctrl-C, to the whole
process group as a terminal does.  Without a delay the command waits at the phase's start for
that signal, so even a phase of a few milliseconds is hit.  Phases are the names the progress
bars show (generate: "enumerate", "pair", "prune: renaming", ..., "store", "verify"; verify:
"read", "verify", "report").  Unset, as it always is outside the tests, this costs one
environment lookup per phase."""
from __future__ import annotations

import os
import threading
import time

VARIABLE, READY = "SUBGEN_INTERRUPT_AT", "SUBGEN_INTERRUPT_READY"
_armed = True


def phase_started(name: str) -> None:
    global _armed
    spec = os.environ.get(VARIABLE)
    if not spec or not _armed:
        return
    phase, _, after = spec.partition("@")
    if not name.startswith(phase):
        return
    _armed = False

    def announce() -> None:
        with open(os.environ[READY], "w") as f:
            f.write(name)
    if after:
        timer = threading.Timer(float(after), announce)
        timer.daemon = True
        timer.start()
    else:
        announce()
        time.sleep(60)          # the Ctrl-C lands here, at the phase's start
