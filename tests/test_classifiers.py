"""Logistic and softmax regression against independent oracles: finite differences for the
closed-form gradient, sklearn's metrics for accuracy, F1 and the loss, scipy's optimiser for the
optimum, sklearn's classifiers for separability; every new data option runs; eval.py and
predict.py work for a classifier; bad input exits 2 naming what is wrong."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg, run_script
from scipy.optimize import minimize
from scipy.special import expit, log_softmax
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from gradlab.lessons.classifiers import LogisticClassifier, SoftmaxClassifier
from gradlab.lessons.data import BreastCancerDataModule, IrisDataModule, WineDataModule
from gradlab.run.recipe import train

# --------------------------------------------------------------- the loss, written out in numpy


def bce(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    p = expit(x @ weight.T + bias)[:, 0]
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def ce(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(log_softmax(x @ weight.T + bias, axis=1)[np.arange(len(y)), y]))


def _model(kind: str, n_features: int, n_classes: int, bias: bool):
    if kind == "logistic":
        return LogisticClassifier(n_features, optimizer=None, bias=bias)
    return SoftmaxClassifier(n_features, n_classes, optimizer=None, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind,n_classes", [("logistic", 2), ("softmax", 2), ("softmax", 4)])
def test_analytic_gradient_equals_finite_differences_of_the_loss(kind, n_classes, bias):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(25, 3, generator=g, dtype=torch.float64)
    index = torch.randint(0, n_classes, (25,), generator=g)
    model = _model(kind, 3, n_classes, bias).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    y = index.double()[:, None] if kind == "logistic" else index
    with torch.no_grad():
        model.write_gradient(x, model.probabilities(model(x)), model.one_hot(y))

    loss = bce if kind == "logistic" else ce
    w = model.net.lin.weight.detach().numpy().copy()
    b = model.net.lin.bias.detach().numpy().copy() if bias else np.zeros(len(w))
    xs, ys = x.numpy(), index.numpy()
    h = 1e-6
    numeric_w = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        up, down = w.copy(), w.copy()
        up[i] += h
        down[i] -= h
        numeric_w[i] = (loss(up, b, xs, ys) - loss(down, b, xs, ys)) / (2 * h)
    np.testing.assert_allclose(model.net.lin.weight.grad.numpy(), numeric_w, rtol=1e-6, atol=1e-8)
    if bias:
        numeric_b = np.array([(loss(w, b + h * e, xs, ys) - loss(w, b - h * e, xs, ys)) / (2 * h)
                              for e in np.eye(len(b))])
        np.testing.assert_allclose(model.net.lin.bias.grad.numpy(), numeric_b, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------- metrics: sklearn's on the same predictions


@pytest.mark.parametrize("experiment", ["course_logistic", "course_softmax"])
def test_test_metrics_equal_sklearns_on_the_models_predictions(experiment, tmp_path):
    # a short run from PyTorch's random init, in uneven batches of 16: imperfect predictions, and the
    # metrics must be over the whole split, not a mean of batch means
    result = train(make_cfg(f"experiment={experiment}", "trainer.max_epochs=2", "optimizer.lr=0.001",
                            "data.batch_size=16", "~callbacks", root_dir=tmp_path))
    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    w, b = state["net.lin.weight"].double().numpy(), state["net.lin.bias"].double().numpy()
    load = load_breast_cancer if experiment == "course_logistic" else load_wine
    X, y = load(return_X_y=True)
    X_train, X_test, _, y_test = train_test_split(X, y, test_size=0.2, random_state=1234)
    X_test = StandardScaler().fit(X_train).transform(X_test).astype(np.float32).astype(np.float64)
    scores = X_test @ w.T + b
    if experiment == "course_logistic":
        p = expit(scores[:, 0])
        predicted, average, probabilities = (p > 0.5).astype(int), "binary", p
    else:
        probabilities = np.exp(log_softmax(scores, axis=1))
        predicted, average = probabilities.argmax(1), "macro"
    assert accuracy_score(y_test, predicted) < 1  # not a trivial case
    assert result.metrics["test/accuracy"] == pytest.approx(accuracy_score(y_test, predicted), abs=1e-6)
    assert result.metrics["test/f1"] == pytest.approx(f1_score(y_test, predicted, average=average), abs=1e-6)
    assert result.metrics["test/loss"] == pytest.approx(log_loss(y_test, probabilities), rel=1e-5)


# --------------------------------------------------------------- the optimum, and separable splits


def _write_csv(path: Path, header: list[str], rows) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _overlapping(n_classes: int, n: int = 120, seed: int = 0):
    """Gaussian blobs close together: no line separates any class, so a finite optimum exists."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n_classes, n)
    x = rng.normal(size=(n, 2)) + 0.6 * np.stack([np.cos(index), np.sin(index)], 1)
    return x, index


@pytest.mark.parametrize("kind,n_classes", [("logistic", 2), ("softmax", 3)])
def test_best_fit_is_the_minimum_of_the_loss_where_one_exists(kind, n_classes):
    x, index = _overlapping(n_classes)
    model = _model(kind, 2, n_classes, bias=True)
    xt = torch.from_numpy(x).float()
    y = torch.from_numpy(index).float()[:, None] if kind == "logistic" else torch.from_numpy(index)
    best = model.best_fit(xt, y)
    assert model.separation(xt, y) is None and best is not None

    k = 1 if kind == "logistic" else n_classes
    loss = bce if kind == "logistic" else ce
    x64 = xt.double().numpy()
    oracle = minimize(lambda v: loss(v[: 2 * k].reshape(k, 2), v[2 * k:], x64, index), np.zeros(3 * k),
                      method="BFGS", options={"gtol": 1e-10})
    assert best["loss"] == pytest.approx(oracle.fun, rel=1e-7)


def test_the_course_splits_are_found_separable_and_iris_in_part():
    # an oracle for "separable": some linear classifier gets every training row right
    for dm_cls, model in ((BreastCancerDataModule, LogisticClassifier(30, None)),
                          (WineDataModule, SoftmaxClassifier(13, 3, None))):
        dm = dm_cls(labels=model.labels, split="train_test_split", val_fraction=0.0, test_fraction=0.2, seed=1234)
        dm.setup()
        x, y = dm.splits["train"]
        perfect = LogisticRegression(C=1e10, max_iter=100_000).fit(x.numpy(), y.reshape(-1).numpy())
        assert perfect.score(x.numpy(), y.reshape(-1).numpy()) == 1.0
        assert model.separation(x, y) == "complete" and model.best_fit(x, y) is None
    # iris: setosa lies apart from the other two (a perfect one-vs-rest line), the other two overlap
    dm = IrisDataModule()
    dm.setup()
    x, y = dm.splits["train"]
    setosa = (y == 0).numpy()
    assert LogisticRegression(C=1e10, max_iter=100_000).fit(x.numpy(), setosa).score(x.numpy(), setosa) == 1.0
    rest = ~setosa
    two = LogisticRegression(C=1e10, max_iter=100_000).fit(x.numpy()[rest], y.numpy()[rest])
    assert two.score(x.numpy()[rest], y.numpy()[rest]) < 1.0
    assert SoftmaxClassifier(4, 3, None).separation(x, y) == "partial"


def test_the_report_prints_the_optimum_where_one_exists(tmp_path, capsys):
    x, index = _overlapping(2)
    path = _write_csv(tmp_path / "blobs.csv", ["a", "b", "label"],
                      [[f"{u:.9g}", f"{v:.9g}", ["no", "yes"][c]] for (u, v), c in zip(x, index)])
    train(make_cfg("model=logistic", "data=labelled_csv", f"data.path={path}", "data.target=label",
                   "trainer.max_epochs=50", "~callbacks", root_dir=tmp_path / "runs"))
    out = capsys.readouterr().out
    assert "Optimum (sklearn LogisticRegression(C=inf)): train BCE" in out
    assert "separable" not in out


# --------------------------------------------------------------- every data option runs

DATA_OPTIONS = [("breast_cancer", "logistic"), ("breast_cancer", "softmax"), ("wine", "softmax"),
                ("iris", "softmax"), ("labelled_csv", "softmax"), ("labelled_csv", "logistic")]


@pytest.mark.parametrize("optimization", ["automatic", "manual", "analytic"])
@pytest.mark.parametrize("data,model", DATA_OPTIONS)
def test_every_class_data_option_runs_with_fast_dev_run(data, model, optimization, tmp_path):
    extra = []
    if data == "labelled_csv":
        x, index = _overlapping(3 if model == "softmax" else 2)
        labels = (["setosa", "versicolor", "virginica"] if model == "softmax" else [0, 1])
        path = _write_csv(tmp_path / "own.csv", ["u", "v", "kind"],
                          [[u, v, labels[c]] for (u, v), c in zip(x, index)])
        extra = [f"data.path={path}", "data.target=kind"]
    result = train(make_cfg(f"data={data}", f"model={model}", f"model.optimization={optimization}", *extra,
                            "trainer.fast_dev_run=true", root_dir=tmp_path / "runs"))
    assert {"test/loss", "test/accuracy", "test/f1"} <= set(result.metrics)
    assert all(np.isfinite(v) for v in result.metrics.values())


# --------------------------------------------------------------- eval.py and predict.py


def test_eval_and_predict_work_for_a_trained_classifier(tmp_path):
    result = train(make_cfg("experiment=course_logistic", "trainer.max_epochs=20", "~callbacks.plots",
                            root_dir=tmp_path / "lightning_logs"))
    evaluated = run_script("eval.py", "name=course_logistic", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"test/accuracy {result.metrics['test/accuracy']:.8g}" in evaluated.stdout

    # three raw rows of the data, with their true labels: predict standardises them as in training
    bunch = load_breast_cancer()
    rows = bunch.data[:3]
    _write_csv(tmp_path / "new.csv", [*bunch.feature_names, "target"],
               [[*map(repr, r.tolist()), bunch.target_names[t]] for r, t in zip(rows, bunch.target[:3])])
    predicted = run_script("predict.py", "name=course_logistic", "input=new.csv", "output=out.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    with (tmp_path / "out.csv").open() as f:
        out = list(csv.DictReader(f))

    X_train, _ = train_test_split(bunch.data, test_size=0.2, random_state=1234)
    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    w, b = state["net.lin.weight"].double().numpy(), state["net.lin.bias"].double().numpy()
    p = expit(StandardScaler().fit(X_train).transform(rows) @ w.T + b)[:, 0]  # probability of class 1
    for row, p1 in zip(out, p):
        assert row["class"] == bunch.target_names[int(p1 > 0.5)]
        assert float(row["probability"]) == pytest.approx(max(p1, 1 - p1), rel=1e-5)

    _write_csv(tmp_path / "odd.csv", [*bunch.feature_names, "target"],
               [[*map(repr, rows[0].tolist()), "harmless"]])
    refused = run_script("predict.py", "name=course_logistic", "input=odd.csv", "output=odd_out.csv", cwd=tmp_path)
    assert refused.returncode == 2
    assert "'harmless'" in refused.stderr and "malignant" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "odd_out.csv").exists()


# --------------------------------------------------------------- bad input: exit 2, naming it

BAD = {
    "one class": ("a,label\n1,x\n2,x\n3,x\n", ["model=softmax"], ["'label'", "one class only", "'x'"]),
    "non-numeric feature": ("a,label\n1,x\nbig,y\n3,x\n", ["model=softmax"],
                            ["line 3", "'a'", "'big' is not a number"]),
    "three classes for logistic": ("a,label\n1,x\n2,y\n3,z\n4,x\n", ["model=logistic"],
                                   ["2 classes", "holds 3", "model=softmax"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_class_data_exits_2_naming_it(case, tmp_path):
    text, overrides, phrases = BAD[case]
    (tmp_path / "own.csv").write_text(text)
    proc = run_script("train.py", *overrides, "data=labelled_csv", "data.path=own.csv", "data.target=label",
                      "data.val_fraction=0", "data.test_fraction=0", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert all(p in proc.stderr for p in phrases), proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize("model,data,phrases", [
    ("logistic", "regression", ["LogisticClassifier", "RegressionDataModule", "data=breast_cancer"]),
    ("linear", "wine", ["WineDataModule", "LinearRegressor", "model=softmax"]),
])
def test_a_model_on_data_of_the_other_kind_exits_2_naming_both(model, data, phrases, tmp_path):
    proc = run_script("train.py", f"model={model}", f"data={data}", cwd=tmp_path)
    assert proc.returncode == 2
    assert all(p in proc.stderr for p in phrases), proc.stderr
    assert not (tmp_path / "lightning_logs").exists()


# --------------------------------------------------------------- pictures


@pytest.mark.parametrize("experiment", ["course_logistic", "course_softmax"])
def test_the_pictures_are_written_and_the_confusion_matrix_is_sklearns(experiment, tmp_path):
    from sklearn.metrics import confusion_matrix
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gradlab.show.pictures import confusion

    result = train(make_cfg(f"experiment={experiment}", "trainer.max_epochs=3", "optimizer.lr=0.001",
                            root_dir=tmp_path))
    assert all((result.run_dir / f"{name}.png").stat().st_size > 0 for name in ("fit", "confusion"))
    images = EventAccumulator(str(result.run_dir), size_guidance={"images": 0}).Reload().Tags()["images"]
    assert {"train/pictures/fit", "train/pictures/confusion"} <= set(images)

    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    dm_cls, model = ((BreastCancerDataModule, LogisticClassifier(30, None)) if experiment == "course_logistic"
                     else (WineDataModule, SoftmaxClassifier(13, 3, None)))
    model.load_state_dict(state)
    dm = dm_cls(labels=model.labels, split="train_test_split", val_fraction=0.0, test_fraction=0.2, seed=1234)
    dm.setup()
    x, y = dm.splits["test"]
    w, b = state["net.lin.weight"].double().numpy(), state["net.lin.bias"].double().numpy()
    scores = x.double().numpy() @ w.T + b
    predicted = (scores[:, 0] > 0).astype(int) if scores.shape[1] == 1 else scores.argmax(1)
    expected = confusion_matrix(y.reshape(-1).numpy().astype(int), predicted)
    np.testing.assert_array_equal(confusion(model, x, y).numpy(), expected)


@pytest.mark.parametrize("features,model", [("[u,v]", "softmax"), ("[u,v]", "logistic"), ("[u]", "logistic")])
def test_one_or_two_features_draw_the_sigmoid_or_the_decision_regions(features, model, tmp_path):
    import matplotlib.image

    x, index = _overlapping(3 if model == "softmax" else 2)
    path = _write_csv(tmp_path / "own.csv", ["u", "v", "kind"], [[a, b, c] for (a, b), c in zip(x, index)])
    result = train(make_cfg(f"model={model}", "data=labelled_csv", f"data.path={path}", "data.target=kind",
                            f"data.features={features}", "trainer.max_epochs=5", root_dir=tmp_path / "runs"))
    picture = matplotlib.image.imread(result.run_dir / "fit.png")
    assert picture.shape[:2] == (450, 600) and picture[..., :3].std() > 0  # drawn, not blank


def test_tensorboard_gets_the_gap_to_the_optimum_only_where_one_exists(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, index = _overlapping(2)
    path = _write_csv(tmp_path / "own.csv", ["u", "v", "kind"], [[a, b, c] for (a, b), c in zip(x, index)])
    result = train(make_cfg("model=logistic", "data=labelled_csv", f"data.path={path}", "data.target=kind",
                            "data.val_fraction=0", "data.test_fraction=0", "trainer.max_epochs=40",
                            "trainer.log_every_n_steps=1", root_dir=tmp_path / "runs"))
    events = EventAccumulator(str(result.run_dir), size_guidance={"scalars": 0}).Reload()
    losses, gaps = events.Scalars("train/loss"), events.Scalars("train/loss_gap")
    x64 = (x - x.mean(0)) / x.std(0)  # standardised on all rows: they are all the training split here
    optimum = minimize(lambda v: bce(v[:2].reshape(1, 2), v[2:], x64, index), np.zeros(3), method="BFGS",
                       options={"gtol": 1e-10}).fun
    assert len(gaps) == len(losses) == 40
    for loss, gap in zip(losses, gaps):
        assert gap.value == pytest.approx(loss.value - optimum, abs=1e-5)

    course = train(make_cfg("experiment=course_logistic", "trainer.max_epochs=20", root_dir=tmp_path / "course"))
    tags = EventAccumulator(str(course.run_dir), size_guidance={"scalars": 0}).Reload().Tags()["scalars"]
    assert "train/loss" in tags and "train/loss_gap" not in tags  # separable: no optimum to measure a gap to
