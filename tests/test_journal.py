"""Every journal lesson as an experiment, checked against the journal's own plain code (torch,
numpy) or sklearn: the numbers gradlab prints are the numbers the oracle computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF, make_cfg, run_script
from oracles import seeded_split
from sklearn.datasets import make_regression
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.run.recipe import train

EXPERIMENTS = ["journal_numpy", "journal_autograd", "journal_regression", "diabetes"]


def _weights(run_dir: Path) -> tuple[np.ndarray, float]:
    """The final (w, b) of a run, from its last checkpoint; b = 0 without a bias."""
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = state.get("net.lin.bias")
    return state["net.lin.weight"].double().numpy()[0], float(b) if b is not None else 0.0


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_with_fast_dev_run(experiment, tmp_path):
    result = train(make_cfg(f"experiment={experiment}", "trainer.fast_dev_run=true", root_dir=tmp_path))
    assert result.status == "finished"
    assert all(np.isfinite(v) for v in result.metrics.values())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_command_each_experiment_yaml_documents_runs(experiment, tmp_path):
    text = (Path(CONF) / "experiment" / f"{experiment}.yaml").read_text()
    (command,) = [line.split("Run:", 1)[1].split() for line in text.splitlines()
                  if line.startswith("#") and "Run:" in line]
    assert command[:2] == ["python", "scripts/train.py"]
    proc = run_script("train.py", *command[2:], "trainer.fast_dev_run=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # what a reader copies from the file works


# --- "Back Propagation & SGD", numpy snippet: the gradient by formula ------------------------------

X_TOY = np.array([1, 2, 3, 4], dtype=np.float32)
Y_TOY = np.array([2, 4, 6, 8], dtype=np.float32)


def _journal_numpy_gradient(y, y_predicted, x):
    return np.dot(2 * x, (y_predicted - y)).mean()  # as written in the journal


def _true_mean_gradient(y, y_predicted, x):
    return np.mean(2 * x * (y_predicted - y))  # dJ/dw = 1/N sum 2x (w x - y)


def _numpy_loop(gradient, iterations=10, learning_rate=0.01):
    """The journal's numpy snippet, with its gradient(y, y_predicted, x) swapped for `gradient`."""
    w = 0.0
    for _ in range(iterations):
        y_predicted = w * X_TOY
        w -= gradient(Y_TOY, y_predicted, X_TOY) * learning_rate
    return w


def _loss(w):
    return float(((w * X_TOY.astype(np.float64) - Y_TOY) ** 2).mean())


@pytest.mark.parametrize("w", [0.0, 1.2, 3.5])
def test_the_journals_numpy_gradient_is_n_times_the_true_gradient(w):
    x, y = X_TOY.astype(np.float64), Y_TOY.astype(np.float64)
    true = _true_mean_gradient(y, w * x, x)
    h = 1e-6
    finite_difference = (_loss(w + h) - _loss(w - h)) / (2 * h)
    assert true == pytest.approx(finite_difference, rel=1e-6, abs=1e-6)
    # np.dot already sums over the 4 samples; .mean() of that scalar divides by 1, not by N
    assert _journal_numpy_gradient(y, w * x, x) == pytest.approx(len(x) * true, abs=1e-12)


def test_journal_numpy_follows_the_true_mean_gradient(tmp_path, capsys):
    w_true = _numpy_loop(_true_mean_gradient)
    w_journal = _numpy_loop(_journal_numpy_gradient)
    assert abs(w_journal - 2) < abs(w_true - 2)  # the journal's N-times-larger steps land nearer w = 2

    result = train(make_cfg("experiment=journal_numpy", root_dir=tmp_path))
    w, _ = _weights(result.run_dir)
    assert w[0] == pytest.approx(w_true, rel=1e-6)
    out = capsys.readouterr().out
    assert "Prediction before training: f(7) = 0" in out
    assert f"Prediction after training: f(7) = {w_true * 7:.8g}" in out


# --- "Back Propagation & SGD", autograd snippet ----------------------------------------------------


def _journal_autograd_loop():
    """The journal's autograd snippet, verbatim but for the prints: returns (w, f(7))."""
    X = torch.tensor([1, 2, 3, 4], dtype=torch.float32)
    Y = torch.tensor([2, 4, 6, 8], dtype=torch.float32)
    learning_rate = 0.01
    w = torch.tensor(0.0, requires_grad=True)

    def forward(x):
        return w * x

    def loss(y, y_predicted):
        return ((y_predicted - y) ** 2).mean()

    for _ in range(40):
        y_predicted = forward(X)
        lo = loss(Y, y_predicted)
        lo.backward()
        with torch.no_grad():
            w -= w.grad * learning_rate
        w.grad.zero_()
    return w.detach(), forward(7).detach()


def test_journal_autograd_prints_the_plain_loops_w_and_f7(tmp_path, capsys):
    w_ref, f7_ref = _journal_autograd_loop()
    assert (f"{w_ref.item():.8g}", f"{f7_ref.item():.8g}") == ("1.9969954", "13.978968")

    result = train(make_cfg("experiment=journal_autograd", root_dir=tmp_path))
    w, _ = _weights(result.run_dir)
    torch.testing.assert_close(torch.tensor(w[0], dtype=torch.float32), w_ref)  # float32 precision
    out = capsys.readouterr().out
    assert "Prediction before training: f(7) = 0" in out
    assert "Prediction after training: f(7) = 13.978968" in out
    assert "Coefficients learned:       w = 1.9969954" in out


# --- "Linear Regression using pytorch and plotting" ------------------------------------------------


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    """One full journal_regression run (1000 epochs), shared by the tests below."""
    result = train(make_cfg("experiment=journal_regression", root_dir=tmp_path_factory.mktemp("runs")))
    assert result.status == "finished"
    return result


@pytest.fixture(scope="module")
def regression_optimum():
    """sklearn's least squares on the journal's data: all 100 samples, as the journal trains."""
    x, y = make_regression(n_samples=100, n_features=1, noise=20, random_state=1)
    ls = LinearRegression().fit(x, y)
    mse = float(np.mean((ls.predict(x) - y) ** 2))
    return x, y, ls, mse


def test_journal_regression_ends_at_the_least_squares_optimum(regression_run, regression_optimum):
    x, y, ls, optimum = regression_optimum
    w, b = _weights(regression_run.run_dir)
    mse = float(np.mean((x @ w + b - y) ** 2))
    assert mse == pytest.approx(optimum, rel=1e-3)
    assert optimum <= mse  # nothing beats least squares on its own data
    assert w[0] == pytest.approx(ls.coef_[0], rel=1e-4)
    assert b == pytest.approx(ls.intercept_, rel=1e-4)


def test_journal_regression_logs_the_gap_to_the_optimum_going_to_zero(regression_run, regression_optimum):
    optimum = regression_optimum[3]
    events = EventAccumulator(str(regression_run.run_dir), size_guidance={"scalars": 0}).Reload()
    gaps, losses = events.Scalars("train/loss_gap"), events.Scalars("train/loss")
    assert len(gaps) == 100  # 1000 full-batch epochs, logged every 10th step
    assert [g.step for g in gaps] == [s.step for s in losses]
    for g, s in zip(gaps, losses):  # the gap is the loss minus the optimum, on every logged step
        assert g.value == pytest.approx(s.value - optimum, abs=1e-3 + 1e-6 * s.value)
    values = np.array([g.value for g in gaps])
    assert values[0] > 1000  # starts far from the optimum ...
    assert np.all(np.diff(values) <= 1e-3)  # ... full-batch descent on a quadratic never goes up ...
    assert abs(values[-1]) < 1e-3 * optimum  # ... and ends on it
    assert values.min() > -1e-3  # the optimum is a floor


# --- beyond the journal: its last lesson on a real dataset -----------------------------------------


def test_diabetes_reaches_sklearns_test_r2(tmp_path):
    cfg = make_cfg("experiment=diabetes", root_dir=tmp_path)
    result = train(cfg)
    from sklearn.datasets import load_diabetes

    # the split and train-split scaling the README documents, built without gradlab
    split = seeded_split(*load_diabetes(return_X_y=True, scaled=False), cfg.seed, 0.15, 0.15, standardize=True)
    (x, y), (xt, yt) = ((a.double().numpy(), b.double().numpy()[:, 0]) for a, b in (split["train"], split["test"]))
    sklearn_r2 = r2_score(yt, LinearRegression().fit(x, y).predict(xt))

    w, b = _weights(result.run_dir)
    r2 = r2_score(yt, xt @ w + b)
    assert r2 == pytest.approx(sklearn_r2, abs=0.01)
    assert result.metrics["test/r2"] == pytest.approx(r2, abs=1e-4)  # what the run reports
