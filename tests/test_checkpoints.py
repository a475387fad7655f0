"""Checkpoints are safe: every one gradlab writes loads with torch.load(weights_only=True); a
malicious checkpoint is refused without running its code; a corrupt or foreign file is a clear
error (exit 2) for train.py, eval.py and predict.py alike."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_script

from gradlab.checks.checkpoint import BadCheckpoint, load_checkpoint

PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _plain(value) -> bool:
    """Only containers, numbers, strings and tensors: what weights_only=True may unpickle."""
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, PLAIN)


@pytest.fixture(scope="module")
def houses(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "houses.csv"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = x @ [3.0, -2.0, 0.5] + 1
    path.write_text("size,age,rooms,price\n" + "".join(f"{a},{b},{c},{t}\n" for (a, b, c), t in zip(x, y)))
    return path


DATA = {
    "toy": ["data=toy"],
    "regression": ["data=regression", "data.n_features=2", "data.batch_size=16"],
    "diabetes": ["experiment=diabetes"],
    "csv": ["data=csv", "data.target=price", "data.features=[size,rooms]"],
}


@pytest.mark.slow
@pytest.mark.parametrize("data", DATA)
def test_every_checkpoint_a_run_writes_loads_with_weights_only(data, houses, tmp_path):
    extra = [f"data.path={houses}"] if data == "csv" else []
    proc = run_script("train.py", *DATA[data], *extra, "trainer.max_epochs=6", "trainer.check_val_every_n_epoch=1",
                      "callbacks.checkpoint.every_n_epochs=2", "callbacks.checkpoint.save_top_k=-1",
                      "name=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ckpts = sorted((tmp_path / "lightning_logs" / "run" / "version_0" / "checkpoints").glob("*.ckpt"))
    names = [p.name for p in ckpts]
    assert "last.ckpt" in names and sum(n.startswith("best-") for n in names) == 3, names  # epochs 1, 3, 5
    for path in ckpts:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert _plain(ckpt), path.name
        loaded = load_checkpoint(path)  # what train.py (resume), eval.py and predict.py load with
        assert all(torch.equal(loaded["state_dict"][k], v) for k, v in ckpt["state_dict"].items())
        if data == "csv":
            assert ckpt["datamodule_hyper_parameters"]["features"] == ["size", "rooms"]  # a list, not a ListConfig


class _RunsCode:
    """Unpickling this creates `marker`: the side effect a malicious checkpoint would have."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _good_bytes() -> bytes:
    from gradlab.lessons.linear import LinearRegressor

    model = LinearRegressor(n_features=1, optimizer=torch.optim.SGD)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gradlab-good-{os.getpid()}.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    data = path.read_bytes()
    path.unlink()
    return data


def _write_bad(kind: str, path: Path, marker: Path) -> None:
    if kind == "malicious":  # torch.save's zip format with a pickled call to os.mkdir inside
        torch.save({"state_dict": {}, "hyper_parameters": _RunsCode(marker)}, path)
    elif kind == "malicious_legacy_pickle":  # a bare pickle, as torch.load also reads
        path.write_bytes(pickle.dumps({"state_dict": _RunsCode(marker), "hyper_parameters": {}}, protocol=2))
    elif kind == "truncated":
        good = _good_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif kind == "truncated_tail":
        path.write_bytes(_good_bytes()[:-20])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "csv_text":
        path.write_text("x,y\n1,2\n")
    elif kind == "foreign_torch_file":
        torch.save({"weights": torch.ones(3)}, path)


BAD = {
    "malicious": "refused to load",
    "malicious_legacy_pickle": "refused to load",
    "truncated": "not a readable checkpoint",
    "truncated_tail": "not a readable checkpoint",
    "empty": "not a readable checkpoint",
    "random_bytes": "not a readable checkpoint",
    "csv_text": "not a readable checkpoint",
    "foreign_torch_file": "not a gradlab checkpoint",
}


def test_the_malicious_checkpoint_would_run_code_without_weights_only(tmp_path):
    """The oracle for the tests below: the payload is real, so its absence there means something."""
    marker = tmp_path / "pwned"
    _write_bad("malicious", tmp_path / "evil.ckpt", marker)
    torch.load(tmp_path / "evil.ckpt", weights_only=False)
    assert marker.is_dir()


@pytest.mark.parametrize("kind", BAD)
def test_load_checkpoint_refuses_a_bad_file_with_a_clear_error_and_runs_no_code(kind, tmp_path):
    marker = tmp_path / "pwned"
    _write_bad(kind, tmp_path / "bad.ckpt", marker)
    with pytest.raises(BadCheckpoint, match=BAD[kind]) as refused:
        load_checkpoint(tmp_path / "bad.ckpt")
    assert str(tmp_path / "bad.ckpt") in str(refused.value)
    assert not marker.exists()


def _assert_refused(proc, phrase: str, marker: Path, cwd: Path) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert phrase in out and "bad.ckpt" in out, out
    assert "Traceback" not in out
    assert not marker.exists()
    assert sorted(p.name for p in cwd.iterdir()) == ["bad.ckpt"]  # no run dir, no predictions.csv


@pytest.mark.slow
@pytest.mark.parametrize("kind", BAD)
def test_train_refuses_a_bad_checkpoint_to_resume_from(kind, tmp_path):
    marker = tmp_path.parent / f"pwned-{tmp_path.name}"  # outside cwd, which must stay empty
    _write_bad(kind, tmp_path / "bad.ckpt", marker)
    proc = run_script("train.py", "ckpt_path=bad.ckpt", cwd=tmp_path)
    _assert_refused(proc, BAD[kind], marker, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("script,args", [("eval.py", []), ("predict.py", ["x=[5]"])])
@pytest.mark.parametrize("kind", ["malicious", "truncated"])
def test_eval_and_predict_refuse_a_bad_checkpoint(kind, script, args, tmp_path):
    marker = tmp_path.parent / f"pwned-{tmp_path.name}"
    _write_bad(kind, tmp_path / "bad.ckpt", marker)
    proc = run_script(script, "ckpt_path=bad.ckpt", *args, cwd=tmp_path)
    _assert_refused(proc, BAD[kind], marker, tmp_path)


def test_resume_from_a_corrupt_last_checkpoint_is_refused_before_training(tmp_path):
    run_dir = tmp_path / "lightning_logs" / "default" / "version_0"
    (run_dir / "checkpoints").mkdir(parents=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    good = _good_bytes()
    last.write_bytes(good[: len(good) // 3])
    proc = run_script("train.py", "resume=true", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "not a readable checkpoint" in proc.stderr and "last.ckpt" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert sorted(p.name for p in (tmp_path / "lightning_logs" / "default").iterdir()) == ["version_0"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints"]  # nothing added to the old run
