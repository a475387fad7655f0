"""Ctrl-C and SIGTERM in every phase: imports, setup, validation, test, eval.py, predict.py.

Each script installs these handlers first thing, so from then on Ctrl-C exits 130 and SIGTERM 143,
with one line and no traceback. SIGTERM is raised as `Terminated` where the program is, like
Ctrl-C's KeyboardInterrupt, so `finally` blocks run and a file being written is discarded whole
(gradlab.run.files.atomic_file). During training gradlab.run.stopping.GracefulStop takes over (it stops
at the end of the epoch and saves a checkpoint); Lightning's own SIGTERM handler calls these too.
Only the standard library here: it runs before anything heavy is imported.
"""

from __future__ import annotations

import os
import signal
import sys

received: int | None = None  # the stop signal this process received outside training, if any


class Terminated(BaseException):
    """SIGTERM. A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it."""


def _on_sigterm(signum: int, frame) -> None:
    global received
    received = signum
    raise Terminated


def _on_sigint(signum: int, frame) -> None:
    global received
    received = signum
    raise KeyboardInterrupt


def _excepthook(kind, value, tb) -> None:
    """A stop that reaches the top (during the imports, before cli.run): one line and its exit code."""
    if issubclass(kind, (KeyboardInterrupt, Terminated)):
        signum = signal.SIGTERM if issubclass(kind, Terminated) else signal.SIGINT
        print(f"gradlab: stopped by {signal.Signals(signum).name}; nothing is left half-written",
              file=sys.stderr, flush=True)
        os._exit(128 + signum)  # nothing has started that would need cleaning up
    sys.__excepthook__(kind, value, tb)


def install() -> None:
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.excepthook = _excepthook
