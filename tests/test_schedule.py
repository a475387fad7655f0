"""scheduler=step (the course's lesson 15's StepLR) for every model and path: its rates against
torch.optim.lr_scheduler.StepLR stepped by hand, and a resume in the middle of the schedule."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.run.recipe import train

SCHEDULE = ["scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.5"]


def _step_lr_by_hand(lr: float, step_size: int, gamma: float, epochs: int) -> list[float]:
    """The rate after each epoch, as the lesson's loop sees it: StepLR stepped once an epoch."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    rates = []
    for _ in range(epochs):
        optimizer.step()  # (a training epoch)
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def _last_state(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.parametrize("overrides", [
    ["model=linear", "data=toy", "optimizer.lr=0.1"],
    ["model=mlp", "data=digits", "model.hidden=[8]", "model.optimization=manual", "optimizer.lr=0.1"],
    ["model=cnn", "data=digits", "model.channels=[2]", "model.hidden=[]", "optimizer.lr=0.1",
     "+trainer.limit_train_batches=2"],
], ids=["linear_automatic", "mlp_manual", "cnn"])
def test_the_rates_are_torchs_steplr_stepped_by_hand(overrides, tmp_path):
    result = train(make_cfg(*overrides, *SCHEDULE, "trainer.max_epochs=7", "~callbacks", root_dir=tmp_path))
    expected = _step_lr_by_hand(0.1, 2, 0.5, 7)  # 0.1, 0.05, 0.05, 0.025, ...
    logged = EventAccumulator(str(result.run_dir)).Reload().Scalars("train/lr")
    assert [e.value for e in logged] == pytest.approx(expected, rel=1e-6)
    assert _last_state(result.run_dir)["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(
        expected[-1], rel=1e-12)


def test_a_run_resumed_in_the_middle_of_the_schedule_ends_with_the_uninterrupted_runs_weights_and_rate(tmp_path):
    common = ["model=linear", "data=toy", "optimizer.lr=0.1", "scheduler=step", "scheduler.step_size=3",
              "scheduler.gamma=0.5", "~callbacks"]
    train(make_cfg(*common, "name=resumed", "trainer.max_epochs=4", root_dir=tmp_path))
    resumed = train(make_cfg(*common, "name=resumed", "trainer.max_epochs=9", "resume=true", root_dir=tmp_path))
    whole = train(make_cfg(*common, "name=whole", "trainer.max_epochs=9", root_dir=tmp_path))
    a, b = _last_state(resumed.run_dir), _last_state(whole.run_dir)
    for key in b["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["optimizer_states"][0]["param_groups"][0]["lr"] == b["optimizer_states"][0]["param_groups"][0]["lr"]
    assert a["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_a_new_lr_on_a_resume_with_a_schedule_is_refused_with_exit_2(tmp_path):
    common = ["model=linear", "data=toy", "scheduler=step", "~callbacks"]
    first = run_script("train.py", *common, "trainer.max_epochs=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = run_script("train.py", *common, "trainer.max_epochs=4", "resume=true", "optimizer.lr=0.5", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "optimizer.lr=0.5" in out and "schedule" in out and "Traceback" not in out
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
