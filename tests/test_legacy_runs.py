"""Runs written before gradlab was laid out by concern (tests/fixtures/legacy_runs, made by the code
at f70db90: their checkpoints name gradlab.models.LinearRegressor and gradlab.classifiers.SoftmaxClassifier,
their config.yaml gradlab.data.*, gradlab.plots.*, ...) still load in eval.py, predict.py and resume=true."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from conftest import ROOT, run_script

FIXTURES = ROOT / "tests" / "fixtures" / "legacy_runs"


@pytest.fixture
def old_runs(tmp_path):
    shutil.copytree(FIXTURES / "lightning_logs", tmp_path / "lightning_logs")
    return tmp_path


@pytest.mark.parametrize("name", ["regression", "softmax"])
def test_eval_reports_an_old_runs_own_test_metrics(old_runs, name):
    proc = run_script("eval.py", f"name={name}", cwd=old_runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = json.loads((old_runs / "lightning_logs" / name / "version_0" / "result.json").read_text())
    assert "differs from the one" not in proc.stdout  # the same test split, bit for bit
    printed = float(re.search(r"test/loss \(\w+\) ([-\d.e+]+)", proc.stdout).group(1))
    assert printed == pytest.approx(recorded["test_loss"], rel=1e-6)


def test_predict_with_an_old_regression_checkpoint_gives_its_linear_function(old_runs):
    proc = run_script("predict.py", "name=regression", "x=[0,5]", "output=out.csv", cwd=old_runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = torch.load(old_runs / "lightning_logs/regression/version_0/checkpoints/last.ckpt",
                       weights_only=True)["state_dict"]
    w, b = state["net.lin.weight"].item(), state["net.lin.bias"].item()
    lines = (old_runs / "out.csv").read_text().splitlines()[1:]
    assert [float(line.split(",")[1]) for line in lines] == pytest.approx([b, 5 * w + b], rel=1e-6)


@pytest.mark.parametrize("name,epochs", [("regression", 5), ("softmax", 3)])
def test_resume_continues_an_old_run_with_its_saved_config(old_runs, name, epochs):
    proc = run_script("train.py", f"name={name}", "resume=true", f"trainer.max_epochs={epochs + 2}", cwd=old_runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = old_runs / "lightning_logs" / name / "version_0"
    assert not (old_runs / "lightning_logs" / name / "version_1").exists()  # continued, not started anew
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == epochs + 2  # two more epochs
    assert ckpt["gradlab_model_class"].startswith("gradlab.lessons.")
    assert "gradlab.lessons.data." in (run / "config.yaml").read_text()  # the config names today's classes
