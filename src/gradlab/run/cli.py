"""What the scripts share: check the config before heavy imports, and map failures to exit codes.

Exit codes: 0 done; 2 bad config, data or checkpoint, a file gradlab cannot write, or a run another
process writes (a one-paragraph message, no traceback unless HYDRA_FULL_ERROR=1); 3 training diverged;
4 the processes of a run on several nodes could not connect, or lost each other (one line);
128 + signal number when interrupted (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP) or when the
output's reader went away (141, as SIGPIPE); 1 anything unexpected (with its traceback). Hydra's own
errors (an unknown group option or key, bad override syntax) come before any of this: Hydra
prints a one-paragraph message, and `main()` turns its exit 1 into 2.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig

from gradlab.checks.config import ConfigError, check


def main(hydra_main: Callable[[], Any]) -> NoReturn:
    """Runs a script's `@hydra.main` function and exits. Hydra answers a command line it cannot
    compose (`model=transformer`, `trainer.epochs=5`, `optimizer.lr=[1`) with its one-paragraph
    message and sys.exit(1); that is a bad config like any other here, so it exits 2. Hydra's other
    exits (an unexpected error in a job, reported with its traceback) keep their code."""
    from hydra.errors import CompactHydraException

    try:
        hydra_main()
    except ValueError as e:
        # Hydra's answer to two modes at once (`-m ... --cfg job`), raised before any job runs
        if str(e).startswith("Only one of --run, --multirun"):
            fail(f"{e}: --cfg and --info show the config without running it, so they do not go with -m "
                 "(see one job's config: drop -m and give one value each). Nothing was run.", 2)
        raise
    except SystemExit as e:
        # Hydra exits while handling the exception it reported: that one is the context
        if e.code == 1 and isinstance(e.__context__, CompactHydraException):
            exit_now(2)
        raise
    from gradlab.run import signals

    # a sweep whose jobs ran in worker processes and was stopped: its jobs have stopped (saved), and
    # the sweep ends with the stop's code
    exit_now(128 + signals.received if signals.received else 0)


def run(job: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Runs `job(cfg)`; on a known failure prints its message and exits with its code."""
    from gradlab.run import signals

    _from_where_the_command_started()
    if not signals.in_worker():
        return _run(job, cfg)
    if not signals.start_worker_job():
        from gradlab.run.sweeps import job_not_started

        return job_not_started()
    try:
        return _run(job, cfg)
    finally:
        signals.end_worker_job()


def _from_where_the_command_started() -> None:
    """hydra.job.chdir=true runs a job in its output folder; gradlab reads every relative path (data.path,
    root_dir, ckpt_path) and shows every folder from where the command was started, whatever chdir says,
    so that the printed commands work when pasted there. gradlab writes only into its run folder, named
    explicitly, so changing back loses nothing; Hydra returns to its own folder after the job."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and HydraConfig.get().job.chdir:
        os.chdir(HydraConfig.get().runtime.cwd)


def stopped(message: str, signum: int) -> Any:
    """A stop that ends this job: exit 128 + signum after `message`; in a sweep's worker, the end of this job
    only (the sweep's own process ends with that code once every job has stopped: gradlab.run.signals)."""
    from gradlab.run import signals

    if signals.in_worker():
        if message:  # stopped outside training: before it (nothing to continue) or after it
            from gradlab.run.sweeps import record_stopped_job

            print(f"gradlab: {message}", file=sys.stderr, flush=True)
            record_stopped_job()
        return float("nan")  # the objective of a job that did not finish
    if message:
        fail(message, 128 + signum)
    exit_now(128 + signum)


def _run(job: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    try:
        check(cfg)  # before job's module pulls in torch and Lightning
    except ConfigError as e:
        fail(str(e), 2)
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from gradlab.checks.checkpoint import BadCheckpoint, UnsafeCheckpoint
    from gradlab.lessons.csvfile import DataError
    from gradlab.run import nodes, signals, stopping
    from gradlab.run.files import WriteError
    from gradlab.run.rundirs import RunInUse, UnsafeRunFolder
    from gradlab.run.stopping import Diverged

    try:
        return job(cfg)
    except ConfigError as e:
        fail(str(e), 2)
    except Diverged as e:
        fail(f"training diverged: {e}. {_kept(getattr(e, 'run_dir', None))}", 3)
    except (DataError, FileNotFoundError, BadCheckpoint, UnsafeCheckpoint, UnsafeRunFolder, RunInUse,
            WriteError) as e:
        fail(str(e), 2)
    except nodes.NodesLost as e:
        fail(str(e), 4)
    except RuntimeError as e:
        if not nodes.lost(e):  # in a collective: a rank of this run died, or hung past ddp_timeout_s
            raise
        fail(nodes.lost_message(e, nodes.timeout_s(cfg)), 4)
    except BrokenPipeError:
        # the output's reader went away (`python scripts/train.py | head`): stop as SIGPIPE would stop a
        # shell tool, with one line on stderr and no traceback; stdout goes nowhere from here on
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        fail("stopped: the program reading the output closed it (a pipe into head, or a closed viewer)",
             128 + signal.SIGPIPE)
    except OSError as e:
        if e.errno not in _CANNOT_WRITE:
            raise
        # a directory gradlab creates (root_dir, a run's folder) where it cannot: say where
        fail(f"cannot write {e.filename or 'a file'}: {e.strerror}. Pick a writable place (root_dir=..., "
             "output=...) or free some space; nothing was left half-written", 2)
    except (InstantiationException, MisconfigurationException) as e:
        # what the checks above cannot know (e.g. trainer.devices=4 with one GPU)
        fail(f"bad config: {' '.join(str(e).split())}", 2)
    except KeyboardInterrupt:  # Ctrl-C outside training, where it has nothing to save
        return stopped("interrupted (Ctrl-C) outside training; nothing was saved by this step and nothing is "
                       "left half-written", signal.SIGINT)
    except signals.Terminated:  # the same for SIGTERM and SIGHUP (gradlab.run.signals)
        signum = signals.received or signal.SIGTERM
        return stopped(f"stopped by {signal.Signals(signum).name} outside training; nothing was saved by this "
                       "step and nothing is left half-written", signum)
    except SystemExit as e:
        # Lightning answers a Ctrl-C it catches (the second one in training, or one in its validation
        # or test stage) with sys.exit(1)
        if e.code == 1 and stopping.received is not None:
            fail(
                "stopped at once by a second Ctrl-C, without saving a checkpoint; those written "
                "before it, if any, are kept (resume=true continues from the newest last.ckpt)",
                128 + stopping.received,
            )
        if e.code == 1 and signals.received is not None:
            fail("interrupted (Ctrl-C) while Lightning ran a stage; the checkpoints written before it are "
                 "kept and nothing is left half-written", 128 + signals.received)
        raise


def key_values(config_name: str, args: list[str]) -> DictConfig:
    """conf/<config_name>.yaml with `key=value` arguments merged on, for a script that is not a Hydra
    app (compare.py: its `experiment=` is a filter, where Hydra would load the experiment group).
    An argument that is not key=value, or a key the YAML has not, exits 2 naming it."""
    from omegaconf import OmegaConf

    base = OmegaConf.load(Path(__file__).resolve().parents[3] / "conf" / f"{config_name}.yaml")
    for arg in args:
        key = arg.split("=", 1)[0]
        if "=" not in arg or key not in base:
            fail(f"bad argument {arg!r}: give key=value with a key of conf/{config_name}.yaml "
                 f"({', '.join(base)}). Nothing was run or written.", 2)
    try:
        return OmegaConf.merge(base, OmegaConf.from_dotlist(args))
    except Exception as e:  # omegaconf's parse errors: a value it cannot read
        fail(f"bad argument: {' '.join(str(e).split())}. Nothing was run or written.", 2)


_CANNOT_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                 errno.ENOTDIR, errno.EEXIST, errno.EISDIR}


def _kept(run_dir: Path | None) -> str:
    """Which checkpoints a diverged run left behind: each written while the loss was finite."""
    if run_dir is None:
        return ""
    ckpts = sorted(p.name for p in (Path(run_dir) / "checkpoints").glob("*.ckpt"))
    if ckpts:
        return (f"The checkpoints written before it diverged are kept ({', '.join(ckpts)} in "
                f"{run_dir}/checkpoints); TensorBoard shows the run as FAILED (run/status).")
    return (f"No checkpoint had been written yet (callbacks.checkpoint.every_n_epochs sets how often); "
            f"TensorBoard shows the run {run_dir} as FAILED (run/status).")


def fail(message: str, code: int) -> NoReturn:
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    print(f"gradlab: {message}", file=sys.stderr)
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """Exits with `code` the normal way: atexit handlers (a logger's, a launcher's) and buffers run.

    gc.freeze() first: the collector then leaves the objects of torch's and Lightning's import
    graph alone while the interpreter shuts down, which saves most of a second.
    """
    import gc

    gc.freeze()
    sys.exit(code)
