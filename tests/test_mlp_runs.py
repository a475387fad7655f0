"""model=mlp through the commands a user runs: eval.py, predict.py (an 8 x 8 image as 64 raw pixel
values in a CSV row), resume, and refused input (exit 2, nothing written)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg, run_script
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gradlab.run.recipe import train

SHORT = ["experiment=course_feedforward", "model.hidden=[16]", "trainer.max_epochs=2"]


def _network(state: dict, x: np.ndarray) -> np.ndarray:
    """The checkpoint's network written in numpy: relu between the layers, logits out."""
    a = x
    n = len([k for k in state if k.endswith(".weight")])
    for i in range(n):
        a = a @ state[f"net.layers.{i}.weight"].double().numpy().T + state[f"net.layers.{i}.bias"].double().numpy()
        a = np.maximum(a, 0) if i < n - 1 else a
    return a


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("project")
    proc = run_script("train.py", *SHORT, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, cwd / "lightning_logs" / "course_feedforward" / "version_0"


def test_eval_prints_the_checkpoints_accuracy_on_the_360_test_images(trained):
    cwd, run_dir = trained
    proc = run_script("eval.py", "name=course_feedforward", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "on its test split (360 rows)" in proc.stdout
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    X, y = load_digits(return_X_y=True)
    _, X_test, _, y_test = train_test_split(X, y, test_size=0.2, random_state=1234)
    accuracy = (_network(state, X_test / 16).argmax(1) == y_test).mean()
    printed = float(re.search(r"test/accuracy (\S+?),", proc.stdout).group(1))
    assert printed == pytest.approx(accuracy, abs=1e-7)


def test_predict_reads_images_as_64_raw_pixel_values_and_names_the_digit(trained):
    cwd, run_dir = trained
    bunch = load_digits()
    with open(cwd / "images.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *bunch.feature_names])
        writer.writerows([i, *map(int, bunch.data[i])] for i in range(5))
    proc = run_script("predict.py", "name=course_feedforward", "input=images.csv", "output=digits.csv", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(cwd / "digits.csv")))
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    logits = _network(state, bunch.data[:5] / 16)  # raw 0..16 pixels in, divided by 16 as in training
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r["class"] for r in rows] == [str(k) for k in p.argmax(1)]  # the class names "0" ... "9"
    assert [float(r["probability"]) for r in rows] == pytest.approx(p.max(1), rel=1e-5)


def test_an_image_csv_with_a_missing_pixel_exits_2_naming_it_and_writes_nothing(trained):
    cwd, _ = trained
    bunch = load_digits()
    with open(cwd / "short.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(bunch.feature_names[:63])  # 63 pixels: pixel_7_7 missing
        writer.writerows(list(map(int, row[:63])) for row in bunch.data[:2])
    proc = run_script("predict.py", "name=course_feedforward", "input=short.csv", "output=never.csv", cwd=cwd)
    assert proc.returncode == 2
    assert "short.csv: no column 'pixel_7_7'" in proc.stderr + proc.stdout
    assert not (cwd / "never.csv").exists()


@pytest.mark.filterwarnings("ignore:Checkpoint directory")
def test_a_resumed_mlp_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    # shuffled batches of 100, as the lesson draws them
    shuffled = ["experiment=course_feedforward", "model.hidden=[16]", "~callbacks.lesson"]
    first = train(make_cfg(*shuffled, "name=resumed", "trainer.max_epochs=2", root_dir=tmp_path))
    resumed = train(make_cfg(*shuffled, "name=resumed", "trainer.max_epochs=4", "resume=true", root_dir=tmp_path))
    whole = train(make_cfg(*shuffled, "name=whole", "trainer.max_epochs=4", root_dir=tmp_path))
    assert resumed.run_dir == first.run_dir
    a, b = (torch.load(r.run_dir / "checkpoints" / "last.ckpt", weights_only=True) for r in (resumed, whole))
    assert a["global_step"] == b["global_step"] == 4 * 15
    for key in b["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


BAD = {
    "no_hidden_layer": (["model.hidden=[]"], ["model.hidden=[]", "at least one"]),
    "zero_width": (["model.hidden=[500,0]"], ["model.hidden=[500, 0]", "each an integer >= 1"]),
    "unknown_activation": (["model.activation=swish"], ["model.activation='swish'", "'leaky_relu'"]),
    "zeros_init": (["model.init=zeros"], ["model.init='zeros'", "every hidden unit", "never learn"]),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_network_is_refused_with_exit_2_naming_it_and_nothing_written(case, tmp_path):
    overrides, phrases = BAD[case]
    proc = run_script("train.py", "model=mlp", "data=digits", *overrides, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    for phrase in phrases:
        assert phrase in out, out
    assert "Traceback" not in out
    assert list(Path(tmp_path).iterdir()) == []


def test_benchmark_feedforward_workload_agrees_with_the_plain_loop_and_the_dataloader(tmp_path):
    """scripts/benchmark.py --workload feedforward at a tiny size: all four runs end at the same loss
    (the script exits 1 otherwise). No timings are checked."""
    proc = run_script("benchmark.py", "--workload", "feedforward", "--rounds", "1", "--epochs", "4",
                      "model.hidden=[16]", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [line.split(" | ")[1] for line in proc.stdout.splitlines() if line.startswith("| feedforward")]
    assert runs == ["plain", "barebones", "gradlab", "gradlab, data.loader=dataloader"]
    assert "feedforward: final loss gradlab and barebones vs plain: relative difference" in proc.stdout
    assert "(agree)" in proc.stdout and "final loss identical" in proc.stdout
    assert list(tmp_path.iterdir()) == []
