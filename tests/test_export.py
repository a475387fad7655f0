"""scripts/export.py (the course's lesson 17): the printed lines of plain PyTorch, run in a fresh process
without gradlab, load the exported state_dict with weights_only=True and predict what predict.py predicts."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch
from conftest import make_cfg, run_script
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

from gradlab.run.recipe import train

CASES = {  # a short run of each kind of gradlab model, and raw inputs from its data set
    "cnn": (["experiment=course_cnn", "trainer.max_epochs=1", "+trainer.limit_train_batches=40"], load_digits),
    "mlp": (["experiment=course_feedforward", "model.hidden=[16,8]", "model.activation=tanh",
             "trainer.max_epochs=2"], load_digits),
    "logistic": (["experiment=course_logistic", "trainer.max_epochs=20"], load_breast_cancer),
    "linear": (["data=diabetes", "trainer.max_epochs=20"], load_diabetes),
}


@pytest.mark.parametrize("case", CASES)
def test_the_printed_plain_pytorch_lines_predict_what_predict_py_predicts(case, tmp_path):
    overrides, load = CASES[case]
    result = train(make_cfg(*overrides, "~callbacks", "name=exported", root_dir=tmp_path / "runs"))
    rows = load(return_X_y=True)[0][[0, 5, 17, 42, 99]].tolist()  # raw values, as a user has them
    ckpt = f"ckpt_path={result.run_dir / 'checkpoints' / 'last.ckpt'}"
    proc = run_script("predict.py", ckpt, f"x={json.dumps(rows).replace(' ', '')}", "output=predicted.csv",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "predicted.csv") as f:
        predicted = list(csv.DictReader(f))

    proc = run_script("export.py", ckpt, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    code = proc.stdout.split("\ngradlab: ")[0]
    assert (result.run_dir / "model.pt").is_file()
    state = torch.load(result.run_dir / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    script = code + f"\n\nimport json\nout = predict(torch.tensor({rows!r}, dtype=torch.float32))\n"
    script += ("print(json.dumps(out.tolist()))\n" if case == "linear" else
               "print(json.dumps([out[0], out[1].tolist()]))\n")
    plain = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)  # -I: no PYTHONPATH, so no gradlab: plain PyTorch only
    assert plain.returncode == 0, plain.stderr
    out = json.loads(plain.stdout)
    if case == "linear":
        assert out == pytest.approx([float(r["prediction"]) for r in predicted], rel=1e-5)
    else:
        assert out[0] == [r["class"] for r in predicted]
        assert out[1] == pytest.approx([float(r["probability"]) for r in predicted], rel=1e-5)


def test_export_writes_output_where_asked_and_refuses_a_directory(tmp_path):
    result = train(make_cfg("experiment=course_cnn", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                            "~callbacks", root_dir=tmp_path / "runs"))
    ckpt = f"ckpt_path={result.run_dir / 'checkpoints' / 'last.ckpt'}"
    (tmp_path / "folder").mkdir()
    proc = run_script("export.py", ckpt, "output=folder", cwd=tmp_path)
    assert proc.returncode == 2 and "output=folder: that is a directory" in proc.stderr + proc.stdout
    assert list((tmp_path / "folder").iterdir()) == []


@pytest.mark.parametrize("name", ["linear", "logistic", "softmax", "mlp_relu", "mlp_leaky_relu", "mlp_regression",
                                  "cnn"])
def test_each_models_plain_layers_compute_what_the_model_computes(name):
    """plain_layers() is the model's network in torch's own layers, sharing its weights: the same outputs
    (for logistic regression the sigmoid's probability, for the rest the logits or the prediction)."""
    from functools import partial

    from gradlab.lessons.classifiers import LogisticClassifier, SoftmaxClassifier
    from gradlab.lessons.cnn import CNN
    from gradlab.lessons.linear import LinearRegressor
    from gradlab.lessons.mlp import MLP

    sgd = partial(torch.optim.SGD, lr=0.1)
    torch.manual_seed(0)
    model = {"linear": lambda: LinearRegressor(5, sgd), "logistic": lambda: LogisticClassifier(5, sgd),
             "softmax": lambda: SoftmaxClassifier(5, 3, sgd),
             "mlp_relu": lambda: MLP(5, sgd, hidden=[7, 6], n_classes=3),
             "mlp_leaky_relu": lambda: MLP(5, sgd, hidden=[7], activation="leaky_relu", n_classes=3),
             "mlp_regression": lambda: MLP(5, sgd, hidden=[4], activation="tanh"),
             "cnn": lambda: CNN(64, sgd, 10, image_shape=[8, 8])}[name]()
    x = torch.randn(9, model.hparams.n_features) * 3  # negative inputs too: leaky_relu's slope shows
    plain = model.plain_layers()
    assert all(type(layer).__module__.startswith("torch.nn") for layer in plain)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), rtol=0, atol=0)
    assert {id(p) for p in plain.parameters()} == {id(p) for p in model.parameters()}  # the same weights
