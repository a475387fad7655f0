"""Shared test helpers: compose a run config like the command line does, or run a script."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
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


# read after start-up (the fork server puts PYTHONPATH on sys.path itself)
FORKABLE_ENV = {"PYTHONPATH", "HYDRA_FULL_ERROR"}


def run_script(script: str, *args: str, cwd: Path, timeout: float = 300, env: dict | None = None,
               fresh: bool = False) -> subprocess.CompletedProcess:
    """Runs scripts/<script> in a process of its own from `cwd`; returns the CompletedProcess.

    The process is a fork of tests/forkserver.py (torch and Lightning already imported), unless
    `fresh`, `env` sets anything but FORKABLE_ENV (the rest may change how Python or torch start) or
    GRADLAB_TEST_FRESH=1 is set: then it is a new interpreter, as on the command line.
    """
    argv = [str(ROOT / "scripts" / script), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if fresh or set(env or {}) - FORKABLE_ENV or os.environ.get("GRADLAB_TEST_FRESH") == "1":
        return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=full_env)
    server = _forkserver()
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        request = {"argv": argv, "cwd": str(cwd), "env": full_env, "out": out, "err": err, "timeout": timeout}
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        reply = json.loads(server.stdout.readline())
        stdout, stderr = (Path(f).read_text(errors="replace") for f in (out, err))
    if reply["timeout"]:
        raise subprocess.TimeoutExpired([sys.executable, *argv], timeout, stdout, stderr)
    return subprocess.CompletedProcess([sys.executable, *argv], reply["returncode"], stdout, stderr)


_server: subprocess.Popen | None = None


def _forkserver() -> subprocess.Popen:
    """This test process's fork server, started on first use."""
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "forkserver.py")], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert json.loads(_server.stdout.readline()) == {"ready": True}
        atexit.register(_server.stdin.close)  # the server ends when its input does
    return _server


@pytest.fixture
def cfg_in(tmp_path):
    """make_cfg with runs written under this test's tmp_path."""
    return lambda *overrides: make_cfg(*overrides, root_dir=tmp_path / "lightning_logs")
