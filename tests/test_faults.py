"""Faults and hostile files, through the command line (README "What happens when things go wrong"):
paths stay inside root_dir, a checkpoint is data, every file gradlab writes is complete or absent,
one process writes a run, and TensorBoard curves continue cleanly after a kill -9."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.safety import LOCK_NAME, AtomicCheckpointIO

QUICK = ["trainer.max_epochs=3", "print_config=false"]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under root with its size and mtime: what "nothing touched" compares."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def _refused(proc, *phrases: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    for phrase in phrases:
        assert phrase in out, (phrase, out)
    return out


# -- 1. paths stay home -------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["train.py", "eval.py", "predict.py"])
@pytest.mark.parametrize("name", ["../../elsewhere", "/tmp/gradlab-absolute", "a/b", "..", ".", "''", "' x'",
                                  "a\\\\b"])
def test_a_name_that_is_not_one_path_component_is_refused_and_nothing_is_written(script, name, tmp_path):
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    proc = run_script(script, f"name={name}", cwd=cwd)
    _refused(proc, "bad config value name=", "a single directory name")
    assert _files(tmp_path) == {"work": _files(tmp_path)["work"], "work/here": _files(tmp_path)["work/here"]}
    assert not Path("/tmp/gradlab-absolute").exists()
