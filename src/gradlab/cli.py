"""What the scripts share: check the config before heavy imports, map failures to exit codes,
and exit without tearing down the import graph.

Exit codes: 0 done; 2 bad config, data or checkpoint (a one-paragraph message, no traceback
unless HYDRA_FULL_ERROR=1); 3 training diverged; 128 + signal number when interrupted
(130 for Ctrl-C, 143 for SIGTERM); 1 anything unexpected (with its traceback).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from omegaconf import DictConfig

from gradlab.config import ConfigError, check


def run(job: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Runs `job(cfg)`; on a known failure prints its message and exits with its code."""
    try:
        check(cfg)  # before job's module pulls in torch and Lightning
    except ConfigError as e:
        fail(str(e), 2)
    from gradlab.data import DataError
    from gradlab.models import Diverged

    try:
        return job(cfg)
    except Diverged as e:
        fail(f"training diverged: {e}. The last finite checkpoint is kept.", 3)
    except (DataError, FileNotFoundError, BadCheckpoint) as e:
        fail(str(e), 2)


class BadCheckpoint(ValueError):
    """A checkpoint file that is not a gradlab checkpoint, or is corrupt or unsafe to load."""


def fail(message: str, code: int) -> NoReturn:
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    print(f"gradlab: {message}", file=sys.stderr)
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """Exits at once: tearing down torch's and Lightning's import graph takes about a second.

    Only call this once results are on disk: loggers are finalized by the Trainer, and what is
    buffered here (stdout, stderr, logging handlers) is flushed first.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
