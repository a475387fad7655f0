"""model.init_from and model.freeze (the course's lesson 15): a CNN fine-tuned from another run's
weights with its features frozen, against the lesson's plain loop; refused input (exit 2, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_cfg, run_script
from oracles import cnn_loop
from test_cnn import lesson_digits

from gradlab.run.recipe import train

SMALL = ["model=cnn", "data=digits", "model.channels=[4]", "model.hidden=[16]", "optimizer.lr=0.05", "~callbacks"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("pretrained")
    result = train(make_cfg(*SMALL, "trainer.max_epochs=1", "data.batch_size=20", root_dir=runs))
    return result.run_dir / "checkpoints" / "last.ckpt"


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def test_frozen_features_stay_bit_identical_and_the_head_matches_the_plain_loop(pretrained, tmp_path):
    start = _state(pretrained)
    result = train(make_cfg(*SMALL, f"+model.init_from={pretrained}", "+model.freeze=[features]",
                            "data.shuffle=false", "data.batch_size=20", "trainer.max_epochs=2", root_dir=tmp_path))
    after = _state(result.run_dir / "checkpoints" / "last.ckpt")
    features = [k for k in start if k.startswith("net.features.")]
    assert features and all(torch.equal(after[k], start[k]) for k in features)
    assert not torch.equal(after["net.head.0.weight"], start["net.head.0.weight"])  # the head did train

    x_train, y_train, _, _ = lesson_digits()
    oracle = cnn_loop(x_train, y_train, (1, 8, 8), [4], 3, 1, [16], 10, 2, 20, 0.05,
                      start_from=[v for k, v in start.items() if k.startswith("net.")], freeze_features=True)
    linears = [m for m in oracle if isinstance(m, torch.nn.Linear)]
    for i, layer in zip((0, 2), linears):
        torch.testing.assert_close(after[f"net.head.{i}.weight"], layer.weight.detach(), rtol=0, atol=1e-4)
        torch.testing.assert_close(after[f"net.head.{i}.bias"], layer.bias.detach(), rtol=0, atol=1e-4)


BAD = {
    "freeze_matching_nothing": (["+model.freeze=[backbone]"], ["model.freeze: 'backbone' matches no parameter",
                                                                "net.features.0.weight"]),
    "init_from_not_a_checkpoint": (["+model.init_from=notes.txt"], ["model.init_from='notes.txt'",
                                                                     "not a readable checkpoint"]),
    "init_from_other_layers": (["model.channels=[6]", "+model.init_from=PRETRAINED"],
                               ["model.init_from=", "net.features.0.weight is [4, 1, 3, 3] there and [6, 1, 3, 3] "
                                                    "here"]),
    "init_from_a_head_for_more_classes": (["data.keep_classes=[5,6,7,8,9]", "+model.init_from=PRETRAINED"],
                                          ["model.init_from=", "its head tells 10 classes apart and the data here "
                                                               "has 5", "net.head.2.weight is [10, 16] there and "
                                                                        "[5, 16] here"]),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_transfer_is_refused_with_exit_2_naming_it_and_nothing_written(case, pretrained, tmp_path):
    overrides, phrases = BAD[case]
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    overrides = [o.replace("PRETRAINED", str(pretrained)) for o in overrides]
    proc = run_script("train.py", *SMALL, *overrides, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    for phrase in phrases:
        assert phrase in out, out
    assert "Traceback" not in out
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_keep_classes_selects_those_digits_relabelled_from_zero_with_the_courses_split():
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from gradlab.lessons.data import DigitsDataModule

    dm = DigitsDataModule(keep_classes=[7, 5, 9])
    dm.setup("fit")
    X, y = load_digits(return_X_y=True)
    rows = np.isin(y, [7, 5, 9])
    relabelled = np.select([y[rows] == 7, y[rows] == 5, y[rows] == 9], [0, 1, 2])
    x_train, x_test, y_train, y_test = train_test_split(X[rows], relabelled, test_size=0.2, random_state=1234)
    assert dm.classes == ["7", "5", "9"]
    torch.testing.assert_close(dm.splits["test"][0], torch.from_numpy(x_test / 16).float())
    assert dm.splits["test"][1].tolist() == y_test.tolist()
    assert dm.splits["train"][1].tolist() == y_train.tolist()


def test_a_cnn_trains_on_five_digits_and_a_bad_selection_exits_2(tmp_path):
    result = train(make_cfg(*SMALL, "data.keep_classes=[5,6,7,8,9]", "trainer.fast_dev_run=true",
                            root_dir=tmp_path))
    assert result.status == "finished"
    (tmp_path / "bad").mkdir()
    proc = run_script("train.py", *SMALL, "data.keep_classes=[5,5]", cwd=tmp_path / "bad")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "data.keep_classes=[5, 5]" in out and "Traceback" not in out, out
    assert list((tmp_path / "bad").iterdir()) == []


def test_course_transfer_runs_four_trainings_and_prints_the_table_of_their_test_accuracy(tmp_path):
    import json
    import re

    proc = run_script("train.py", "experiment=course_transfer", "trainer.max_epochs=1",
                      "+trainer.limit_train_batches=30", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = tmp_path / "lightning_logs"
    assert sorted(p.name for p in runs.iterdir()) == ["course_transfer_all_layers", "course_transfer_from_scratch",
                                                       "course_transfer_head_only", "course_transfer_pretrained"]
    table = re.findall(r"^(all layers|head only|from scratch) +(\S+) % +(\d+) +([\d,]+)$", proc.stdout, re.M)
    assert [row for row, *_ in table] == ["all layers", "head only", "from scratch"]
    for row, accuracy, epochs, _ in table:
        result = json.loads((runs / f"course_transfer_{row.replace(' ', '_')}" / "version_0" / "result.json")
                            .read_text())
        assert float(accuracy) == pytest.approx(100 * result["test_accuracy"], abs=0.01)
        assert epochs == "1"
    pretrained = _state(runs / "course_transfer_pretrained" / "version_0" / "checkpoints" / "last.ckpt")
    head_only = _state(runs / "course_transfer_head_only" / "version_0" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(head_only[k], pretrained[k]) for k in pretrained if k.startswith("net.features."))
    n_features = sum(v.numel() for k, v in pretrained.items() if k.startswith("net.features."))
    n_all = sum(v.numel() for k, v in pretrained.items() if k.startswith("net."))
    assert [int(t.replace(",", "")) for *_, t in table] == [n_all, n_all - n_features, n_all]
