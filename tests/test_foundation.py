"""The skeleton end to end: every data x optimization combination runs, the paths match a plain
torch loop, a real run writes TensorBoard scalars, and the command line works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_cfg, run_script
from oracles import journal_loop, seeded_split
from sklearn.datasets import make_regression
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.run.recipe import train

DATA = ["toy", "regression", "diabetes", "csv"]
OPTIMIZATIONS = ["automatic", "manual", "analytic"]


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "houses.csv"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = 3 * x[:, 0] - 2 * x[:, 1] + 1 + rng.normal(scale=0.1, size=40)
    rows = ["size,age,price"] + [f"{a:.6f},{b:.6f},{c:.6f}" for (a, b), c in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _data_overrides(data: str, csv_file) -> list[str]:
    return [f"data={data}"] + ([f"data.path={csv_file}", "data.target=price"] if data == "csv" else [])


@pytest.mark.parametrize("optimization", OPTIMIZATIONS)
@pytest.mark.parametrize("data", DATA)
def test_every_data_and_optimization_runs_with_fast_dev_run(data, optimization, csv_file, tmp_path):
    cfg = make_cfg(*_data_overrides(data, csv_file), f"model.optimization={optimization}",
                   "trainer.fast_dev_run=true", root_dir=tmp_path)
    result = train(cfg)
    assert result.status == "finished"
    assert {"test/loss", "test/mae", "test/r2"} <= set(result.metrics)
    assert all(np.isfinite(v) for v in result.metrics.values())


@pytest.mark.parametrize("optimization", ["automatic", "manual", "analytic"])
def test_every_path_matches_the_journals_plain_torch_loop(optimization, tmp_path):
    epochs = 60
    cfg = make_cfg("data=regression", "data.n_features=3", f"model.optimization={optimization}",
                   "model.init=zeros", f"trainer.max_epochs={epochs}", "~logger", "~callbacks", root_dir=tmp_path)
    result = train(cfg)
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    w, b = ckpt["state_dict"]["net.lin.weight"], ckpt["state_dict"]["net.lin.bias"]

    rows = make_regression(n_samples=100, n_features=3, noise=20.0, random_state=1)
    x, y = seeded_split(*rows, cfg.seed)["train"]  # the run's training rows, split without gradlab
    w_ref, b_ref, _ = journal_loop(x, y, torch.zeros(1, 3), torch.zeros(1), 0.01, epochs)[-1]
    assert not torch.equal(w_ref, torch.zeros(1, 3))  # it trained
    torch.testing.assert_close(w, w_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b, b_ref, rtol=1e-5, atol=1e-5)


def test_default_run_learns_the_least_squares_line_and_logs_tensorboard_scalars(tmp_path):
    cfg = make_cfg("model=linear", "trainer.max_epochs=300", root_dir=tmp_path)
    result = train(cfg)
    # oracle: numpy least squares on the same training rows, split without gradlab
    split = seeded_split(*make_regression(n_samples=100, n_features=1, noise=20.0, random_state=1), cfg.seed)
    x, y = (t.double().numpy() for t in split["train"])
    coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["net.lin.weight"].item() == pytest.approx(coef[0, 0], rel=0.01)
    assert state["net.lin.bias"].item() == pytest.approx(coef[1, 0], rel=0.05, abs=0.5)

    events = EventAccumulator(str(result.run_dir), size_guidance={"scalars": 0}).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_gap", "val/loss", "val/r2"} <= tags
    losses = events.Scalars("train/loss")
    assert len(losses) == 30  # 300 full-batch epochs, one point every log_every_n_steps=10
    assert losses[-1].value < losses[0].value / 10
    for name in ("config.yaml", "overrides.yaml", "hparams.yaml", "fit.png"):
        assert (result.run_dir / name).is_file(), name


def test_the_command_line_trains_and_writes_one_run_directory(tmp_path):
    proc = run_script("train.py", "model=linear", "trainer.max_epochs=20", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Prediction before training: f(5) =" in proc.stdout
    assert "Prediction after training: f(5) =" in proc.stdout
    assert "Final loss (train MSE):" in proc.stdout
    runs = list((tmp_path / "lightning_logs").glob("*/version_*"))
    assert [r.relative_to(tmp_path).as_posix() for r in runs] == ["lightning_logs/default/version_0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lightning_logs"]  # no stray outputs/


@pytest.mark.parametrize("optimization", OPTIMIZATIONS)
def test_each_optimization_runs_from_the_command_line_with_fast_dev_run(optimization, tmp_path):
    proc = run_script("train.py", f"model.optimization={optimization}", "trainer.fast_dev_run=true",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Prediction after training" in proc.stdout


def test_help_and_cfg_job_answer_like_hydra(tmp_path):
    helped = run_script("train.py", "--help", cwd=tmp_path)
    assert helped.returncode == 0
    assert "data: breast_cancer, csv, diabetes, digits, iris, labelled_csv, regression, toy, wine" in helped.stdout
    assert "model: cnn, linear, logistic, mlp, softmax" in helped.stdout
    assert "scheduler: step" in helped.stdout
    job = run_script("train.py", "--cfg", "job", "data=toy", cwd=tmp_path)
    assert job.returncode == 0
    assert "_target_: gradlab.lessons.data.ToyDataModule" in job.stdout
    assert not (tmp_path / "lightning_logs").exists()
