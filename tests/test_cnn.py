"""model=cnn (the course's lesson 14) against the lesson's plain loop on sklearn's digits; its lines;
fast_dev_run; refused input (exit 2, nothing written)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg, run_script
from oracles import cnn_loop
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, recall_score
from sklearn.model_selection import train_test_split
from torch import nn

from gradlab.run.recipe import train

WEIGHTS = {"rtol": 0, "atol": 1e-4}  # the tolerance for weights after a recipe


def lesson_digits():
    """The lesson's data pipeline, on sklearn's digits: the course's split, pixels / 16."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=1234)
    as_x = lambda a: torch.from_numpy((a / 16.0).astype(np.float32))  # noqa: E731
    return as_x(X_train), torch.from_numpy(y_train), as_x(X_test), torch.from_numpy(y_test)


def _assert_same_weights(run_dir: Path, oracle: nn.Sequential) -> None:
    """The run's convolutions and linear layers, in order, hold the plain loop's weights."""
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    ours = [k[: -len(".weight")] for k in state if k.endswith(".weight")]
    theirs = [m for m in oracle if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(ours) == len(theirs)
    assert all(k.startswith(("net.features.", "net.head.")) for k in ours)
    for key, layer in zip(ours, theirs):
        torch.testing.assert_close(state[f"{key}.weight"], layer.weight.detach(), **WEIGHTS)
        torch.testing.assert_close(state[f"{key}.bias"], layer.bias.detach(), **WEIGHTS)


@pytest.mark.parametrize("path", ["automatic", "manual"])
@pytest.mark.parametrize("channels,kernel,padding,hidden,batch,lr", [
    ([6, 16], 3, 1, [120, 84], 20, 0.05),  # course_cnn's layers, mini-batches of 20
    ([4], 5, 2, [], 64, 0.1),  # one 5x5 convolution, a head of one linear layer
], ids=["course_layers", "one_conv"])
def test_each_path_matches_the_lessons_plain_loop_on_digits(path, channels, kernel, padding, hidden, batch, lr,
                                                          tmp_path):
    x_train, y_train, x_test, y_test = lesson_digits()
    oracle = cnn_loop(x_train, y_train, (1, 8, 8), channels, kernel, padding, hidden, 10, 2, batch, lr)
    result = train(make_cfg("model=cnn", "data=digits", "data.shuffle=false", "~callbacks", "optimizer=sgd",
                            f"optimizer.lr={lr}", f"data.batch_size={batch}", "trainer.max_epochs=2",
                            f"model.optimization={path}", f"model.channels={channels}".replace(" ", ""),
                            f"model.kernel_size={kernel}", f"model.padding={padding}",
                            f"model.hidden={hidden}".replace(" ", ""), root_dir=tmp_path))
    _assert_same_weights(result.run_dir, oracle)
    with torch.no_grad():
        expected = accuracy_score(y_test.numpy(), oracle(x_test).argmax(1).numpy())
    assert result.metrics["test/accuracy"] == pytest.approx(expected, abs=1e-7)


def test_course_cnn_prints_the_lessons_lines_and_the_plain_loops_accuracy(capsys, tmp_path):
    """Shortened (2 epochs, unshuffled, so the lesson's loop takes the same batches of 4)."""
    x_train, y_train, x_test, y_test = lesson_digits()
    oracle = cnn_loop(x_train, y_train, (1, 8, 8), [6, 16], 3, 1, [120, 84], 10, 2, 4, 0.05)
    with torch.no_grad():
        predicted = oracle(x_test).argmax(1).numpy()
    result = train(make_cfg("experiment=course_cnn", "trainer.max_epochs=2", "data.shuffle=false",
                            root_dir=tmp_path))
    out = capsys.readouterr().out
    _assert_same_weights(result.run_dir, oracle)

    steps = re.findall(r"^Epoch \[(\d)/2\], Step \[(\d+)/360\], Loss: \d+\.\d{4}$", out, re.M)
    assert steps == [(e, s) for e in "12" for s in ("90", "180", "270", "360")]
    lines = out.split("Finished Training\n")[1].splitlines()
    assert lines[0].startswith("Prediction after training")
    accuracy = 100 * accuracy_score(y_test.numpy(), predicted)
    network = [i for i, line in enumerate(lines) if line.startswith("Accuracy of the network: ")]
    assert len(network) == 1
    assert float(re.fullmatch(r"Accuracy of the network: (\S+) %", lines[network[0]]).group(1)) == pytest.approx(
        accuracy, abs=0.01)
    per_class = [re.fullmatch(r"Accuracy of (\d): (\S+) %", line).groups() for line in lines[network[0] + 1:][:10]]
    recall = recall_score(y_test.numpy(), predicted, average=None)  # per class: right / images of the class
    assert [int(k) for k, _ in per_class] == list(range(10))
    assert [float(v) for _, v in per_class] == pytest.approx(list(100 * recall), abs=0.01)
    assert "Network: 1x8x8 -> 6x4x4 -> 16x2x2 -> 120 -> 84 -> 10 (3x3 conv, relu, pool 2)" in out
    assert all(len(line) <= 80 for line in lines if not line.startswith("gradlab: "))  # a path may be longer
    assert not (Path.cwd() / "cnn.pth").exists()


@pytest.mark.parametrize("overrides", [
    ["experiment=course_cnn"],
    ["experiment=course_cnn", "model.optimization=manual", "model.channels=[3,5,7]", "model.kernel_size=2"],
], ids=["course_cnn", "manual_three_convolutions"])
def test_the_cnn_runs_with_fast_dev_run(overrides, tmp_path):
    result = train(make_cfg(*overrides, "trainer.fast_dev_run=true", root_dir=tmp_path))
    assert result.status == "finished"
    assert all(np.isfinite(v) for v in result.metrics.values())


BAD = {
    "analytic": (["model.optimization=analytic"], ["model.optimization='analytic'", "past the course"]),
    "kernel_larger_than_the_image": (["model.kernel_size=9", "model.padding=0"],
                                     ["model.kernel_size=9", "8x8 image", "maps would be 0x0;"]),
    "kernel_too_large_after_pooling": (["model.channels=[6,16,32,64]"], ["model.kernel_size=3", "-> 1x1 -> 0x0;"]),
    "rows_that_are_no_images": (["data=wine"], ["model=cnn takes images", "13 numbers"]),
    "image_shape_given": (["+model.image_shape=[2,4,8]"], ["model.image_shape", "from the data"]),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_cnn_is_refused_with_exit_2_naming_it_and_nothing_written(case, tmp_path):
    overrides, phrases = BAD[case]
    proc = run_script("train.py", "model=cnn", "data=digits", *overrides, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    for phrase in phrases:
        assert phrase in out, out
    assert "Traceback" not in out
    assert list(Path(tmp_path).iterdir()) == []
