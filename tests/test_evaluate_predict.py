"""scripts/eval.py and scripts/predict.py, run like a user runs them, against what the training run
itself reported: its TensorBoard test metrics, its printed predictions, and its checkpoint's weights."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF, make_cfg, run_script
from hydra import compose, initialize_config_dir
from oracles import seeded_split
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.lessons.csvfile import DataError
from gradlab.run.evaluate import evaluate
from gradlab.run.predict import predict
from gradlab.run.recipe import train

METRICS = ("test/loss", "test/mae", "test/r2")


def _scalars(log_dir: Path) -> dict[str, float]:
    """The last value of every scalar tag in one TensorBoard run directory."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0}).Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}


def _config(app: str, *overrides: str):
    """The config `python scripts/<app>.py *overrides` runs (conf/<app>.yaml)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(app, overrides=list(overrides))


def _printed(stdout: str, key: str) -> float:
    return float(re.search(rf"{re.escape(key)}(?: \(\w+\))? (\S+?)[,\n]", stdout).group(1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A default training run (make_regression, held-out test split) made with scripts/train.py."""
    cwd = tmp_path_factory.mktemp("project")
    proc = run_script("train.py", "trainer.max_epochs=30", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, cwd / "lightning_logs" / "default" / "version_0", proc.stdout


def test_eval_of_the_last_run_reports_the_training_runs_own_test_metrics(trained):
    cwd, run_dir, _ = trained
    proc = run_script("eval.py", "ckpt_path=last", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "lightning_logs/default/version_0/checkpoints/last.ckpt on its test split (10 rows)" in proc.stdout

    reported = json.loads((run_dir / "result.json").read_text())  # the training run's own test stage
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0}).Reload()
    (entry,) = events.Tensors("run/eval/text_summary")  # a TEXT entry of the run itself
    logged = entry.tensor_proto.string_val[0].decode()
    for key in METRICS:
        assert _printed(proc.stdout, key) == pytest.approx(reported[key.replace("/", "_")], rel=1e-7), key
        assert _printed(logged + "\n", key) == _printed(proc.stdout, key), key
    assert entry.step == 30  # the checkpoint's global step: 30 full-batch epochs
    # no scalars and no run folder of its own: nothing that sorts above the training curves
    assert not (run_dir / "eval").exists() and not any(t.startswith("test/") for t in events.Tags()["scalars"])

    # oracle: sklearn's metrics of the checkpoint's weights on the same test split
    from sklearn.datasets import make_regression
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    split = seeded_split(*make_regression(n_samples=100, n_features=1, noise=20.0, random_state=1), 42)
    x, y = (t.double().numpy() for t in split["test"])
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    pred = x @ state["net.lin.weight"].double().numpy().T + state["net.lin.bias"].double().numpy()
    for key, metric in zip(METRICS, (mean_squared_error, mean_absolute_error, r2_score)):
        assert _printed(proc.stdout, key) == pytest.approx(metric(y, pred), rel=1e-5), key


def test_eval_of_a_corrupt_checkpoint_exits_2_and_names_the_file(trained, tmp_path):
    _, run_dir, _ = trained
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes()[:2000])  # truncated copy
    proc = run_script("eval.py", f"ckpt_path={broken}", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"gradlab: {broken}: not a readable checkpoint (corrupt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.ckpt"]  # nothing written


def test_eval_without_a_run_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt_path=last: no run of 'nothing_yet'.*"
                                                "python scripts/train.py name=nothing_yet"):
        evaluate(_config("eval", "name=nothing_yet", f"root_dir={tmp_path}"))
    # a lesson's name: the command that trains the lesson, not the defaults under its name
    with pytest.raises(FileNotFoundError, match="python scripts/train.py experiment=journal_regression\\)"):
        evaluate(_config("eval", "name=journal_regression", f"root_dir={tmp_path}"))


def test_eval_refuses_a_checkpoint_whose_data_file_has_changed(tmp_path):
    data = tmp_path / "points.csv"
    data.write_text("x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(20)))
    train(make_cfg("data=csv", f"data.path={data}", "data.target=y", "trainer.max_epochs=5",
                   root_dir=tmp_path / "lightning_logs"))
    data.write_text("x,y\n" + "".join(f"{10 * i},{2 * i + 1}\n" for i in range(20)))  # x rescaled
    with pytest.raises(DataError, match=r"CsvDataModule\(path=.*points.csv.*now differs from the data"):
        evaluate(_config("eval", f"root_dir={tmp_path / 'lightning_logs'}"))


def test_predict_one_liner_gives_the_journals_f7_and_writes_a_csv(tmp_path):
    train(make_cfg("experiment=journal_autograd", root_dir=tmp_path / "lightning_logs"))

    proc = run_script("predict.py", "name=journal_autograd", "x=[5,7]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Prediction: f(7) = 13.978968" in proc.stdout
    run_dir = tmp_path / "lightning_logs" / "journal_autograd" / "version_0"
    with open(run_dir / "predictions.csv", newline="") as f:  # beside the run, not in the working directory
        rows = list(csv.DictReader(f))
    assert not (tmp_path / "predictions.csv").exists()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    w = torch.load(ckpt, weights_only=True)["state_dict"]["net.lin.weight"].item()  # y = w x, no bias
    assert [r["x"] for r in rows] == ["5", "7"]
    assert [float(r["prediction"]) for r in rows] == pytest.approx([5 * w, 7 * w], rel=1e-6)


def test_predict_help_shows_its_config_and_bad_inputs_are_refused(trained):
    cwd, _, _ = trained
    helped = run_script("predict.py", "--help", cwd=cwd)
    assert helped.returncode == 0
    assert "x: null" in helped.stdout and "output: null" in helped.stdout
    root = f"root_dir={cwd / 'lightning_logs'}"
    with pytest.raises(DataError, match=r"x: the input \[1, 2\] has 2 value\(s\), but the model takes 1 feature"):
        predict(_config("predict", "x=[[1,2]]", root))
    with pytest.raises(DataError, match="either on the command line"):
        predict(_config("predict", root))


def test_predict_reads_a_csv_and_matches_the_training_runs_prediction(trained, tmp_path):
    cwd, run_dir, train_stdout = trained
    f5 = float(re.search(r"Prediction after training: f\(5\) = (\S+)", train_stdout).group(1))
    inputs = tmp_path / "new.csv"
    inputs.write_text("x\n5\n-1.5\n")
    out = tmp_path / "out" / "predicted.csv"
    predict(_config("predict", f"input={inputs}", f"output={out}", f"root_dir={cwd / 'lightning_logs'}"))
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["x", "prediction"]
    assert [r[0] for r in rows[1:]] == ["5", "-1.5"]
    assert float(rows[1][1]) == pytest.approx(f5, rel=1e-7)  # what train.py printed for x = 5
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    w, b = state["net.lin.weight"].item(), state["net.lin.bias"].item()
    assert float(rows[2][1]) == pytest.approx(w * -1.5 + b, rel=1e-6)


def test_predict_streams_a_csv_bigger_than_a_block_and_writes_what_plain_torch_gives_row_by_row(
        trained, tmp_path, monkeypatch):
    """A file of many blocks (the block made small here) streams through, never reaching the serial
    pass; each input cell is kept as it was written, and each prediction is plain torch's for that
    row alone. The same rows with one quoted cell (only the serial pass reads quotes) give the same file."""
    import gradlab.run.predict as predicting

    cwd, run_dir, _ = trained
    rng = np.random.default_rng(3)
    xs = [f"{v:.4f}" if i % 7 == 0 else f"{v:.6g}" for i, v in enumerate(rng.normal(scale=3, size=3000))]
    (tmp_path / "plain.csv").write_text("x\n" + "".join(f"{x}\n" for x in xs))
    (tmp_path / "quoted.csv").write_text(f'x\n"{xs[0]}"\n' + "".join(f"{x}\n" for x in xs[1:]))
    monkeypatch.setattr(predicting, "STREAM_BLOCK", 4096)
    assert (tmp_path / "plain.csv").stat().st_size > 5 * predicting.STREAM_BLOCK
    serial = predicting._from_csv
    read_serially = []
    monkeypatch.setattr(predicting, "_from_csv", lambda *a: read_serially.append(a[0]) or serial(*a))
    written = {}
    for name in ("plain", "quoted"):
        out = tmp_path / f"{name}_out.csv"
        predict(_config("predict", f"input={tmp_path / (name + '.csv')}", f"output={out}",
                        f"root_dir={cwd / 'lightning_logs'}"))
        written[name] = out.read_text()
    assert read_serially == [str(tmp_path / "quoted.csv")]  # the plain file streamed
    assert written["plain"] == written["quoted"]
    rows = list(csv.reader(written["plain"].splitlines()))
    assert rows[0] == ["x", "prediction"] and [r[0] for r in rows[1:]] == xs
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    linear = torch.nn.Linear(1, 1)
    linear.load_state_dict({"weight": state["net.lin.weight"], "bias": state["net.lin.bias"]})
    with torch.no_grad():  # one row at a time: (1, 1) -> (1, 1)
        expected = [f"{linear(torch.tensor([[float(x)]])).item():.9g}" for x in xs]
    assert [r[1] for r in rows[1:]] == expected
