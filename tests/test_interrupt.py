"""Ctrl-C (SIGINT) and SIGTERM sent to a real `scripts/train.py` during training: the run stops at
the end of that epoch, saves a checkpoint, leaves its TensorBoard files whole, exits 130 / 143, and
`resume=true` then reaches exactly the weights of a run that was never interrupted."""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

# 320 training rows in shuffled mini-batches of 4 (80 steps an epoch), SGD with momentum (so the
# optimiser has state to restore): long enough to be interrupted, short enough to finish.
RUN = ["data.n_samples=400", "data.batch_size=4", "optimizer.lr=0.001", "optimizer.momentum=0.9",
       "trainer.max_epochs=30", "print_config=false"]
STARTED = "gradlab: training;"  # printed once the stop-at-epoch-end handlers are in place


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *RUN, *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_until_training(proc: subprocess.Popen) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(STARTED):
            return lines
    raise AssertionError("training never started:\n" + "".join(lines))


def _finish(proc: subprocess.Popen, lines: list[str]) -> str:
    rest, _ = proc.communicate(timeout=300)
    return "".join(lines) + rest




def _records_intact(path: Path) -> int:
    """Reads a TensorBoard event file record by record, checking every length and CRC."""
    data, pos, n = path.read_bytes(), 0, 0
    while pos < len(data):
        assert pos + 12 <= len(data), f"{path.name}: truncated record header at byte {pos}"
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[pos + 8 : pos + 12])[0] == masked_crc32c(header), path.name
        body = data[pos + 12 : pos + 12 + length]
        assert len(body) == length and pos + 16 + length <= len(data), f"{path.name}: truncated record"
        assert struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])[0] == masked_crc32c(body)
        event_pb2.Event.FromString(body)
        pos, n = pos + 16 + length, n + 1
    return n


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same run, never interrupted; its final checkpoint and training time."""
    cwd = tmp_path_factory.mktemp("reference")
    proc = _start(cwd, "name=reference")
    lines = _wait_until_training(proc)
    started = time.time()
    out = _finish(proc, lines)
    assert proc.returncode == 0, out
    last = cwd / "lightning_logs/reference/version_0/checkpoints/last.ckpt"  # written as training ends
    return torch.load(last, weights_only=True), last.stat().st_mtime - started


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])  # random moments
def test_a_signal_during_training_saves_a_checkpoint_and_resume_reaches_the_uninterrupted_weights(
    signum, uninterrupted, tmp_path
):
    reference, seconds = uninterrupted
    seed = random.randrange(2**32)
    delay = random.Random(seed).uniform(0.02, 0.4) * seconds  # a random point early enough in training
    proc = _start(tmp_path, "name=run")
    lines = _wait_until_training(proc)
    time.sleep(delay)
    proc.send_signal(signum)
    out = _finish(proc, lines)
    where = f"(signal {signum.name} {delay:.2f} s into training; random seed {seed})\n{out}"

    assert proc.returncode == 128 + signum, where
    assert "Traceback" not in out, where
    assert f"received {signum.name}; stopping at the end of this epoch" in out, where
    assert "interrupted at epoch" in out and "resume=true" in out, where
    run_dir = tmp_path / "lightning_logs" / "run" / "version_0"
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 80 * saved["epoch"], where  # at an epoch boundary: epochs done x 80 steps
    events = sorted(run_dir.glob("events.out.tfevents.*"))
    assert events and all(_records_intact(p) > 0 for p in events), where
    scalars = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    # the loss curve reaches the stop (log_every_n_steps=10): the logger's buffered events were written
    last_logged = max(e.step for e in scalars.Scalars("train/loss"))
    assert saved["global_step"] - 10 <= last_logged <= saved["global_step"], where

    resumed = run_script("train.py", *RUN, "name=run", "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, where + resumed.stdout + resumed.stderr
    assert not (tmp_path / "lightning_logs" / "run" / "version_1").exists()  # continued in place
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (reference["epoch"], reference["global_step"])
    for key, value in reference["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), f"{key} differs {where}"
    momentum = [s["momentum_buffer"] for s in reference["optimizer_states"][0]["state"].values()]
    resumed_momentum = [s["momentum_buffer"] for s in final["optimizer_states"][0]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, resumed_momentum)), where
    assert all(_records_intact(p) > 0 for p in run_dir.glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_with_exit_code_130(tmp_path):
    proc = _start(tmp_path, "data.batch_size=2", "trainer.max_epochs=1000")
    lines = _wait_until_training(proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out = _finish(proc, lines)
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert "gradlab: stopped at once by a second Ctrl-C" in out or "interrupted (Ctrl-C)" in out, out
