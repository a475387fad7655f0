"""Ctrl-C, SIGTERM and SIGHUP (a closed terminal) in every phase: imports, setup, validation, test,
eval.py, predict.py.

Each script installs these handlers first thing. Until the work starts (imports, config checks:
nothing is written yet) a stop exits at once with one line: raising an exception into torch's
or Lightning's imports can end in a RecursionError or a C++ abort instead. From `raise_from_now_on()`
(the first thing train, evaluate and predict do) a stop is raised where the program is, SIGTERM and
SIGHUP as `Terminated`, like Ctrl-C's KeyboardInterrupt, so `finally` blocks run and a file being
written is discarded whole (gradlab.run.files.atomic_file). During training
gradlab.run.stopping.GracefulStop takes over (it stops at the end of the epoch and saves a
checkpoint). Exit codes: 128 + the signal (130, 143, 129). Errors in background threads (TensorBoard's
writer on a full disk) are one line, not a traceback; the writer raises them again on the main thread.
Only the standard library here: it runs before anything heavy is imported.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

received: int | None = None  # the stop signal this process received outside training, if any
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """SIGTERM or SIGHUP. A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it."""


def _exit_at_once(signum: int, frame) -> None:
    print(f"gradlab: stopped by {signal.Signals(signum).name}; nothing had been written",
          file=sys.stderr, flush=True)
    os._exit(128 + signum)  # nothing has started that would need cleaning up


def _raise(signum: int, frame) -> None:
    global received
    received = signum
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


def _excepthook(kind, value, tb) -> None:
    """A stop that reaches the top (before cli.run): one line and its exit code."""
    if issubclass(kind, (KeyboardInterrupt, Terminated)):
        signum = received or (signal.SIGINT if issubclass(kind, KeyboardInterrupt) else signal.SIGTERM)
        print(f"gradlab: stopped by {signal.Signals(signum).name}; nothing is left half-written",
              file=sys.stderr, flush=True)
        os._exit(128 + signum)
    sys.__excepthook__(kind, value, tb)


def _thread_excepthook(args) -> None:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        threading.__excepthook__(args)
        return
    where = f" ({args.exc_value.filename})" if getattr(args.exc_value, "filename", None) else ""
    print(f"gradlab: a background thread ({args.thread.name if args.thread else '?'}) failed: "
          f"{args.exc_type.__name__}: {args.exc_value}{where}", file=sys.stderr, flush=True)


def install() -> None:
    for signum in STOPS:
        signal.signal(signum, _exit_at_once)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook


def raise_from_now_on() -> None:
    """From here on something may be written: a stop is raised, so it is cleaned up on the way out.
    Only where install() ran (a script's process), and only in the main thread."""
    if sys.excepthook is _excepthook and threading.current_thread() is threading.main_thread():
        for signum in STOPS:
            signal.signal(signum, _raise)
