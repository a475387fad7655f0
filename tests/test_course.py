"""The course's lessons 08 (logistic regression) and 11 (softmax and cross-entropy) as gradlab
experiments, checked against the lesson's own plain torch loop on the lesson's own data pipeline
(sklearn's loader, train_test_split, StandardScaler): the numbers gradlab prints are the loop's, on
all three gradient paths and at other learning rates and epoch counts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg
from oracles import course_loop
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from gradlab.run.recipe import train

PATHS = ["automatic", "manual", "analytic"]
# a few float32 ulps: 100 full-batch SGD steps from the same zero weights on the same float32 tensors
CLOSE = {"rtol": 1e-5, "atol": 1e-6}


def course_data(load, binary: bool):
    """The lesson's data, as its code prepares it."""
    X, y = load(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=1234)
    sc = StandardScaler()
    X_train = sc.fit_transform(X_train)
    X_test = sc.transform(X_test)
    X_train = torch.from_numpy(X_train.astype(np.float32))
    X_test = torch.from_numpy(X_test.astype(np.float32))
    if binary:
        y_train = torch.from_numpy(y_train.astype(np.float32)).view(-1, 1)
        y_test = torch.from_numpy(y_test.astype(np.float32)).view(-1, 1)
    else:
        y_train, y_test = torch.from_numpy(y_train), torch.from_numpy(y_test)
    return X_train, y_train, X_test, y_test


COURSE = {  # experiment: (loader, binary, n_classes, the loss's name, lr, epochs as in its YAML)
    "course_logistic": (load_breast_cancer, True, None, "BCE", 0.01, 100),
    "course_softmax": (load_wine, False, 3, "CE", 0.1, 100),
}


def _run(capsys, tmp_path, experiment: str, path: str, *overrides: str):
    result = train(make_cfg(f"experiment={experiment}", "model.init=zeros", f"model.optimization={path}",
                            *overrides, root_dir=tmp_path))
    return result, capsys.readouterr().out


def _weight(result) -> torch.Tensor:
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["state_dict"]["net.lin.weight"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("experiment", list(COURSE))
def test_course_experiment_prints_the_plain_loops_final_loss_and_test_accuracy(experiment, path, capsys, tmp_path):
    load, binary, n_classes, loss_name, lr, epochs = COURSE[experiment]
    loss, accuracy, weight = course_loop(*course_data(load, binary), lr, epochs, n_classes)
    result, out = _run(capsys, tmp_path, experiment, path)

    assert result.metrics["train/final_loss"] == pytest.approx(loss, rel=1e-5)
    assert result.metrics["test/accuracy"] == pytest.approx(accuracy, abs=1e-7)
    torch.testing.assert_close(_weight(result), weight, **CLOSE)
    printed = float(re.search(rf"^Final loss \(train {loss_name}\): (\S+)$", out, re.M).group(1))
    assert printed == pytest.approx(loss, rel=1e-5)
    assert float(re.search(r"^Test accuracy: (\S+) ", out, re.M).group(1)) == pytest.approx(accuracy, abs=1e-6)
    # the course splits are separable: no finite optimum, and the report says so instead of a gap
    assert "the train split is linearly separable" in out


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("experiment,lr,epochs", [("course_logistic", 0.3, 37), ("course_softmax", 0.01, 160)])
def test_course_experiment_matches_the_plain_loop_at_other_rates_and_epochs(experiment, lr, epochs, path, capsys,
                                                                            tmp_path):
    load, binary, n_classes, *_ = COURSE[experiment]
    loss, accuracy, weight = course_loop(*course_data(load, binary), lr, epochs, n_classes)
    result, _ = _run(capsys, tmp_path, experiment, path, f"optimizer.lr={lr}", f"trainer.max_epochs={epochs}",
                     "~callbacks")
    assert result.metrics["train/final_loss"] == pytest.approx(loss, rel=1e-5)
    assert result.metrics["test/accuracy"] == pytest.approx(accuracy, abs=1e-7)
    torch.testing.assert_close(_weight(result), weight, **CLOSE)


@pytest.mark.parametrize("experiment", list(COURSE))
def test_course_experiment_runs_with_fast_dev_run(experiment, tmp_path):
    result = train(make_cfg(f"experiment={experiment}", "trainer.fast_dev_run=true", root_dir=tmp_path))
    assert result.status == "finished"
    assert {"test/loss", "test/accuracy", "test/f1"} <= set(result.metrics)
    assert all(np.isfinite(v) for v in result.metrics.values())


@pytest.mark.parametrize("experiment", list(COURSE))
def test_course_experiment_yaml_says_how_to_run_it_and_which_lesson_it_is(experiment):
    from conftest import CONF

    text = (Path(CONF) / "experiment" / f"{experiment}.yaml").read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    assert f"Run: python scripts/train.py experiment={experiment}" in header
    assert "lesson" in header and "train_test_split(test_size=0.2, random_state=1234)" in header
