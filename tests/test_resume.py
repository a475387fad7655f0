"""Resume: a run stopped and continued with resume=true ends with exactly the weights of a run that
was never stopped, in the same run directory and TensorBoard run, shuffled mini-batches included."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, make_cfg, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.run.recipe import train

# shuffled mini-batches of 16 (5 steps per epoch): the order must depend on (seed, epoch) only
MINI_BATCHES = ["data.batch_size=16", "data.shuffle=true", "trainer.log_every_n_steps=1",
                "trainer.check_val_every_n_epoch=5", "callbacks.checkpoint.every_n_epochs=5"]


def _state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def _curve(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _event_dirs(root: Path) -> set[Path]:
    return {p.parent for p in root.rglob("events.out.tfevents.*")}


@pytest.mark.filterwarnings("ignore:Checkpoint directory")  # resuming into its own checkpoints/
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    logs = tmp_path / "lightning_logs"
    first = train(make_cfg(*MINI_BATCHES, "name=resumed", "trainer.max_epochs=15", root_dir=logs))
    resumed = train(make_cfg(*MINI_BATCHES, "name=resumed", "trainer.max_epochs=30", "resume=true",
                             root_dir=logs))
    whole = train(make_cfg(*MINI_BATCHES, "name=whole", "trainer.max_epochs=30", root_dir=logs))

    assert resumed.run_dir == first.run_dir == logs / "resumed" / "version_0"
    a, b = _state(resumed.run_dir), _state(whole.run_dir)
    assert a["global_step"] == b["global_step"] == 30 * 5
    for key in b["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key  # bit for bit
    # one TensorBoard run whose curve is the uninterrupted run's curve, step for step
    assert _event_dirs(logs / "resumed") == {resumed.run_dir}
    assert _curve(resumed.run_dir, "train/loss") == _curve(whole.run_dir, "train/loss")
    assert _curve(resumed.run_dir, "val/loss") == _curve(whole.run_dir, "val/loss")
    assert resumed.metrics["test/loss"] == whole.metrics["test/loss"]
    checkpoints = sorted(p.name for p in (resumed.run_dir / "checkpoints").iterdir())
    assert checkpoints[-1] == "last.ckpt" and checkpoints[0].startswith("best-epoch=")  # best on val/loss


@pytest.mark.slow
def test_ctrl_c_then_resume_true_on_the_command_line_matches_an_uninterrupted_run(tmp_path):
    """A real Ctrl-C (SIGINT) mid-training: the run stops at the end of its epoch, exits 130 and
    tells how to continue; resume=true with a later max_epochs ends where a run never stopped does."""
    args = [*MINI_BATCHES, "callbacks.checkpoint.every_n_epochs=1", "callbacks.last.every_n_epochs=1",
            "print_config=false"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args, "trainer.max_epochs=100000"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    run_dir = tmp_path / "lightning_logs" / "default" / "version_0"
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.ckpt").exists():  # training is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume=true" in out
    stopped = _state(run_dir)["epoch"]
    assert 1 <= stopped < 300

    epochs = stopped + 10  # continue past the stop, whatever epoch it was
    again = run_script("train.py", *args, f"trainer.max_epochs={epochs}", "resume=true", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "run dir lightning_logs/default/version_0" in again.stdout
    whole = train(make_cfg(*MINI_BATCHES, f"trainer.max_epochs={epochs}", root_dir=tmp_path / "whole"))
    a, b = _state(run_dir), _state(whole.run_dir)
    assert a["global_step"] == b["global_step"] == epochs * 5
    for key in b["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert _event_dirs(tmp_path / "lightning_logs") == {run_dir}
    assert _curve(run_dir, "train/loss") == _curve(whole.run_dir, "train/loss")


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("change, said", [
    # its own run: the difference from the run's config.yaml (gradlab.resume), before a model is built
    (["data.n_features=3", "resume=true"], ["resume: this command line changes what the run",
                                            "data.n_features: 1 in the run, 3 now"]),
    # a file outside any run has no config.yaml to compare with: its weights against the model
    (["model.bias=false", "ckpt_path=copy.ckpt"], ["the checkpoint has net.lin.bias",
                                                  "bias=True there, bias=False here",
                                                  "its weights do not fit the model this config builds"]),
])
def test_a_checkpoint_the_config_cannot_take_exits_2_before_anything_is_written(tmp_path, change, said):
    first = run_script("train.py", "trainer.max_epochs=3", "print_config=false", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    last = tmp_path / "lightning_logs" / "default" / "version_0" / "checkpoints" / "last.ckpt"
    (tmp_path / "copy.ckpt").write_bytes(last.read_bytes())  # outside any run: would start a new run dir
    before = _files(tmp_path)
    proc = run_script("train.py", "trainer.max_epochs=6", "print_config=false", *change, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and all(s in proc.stderr for s in said), proc.stderr
    assert _files(tmp_path) == before  # no new run dir, no event file, no checkpoint touched


@pytest.mark.parametrize("how", [
    "resume=true",
    pytest.param("ckpt_path=lightning_logs/default/version_0/checkpoints/last.ckpt", marks=pytest.mark.slow),
    pytest.param("ckpt_path=copy.ckpt", marks=pytest.mark.slow),
])
def test_a_continued_run_says_what_it_continues_and_predicts_first_with_the_restored_weights(tmp_path, how):
    first = run_script("train.py", "trainer.max_epochs=30", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    last = tmp_path / "lightning_logs" / "default" / "version_0" / "checkpoints" / "last.ckpt"
    (tmp_path / "copy.ckpt").write_bytes(last.read_bytes())  # outside any run: a new run from its weights
    state = torch.load(last, weights_only=True)["state_dict"]  # oracle: f(5) of the checkpoint's weights
    f5 = 5 * state["net.lin.weight"].item() + state["net.lin.bias"].item()

    proc = run_script("train.py", "trainer.max_epochs=50", how, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    if how == "ckpt_path=copy.ckpt":
        assert "gradlab: a new run from the weights of epoch 30 of\n  copy.ckpt" in proc.stdout
    else:
        assert ("gradlab: continuing lightning_logs/default/version_0 from epoch 30\n"
                "  (checkpoint checkpoints/last.ckpt)") in proc.stdout
    before = float(proc.stdout.split("Prediction before training: f(5) = ")[1].split()[0])
    assert before == pytest.approx(f5, rel=1e-6)  # the restored model, not a fresh initialisation
    assert "gradlab: finished 20 more epochs (31 to 50) in " in proc.stdout
