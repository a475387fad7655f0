"""Shared test helpers: compose a run config like the command line does, or run a script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")


def make_cfg(*overrides: str, root_dir: Path | None = None) -> DictConfig:
    """The config `python scripts/train.py *overrides` would run (root_dir: where runs go)."""
    extra = [f"root_dir={root_dir}"] if root_dir is not None else []
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=[*overrides, "print_config=false", *extra])


def run_script(script: str, *args: str, cwd: Path, timeout: float = 300, env: dict | None = None):
    """Runs scripts/<script> in a subprocess from `cwd`; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


@pytest.fixture
def cfg_in(tmp_path):
    """make_cfg with runs written under this test's tmp_path."""
    return lambda *overrides: make_cfg(*overrides, root_dir=tmp_path / "lightning_logs")
