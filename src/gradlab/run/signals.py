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

A sweep whose jobs run in worker processes (hydra/launcher=joblib) stops gently: the first stop tells
every worker (a Ctrl-C at a terminal reaches them anyway; a `kill` of the sweep's process does not), each
running job ends its epoch with a checkpoint and prints its continue command, a job that had not
started is not started, and the sweep's process waits for them, then exits 128 + the signal. A second
Ctrl-C stops everything at once. Only the standard library here: it runs before anything heavy is
imported.
"""

from __future__ import annotations

import contextlib
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


def in_worker() -> bool:
    """Whether this process runs sweep jobs for a parallel launcher (joblib's workers): a process
    where no script installed these handlers, running a sweep job."""
    if sys.excepthook is _excepthook:
        return False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _stop_the_workers(signum: int, frame) -> None:
    global received
    if received is not None:
        if signum == signal.SIGINT:  # a second Ctrl-C: at once, as in a single run
            _raise(signum, frame)
        return
    received = signum
    print(f"\ngradlab: received {signal.Signals(signum).name}; the sweep stops: each running job ends its epoch "
          "with a checkpoint,\ngradlab: and no new job starts (Ctrl-C again to stop at once)", flush=True)
    threading.Thread(target=_tell_the_workers, name="gradlab-stop", daemon=True).start()


def _tell_the_workers() -> None:
    """SIGTERM, not the signal itself, to each worker: one reached by the terminal's Ctrl-C as well must
    not take it for a second Ctrl-C (gradlab.run.stopping.GracefulStop lets a repeated SIGTERM pass).
    Only to a worker that handles SIGTERM (its job has begun, or it waits for the next: gradlab's handlers
    are in place), and again as workers get there: a worker still starting up would die of it, and the
    launcher would end the sweep with a traceback. Where there is no /proc to tell, to every worker."""
    import multiprocessing
    import time

    if not os.path.isdir("/proc"):
        for worker in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(worker.pid, signal.SIGTERM)
        return
    told: set[int] = set()
    while True:  # a daemon thread: it ends with the sweep's process
        for pid in set(_children_handling_sigterm()) - told:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            told.add(pid)
        time.sleep(0.2)


def _children_handling_sigterm() -> list[int]:
    """This process's children with a handler for SIGTERM (Linux: /proc/<pid>/status, PPid and SigCgt)."""
    pids = []
    for status in os.scandir("/proc"):
        if not status.name.isdigit():
            continue
        try:
            with open(f"/proc/{status.name}/status") as f:
                fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
            if int(fields["PPid"]) == os.getpid() and int(fields["SigCgt"], 16) >> (signal.SIGTERM - 1) & 1:
                pids.append(int(status.name))
        except (OSError, KeyError, ValueError):
            continue  # ended meanwhile
    return pids


def stop_workers_gently() -> None:
    """In a sweep's own process when its jobs run in worker processes (see the module's docstring)."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOPS:
            signal.signal(signum, _stop_the_workers)


def _remember(signum: int, frame) -> None:
    global received
    received = received or signum


def start_worker_job() -> bool:
    """At the start of a sweep job in a worker: False when the sweep was stopped before it (the job is
    not started); otherwise a stop from here on is raised as in a script (raise_from_now_on)."""
    from gradlab.run import stopping

    if received is not None or stopping.received is not None:
        return False
    for signum in STOPS:
        signal.signal(signum, _raise_once)
    return True


def _raise_once(signum: int, frame) -> None:
    """_raise, once: the terminal's Ctrl-C and the SIGTERM the sweep's process passes on are one stop,
    and a second exception would escape the job's own clean-up into the launcher."""
    if received is None:
        _raise(signum, frame)


def end_worker_job() -> None:
    """After a sweep job in a worker, until its next job: a stop is remembered, so that no job starts
    after it, and never raised into the launcher's own code."""
    for signum in STOPS:
        signal.signal(signum, _remember)


def raise_from_now_on() -> None:
    """From here on something may be written: a stop is raised, so it is cleaned up on the way out.
    Only where install() ran (a script's process), and only in the main thread."""
    if sys.excepthook is _excepthook and threading.current_thread() is threading.main_thread():
        for signum in STOPS:
            signal.signal(signum, _raise)
