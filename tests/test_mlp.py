"""The course's lesson 13 (the feed-forward net) and lesson 12 (activations) as gradlab's model=mlp,
against independent oracles: the lesson's own plain torch loop from the same initial weights (three
gradient paths, other rates, epochs, activations, two hidden layers, a regression), finite
differences in float64 for the hand-written backpropagation, autograd for the activations'
derivatives, and sklearn's metrics on the model's predictions."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import make_cfg
from oracles import feedforward_loop, seeded_split
from sklearn.datasets import load_digits, make_regression
from sklearn.metrics import accuracy_score, f1_score, log_loss, recall_score
from sklearn.model_selection import train_test_split
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from gradlab.lessons.mlp import ACTIVATIONS, MLP, derivative
from gradlab.run.recipe import train

PATHS = ["automatic", "manual", "analytic"]
WEIGHTS = {"rtol": 0, "atol": 1e-4}  # the tolerance for weights after a recipe


def lesson_digits():
    """The lesson's data pipeline, on sklearn's digits: the course's split, pixels / 16 (ToTensor's 0..1)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=1234)
    as_x = lambda a: torch.from_numpy((a / 16.0).astype(np.float32))  # noqa: E731
    return as_x(X_train), torch.from_numpy(y_train), as_x(X_test), torch.from_numpy(y_test)


def _linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


def _assert_same_weights(run_dir, oracle: nn.Sequential) -> None:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for i, layer in enumerate(_linear_layers(oracle)):
        torch.testing.assert_close(state[f"net.layers.{i}.weight"], layer.weight.detach(), **WEIGHTS)
        torch.testing.assert_close(state[f"net.layers.{i}.bias"], layer.bias.detach(), **WEIGHTS)


def _digits_run(tmp_path, path: str, *overrides: str):
    return train(make_cfg("model=mlp", "data=digits", "data.shuffle=false", "~callbacks",
                          f"model.optimization={path}", *overrides, root_dir=tmp_path))


@pytest.mark.parametrize("path", PATHS)
def test_each_path_matches_the_lessons_plain_loop_on_digits(path, tmp_path):
    x_train, y_train, x_test, y_test = lesson_digits()
    oracle = feedforward_loop(x_train, y_train, [32], "relu", 2, 100, torch.optim.Adam, n_classes=10, lr=0.001)
    result = _digits_run(tmp_path, path, "model.hidden=[32]", "optimizer=adam", "optimizer.lr=0.001",
                         "trainer.max_epochs=2")
    _assert_same_weights(result.run_dir, oracle)
    with torch.no_grad():
        expected = accuracy_score(y_test.numpy(), oracle(x_test).argmax(1).numpy())
    assert result.metrics["test/accuracy"] == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation,hidden,lr,epochs,batch", [
    ("tanh", [16, 8], 0.1, 3, 50), ("sigmoid", [20], 0.5, 2, 64), ("leaky_relu", [12, 12], 0.05, 2, 200),
])
def test_each_path_matches_the_plain_loop_at_other_activations_rates_and_epochs(activation, hidden, lr, epochs,
                                                                               batch, path, tmp_path):
    x_train, y_train, *_ = lesson_digits()
    oracle = feedforward_loop(x_train, y_train, hidden, activation, epochs, batch, torch.optim.SGD, n_classes=10,
                              lr=lr)
    result = _digits_run(tmp_path, path, f"model.hidden=[{','.join(map(str, hidden))}]",
                         f"model.activation={activation}", "optimizer=sgd", f"optimizer.lr={lr}",
                         f"trainer.max_epochs={epochs}", f"data.batch_size={batch}")
    _assert_same_weights(result.run_dir, oracle)


@pytest.mark.parametrize("path", PATHS)
def test_a_regression_network_matches_the_plain_loop_with_mse(path, tmp_path):
    split = seeded_split(*make_regression(n_samples=100, n_features=1, noise=20.0, random_state=1), 42)
    x, y = split["train"]
    oracle = feedforward_loop(x, y, [8], "tanh", 50, len(x), torch.optim.SGD, lr=0.001)
    result = train(make_cfg("model=mlp", "data=regression", "model.hidden=[8]", "model.activation=tanh",
                            "optimizer.lr=0.001", "trainer.max_epochs=50", f"model.optimization={path}",
                            "~callbacks", root_dir=tmp_path))
    _assert_same_weights(result.run_dir, oracle)
    with torch.no_grad():
        expected = nn.functional.mse_loss(oracle(x), y).item()
    assert result.metrics["train/final_loss"] == pytest.approx(expected, rel=1e-5)


def _loss_of(params: list[torch.Tensor], x, y, activation: str, n_classes: int | None) -> torch.Tensor:
    """The loss written with torch.nn.functional alone (not gradlab's forward), float64."""
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
           "leaky_relu": nn.functional.leaky_relu}[activation]
    a = x
    for i in range(0, len(params), 2):
        a = a @ params[i].T + params[i + 1]
        if i < len(params) - 2:
            a = act(a)
    return nn.functional.cross_entropy(a, y) if n_classes else nn.functional.mse_loss(a, y)


@pytest.mark.parametrize("n_classes", [3, None], ids=["cross_entropy", "mse"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_backprop_by_hand_equals_finite_differences_in_float64(activation, n_classes):
    torch.manual_seed(0)
    model = MLP(5, optimizer=None, hidden=[4, 3], activation=activation, n_classes=n_classes).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0, 2, 2]) if n_classes else torch.randn(7, 1, dtype=torch.float64)
    with torch.no_grad():
        output, inputs, pre = model.net.forward_keeping(x)
        assert all(z.abs().min() > 1e-4 for z in pre[:-1])  # away from the kinks of relu and leaky relu
        model.net.backward_by_hand(model.output_gradient(output, y), inputs, pre)
    params = [p.detach().clone() for p in model.net.parameters()]
    h = 1e-6
    for p, param in zip(params, model.net.parameters()):
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            flat = p.view(-1)
            keep = flat[i].item()
            flat[i] = keep + h
            up = _loss_of(params, x, y, activation, n_classes)
            flat[i] = keep - h
            down = _loss_of(params, x, y, activation, n_classes)
            flat[i] = keep
            numeric.view(-1)[i] = (up - down) / (2 * h)
        torch.testing.assert_close(param.grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_backprop_by_hand_equals_autograds_gradient_per_step_in_float32(activation):
    """The analytic path's gradient against the manual path's (autograd) on one digits batch."""
    x_train, y_train, *_ = lesson_digits()
    x, y = x_train[:100], y_train[:100]
    torch.manual_seed(1)
    model = MLP(64, optimizer=None, hidden=[50, 20], activation=activation, n_classes=10)
    model.criterion(model(x), y).backward()
    autograd = [p.grad.clone() for p in model.parameters()]
    with torch.no_grad():
        output, inputs, pre = model.net.forward_keeping(x)
        model.net.backward_by_hand(model.output_gradient(output, y), inputs, pre)
    for by_hand, expected in zip((p.grad for p in model.parameters()), autograd):
        torch.testing.assert_close(by_hand, expected, rtol=0, atol=1e-6)


X_LESSON = torch.tensor([-1.0, 1.0, 2.0, 3.0])  # lesson 12's x


@pytest.mark.parametrize("name,module", [("relu", nn.ReLU()), ("tanh", nn.Tanh()), ("sigmoid", nn.Sigmoid()),
                                         ("leaky_relu", nn.LeakyReLU())])
def test_activation_derivatives_equal_autograds_through_functional_and_nn_versions(name, module):
    functional = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                  "leaky_relu": nn.functional.leaky_relu}[name]
    # the lesson's x, a sweep across the kink and beyond, and 0 itself (autograd's choice there)
    z = torch.cat([X_LESSON, torch.linspace(-6, 6, 241), torch.zeros(1)]).double()
    for version in (functional, module):
        zz = z.clone().requires_grad_(True)
        (slope,) = torch.autograd.grad(version(zz).sum(), zz)
        torch.testing.assert_close(derivative(name, z), slope, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ACTIVATIONS[name](z), version(z), rtol=0, atol=0)
    if name == "leaky_relu":  # the slope lesson 12 prints: leaky_relu(-1) = -0.01
        assert ACTIVATIONS[name](X_LESSON).tolist() == pytest.approx([-0.01, 1, 2, 3])


def test_every_activation_has_its_derivative_for_the_analytic_path():
    z = torch.linspace(-2, 2, 9)
    for name in ACTIVATIONS:
        assert derivative(name, z).shape == z.shape
    with pytest.raises(ValueError, match="no derivative written for activation 'swish'"):
        derivative("swish", z)


def test_test_metrics_equal_sklearns_on_the_models_predictions(tmp_path):
    result = _digits_run(tmp_path, "automatic", "model.hidden=[24]", "optimizer=adam", "optimizer.lr=0.003",
                         "trainer.max_epochs=2")
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    model = MLP(**ckpt["hyper_parameters"], optimizer=None)
    model.load_state_dict(ckpt["state_dict"])
    *_, x_test, y_test = lesson_digits()
    with torch.no_grad():
        p = torch.softmax(model(x_test).double(), 1).numpy()
    y = y_test.numpy()
    assert result.metrics["test/accuracy"] == pytest.approx(accuracy_score(y, p.argmax(1)), abs=1e-7)
    assert result.metrics["test/f1"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"), rel=1e-5)
    assert result.metrics["test/loss"] == pytest.approx(log_loss(y, p, labels=range(10)), rel=1e-5)


def test_course_feedforward_prints_the_lessons_lines_and_the_plain_loops_accuracy(capsys, tmp_path):
    """Shortened (3 epochs, unshuffled, so the lesson's loop takes the same batches)."""
    x_train, y_train, x_test, y_test = lesson_digits()
    oracle = feedforward_loop(x_train, y_train, [500], "relu", 3, 100, torch.optim.Adam, n_classes=10, lr=0.001)
    with torch.no_grad():
        predicted = oracle(x_test).argmax(1).numpy()
    result = train(make_cfg("experiment=course_feedforward", "trainer.max_epochs=3", "data.shuffle=false",
                            root_dir=tmp_path))
    out = capsys.readouterr().out
    _assert_same_weights(result.run_dir, oracle)

    assert re.findall(r"^Epoch \[(\d)/3\], Step \[15/15\], Loss: \d+\.\d{4}$", out, re.M) == ["1", "2", "3"]
    accuracy = 100 * accuracy_score(y_test.numpy(), predicted)
    printed = re.search(r"^Accuracy of the network on the 360 test images: (\S+) %$", out, re.M).group(1)
    assert float(printed) == pytest.approx(accuracy, abs=0.01)
    per_class = dict(re.findall(r"(\d): (\S+) %", out.split("test images:")[1]))
    recall = recall_score(y_test.numpy(), predicted, average=None)  # per class: right / images of the class
    assert {int(k): float(v) for k, v in per_class.items()} == pytest.approx(dict(enumerate(100 * recall)),
                                                                             abs=0.01)
    assert "Network: 64 -> 500 relu -> 10, 37,510 parameters" in out
    assert "Coefficients" not in out
    pictures = ("fit", "confusion", "digits", "misclassified", "activations")
    for picture in pictures:
        assert (result.run_dir / f"{picture}.png").stat().st_size > 0
    images = EventAccumulator(str(result.run_dir), size_guidance={"images": 0}).Reload().Tags()["images"]
    assert {f"train/pictures/{p}" for p in pictures} <= set(images)


@pytest.mark.parametrize("overrides", [
    ["experiment=course_feedforward"],
    ["experiment=course_feedforward", "model.optimization=analytic", "model.activation=sigmoid"],
    ["model=mlp", "data=regression", "model.hidden=[4,4]"],
    ["model=mlp", "data=wine", "model.optimization=manual"],
], ids=["course_feedforward", "analytic_sigmoid", "regression", "wine_manual"])
def test_the_mlp_runs_with_fast_dev_run(overrides, tmp_path):
    result = train(make_cfg(*overrides, "trainer.fast_dev_run=true", root_dir=tmp_path))
    assert result.status == "finished"
    assert all(np.isfinite(v) for v in result.metrics.values())
