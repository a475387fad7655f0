"""Runs gradlab's scripts for the tests as forks of one process that has imported torch and Lightning.

`python scripts/train.py ...` spends 3-4 s importing torch, Lightning and their kin before it reads
its command line, and about 1 s tearing them down; the suite runs a few hundred such commands.
This server imports those third-party libraries once (never gradlab, never a script), then for each
request forks a child that is a script's process in everything the tests look at: its own pid,
working directory, environment (PYTHONPATH's entries on sys.path), argv, stdin from /dev/null,
stdout and stderr into files, signal handlers as the script installs them, its exit code
(sys.exit, os._exit, an uncaught exception, atexit handlers run). The test harness
(tests/conftest.py run_script) uses a fresh interpreter instead wherever start-up itself is under
test (`fresh=True`).

Protocol, one JSON line each way on stdin/stdout: {"argv", "cwd", "env", "out", "err", "timeout"} ->
{"returncode"} (negative: killed by that signal; "timeout": true when it was killed for running long).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

PRELOAD = ["numpy", "torch", "lightning", "lightning.pytorch", "hydra", "omegaconf", "torchmetrics",
           "matplotlib", "sklearn.datasets", "sklearn.model_selection", "pyarrow.csv",
           "torch.utils.tensorboard", "tensorboard.backend.event_processing.event_accumulator", "msgspec", "rich"]


def _child(request: dict) -> None:
    """The forked child: becomes `python argv...` and never returns."""
    import atexit
    import runpy
    import threading
    import traceback

    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        for stream in (sys.stdout, sys.stderr):  # PYTHONUNBUFFERED's effect, as run_script sets it
            stream.reconfigure(line_buffering=True, write_through=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python script` sets it
        added = [entry for entry in request["env"].get("PYTHONPATH", "").split(os.pathsep)
                 if entry and entry not in sys.path]
        sys.path[1:1] = added  # PYTHONPATH's entries come right after the script's folder, as at start-up
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        for thread in threading.enumerate():  # the interpreter waits for non-daemon threads at exit
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF if code >= 0 else 1)


def _serve() -> None:
    for name in PRELOAD:
        __import__(name)
    reply = sys.stdout
    print(json.dumps({"ready": True}), file=reply, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        deadline = time.monotonic() + request["timeout"]
        timed_out = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline and not timed_out:
                os.kill(pid, signal.SIGKILL)
                timed_out = True
            time.sleep(0.005)
        code = os.waitstatus_to_exitcode(status)
        print(json.dumps({"returncode": code, "timeout": timed_out}), file=reply, flush=True)


if __name__ == "__main__":
    _serve()
