"""The course's lesson 16 in TensorBoard for a classifier: the model's graph with its layers, accuracy
beside the loss (against the lesson's plain loop and numpy), the input image grid, and one precision-recall
curve per class whose counts equal numpy's at TensorBoard's thresholds i/126."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from conftest import make_cfg, run_script
from oracles import cnn_loop, course_loop
from PIL import Image
from sklearn.datasets import load_breast_cancer, load_wine
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util
from test_cnn import lesson_digits
from test_course import course_data

from gradlab.run.recipe import train


def _graph_nodes(run_dir) -> list[str]:
    board = EventAccumulator(str(run_dir)).Reload()
    return [node.name for node in board.Graph().node] if board.Tags()["graph"] else []


GRAPHS = {  # a short run of each classifier, and the layers its graph must show, as torch names them
    "cnn": (["experiment=course_cnn", "trainer.max_epochs=1", "+trainer.limit_train_batches=5"],
            ["Sequential[features]/Conv2d[0]", "Sequential[features]/MaxPool2d[2]",
             "Sequential[features]/Conv2d[3]", "Sequential[head]/Linear[0]", "Sequential[head]/Linear[2]",
             "Sequential[head]/Linear[4]"]),
    "mlp": (["experiment=course_feedforward", "trainer.max_epochs=1"],
            ["ModuleList[layers]/Linear[0]", "ModuleList[layers]/Linear[1]"]),
    "logistic": (["experiment=course_logistic", "trainer.max_epochs=2"], ["Linear[net]/Linear[lin]"]),
}


@pytest.mark.parametrize("case", GRAPHS)
def test_a_classifier_run_draws_the_models_graph_with_its_layers_and_no_tracer_warning(case, tmp_path):
    overrides, layers = GRAPHS[case]
    proc = run_script("train.py", *overrides, f"root_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Warning" not in proc.stdout + proc.stderr  # torch.jit.trace's deprecation is filtered, only it
    run_dir = re.search(r"^gradlab: run directory (.+)$", proc.stdout, re.M).group(1)
    nodes = _graph_nodes(run_dir)
    for layer in layers:
        assert any(layer in node for node in nodes), (layer, nodes)
    assert any(node.startswith("input/") for node in nodes) and any(node.startswith("output/") for node in nodes)


def test_no_graph_for_a_regression_nor_when_switched_off(tmp_path):
    regression = train(make_cfg("model=linear", "trainer.max_epochs=3", root_dir=tmp_path))
    assert _graph_nodes(regression.run_dir) == []
    off = train(make_cfg("experiment=course_logistic", "trainer.max_epochs=2", "callbacks.board.graph=false",
                         root_dir=tmp_path))
    assert _graph_nodes(off.run_dir) == []


def test_accuracy_is_logged_beside_the_loss_as_the_lessons_loop_and_numpy_count_it(tmp_path):
    """train/accuracy: lesson 16's running accuracy (the batches since the last point), against the lesson's
    loop on the same unshuffled batches; val/accuracy: the checkpoint's predictions on the val split (the
    training images for digits), counted with numpy."""
    result = train(make_cfg("experiment=course_cnn", "trainer.max_epochs=1", "+trainer.limit_train_batches=40",
                            "data.shuffle=false", "trainer.log_every_n_steps=10", root_dir=tmp_path))
    board = EventAccumulator(str(result.run_dir), size_guidance={"scalars": 0}).Reload()
    loss, accuracy = board.Scalars("train/loss"), board.Scalars("train/accuracy")
    assert [e.step for e in accuracy] == [e.step for e in loss] and len(accuracy) == 4  # beside the loss

    x_train, y_train, _, _ = lesson_digits()
    expected: list[float] = []
    cnn_loop(x_train[:160], y_train[:160], (1, 8, 8), [6, 16], 3, 1, [120, 84], 10, 1, 4, 0.05,
             accuracies=expected, log_every=10)
    assert [e.value for e in accuracy] == pytest.approx(expected, abs=1e-6)

    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    net = cnn_loop(x_train, y_train, (1, 8, 8), [6, 16], 3, 1, [120, 84], 10, 0, 4, 0.05)  # the layers, untrained
    net.load_state_dict(dict(zip(net.state_dict(), (v for k, v in state.items() if k.startswith("net.")))))
    with torch.no_grad():
        predicted = net(x_train).argmax(1).numpy()
    val_accuracy = board.Scalars("val/accuracy")
    assert len(val_accuracy) == 1  # course_cnn validates once, at the end
    assert val_accuracy[-1].value == pytest.approx(np.mean(predicted == y_train.numpy()), abs=1e-6)


def test_a_cnn_run_logs_an_image_grid_and_pr_curves_counted_as_numpy_counts_them(tmp_path):
    result = train(make_cfg("experiment=course_cnn", "trainer.max_epochs=1", "+trainer.limit_train_batches=40",
                            root_dir=tmp_path))
    board = EventAccumulator(str(result.run_dir), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert "inputs/images" in board.Tags()["images"]
    image = board.Images("inputs/images")[0]
    grid = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("L"), dtype=float)
    assert grid.shape == (80, 80)  # 8 x 8 training images of 8 x 8 pixels, each in a frame of one pixel
    first_64 = lesson_digits()[0][:64]  # the training split's first images, pixels / 16
    scaled = (first_64 - first_64.min()) / (first_64.max() - first_64.min()) * 255
    for i in (0, 1, 8, 63):  # across the first row, the second, and the last image
        row, col = divmod(i, 8)
        cell = grid[10 * row : 10 * row + 10, 10 * col : 10 * col + 10]
        np.testing.assert_allclose(cell[1:9, 1:9], scaled[i].reshape(8, 8).numpy(), atol=1)
        assert set(cell[0]) == set(cell[:, 0]) == {127.0}  # the grey frame

    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    from gradlab.lessons.cnn import ConvNet  # the trained network, rebuilt, for the probabilities

    net = ConvNet((1, 8, 8), [6, 16], 3, 1, 2, [120, 84], 10)
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    _, x_test, _, y_test = train_test_split(X, y, test_size=0.2, random_state=1234)
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(x_test / 16).float()), 1).numpy()
    thresholds = np.arange(127) / 126
    for k in range(10):
        data = tensor_util.make_ndarray(board.Tensors(f"pr_curve/{k}")[-1].tensor_proto)  # (6, 127)
        tp, fp, tn, fn, precision, recall = data
        positive = y_test == k
        expected_tp = [(positive & (p[:, k] >= t)).sum() for t in thresholds]
        expected_fp = [(~positive & (p[:, k] >= t)).sum() for t in thresholds]
        # a probability within float32 rounding of a threshold may fall in the bucket below
        np.testing.assert_allclose(tp, expected_tp, atol=1)
        np.testing.assert_allclose(fp, expected_fp, atol=1)
        np.testing.assert_allclose(tp + fn, positive.sum())
        np.testing.assert_allclose(fp + tn, (~positive).sum())
        assert tp[0] == positive.sum() and fp[0] == (~positive).sum()  # at threshold 0 every image is positive
        ok = tp + fp > 0
        np.testing.assert_allclose(precision[ok], (tp / np.maximum(tp + fp, 1))[ok], rtol=1e-5)
        np.testing.assert_allclose(recall, tp / positive.sum(), rtol=1e-5)


@pytest.mark.parametrize("experiment,binary,n_classes", [("course_logistic", True, None),
                                                         ("course_softmax", False, 3)])
def test_a_linear_classifiers_train_accuracy_is_the_course_loops_at_each_step(experiment, binary, n_classes,
                                                                              tmp_path):
    """Full batch, a point every step: the accuracy on the training split of the weights after k updates,
    as the course's loop (from zero weights) gets it after k epochs."""
    result = train(make_cfg(f"experiment={experiment}", "model.init=zeros", "trainer.max_epochs=5",
                            "trainer.log_every_n_steps=1", root_dir=tmp_path))
    logged = EventAccumulator(str(result.run_dir), size_guidance={"scalars": 0}).Reload().Scalars("train/accuracy")
    x_train, y_train, _, _ = course_data(load_breast_cancer if binary else load_wine, binary)
    lr = float(make_cfg(f"experiment={experiment}").optimizer.lr)
    expected = [course_loop(x_train, y_train, x_train, y_train, lr, k, n_classes)[1] for k in range(5)]
    assert [e.value for e in logged] == pytest.approx(expected, abs=1e-6)
