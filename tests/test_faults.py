"""Faults and hostile files, through the command line (README "What happens when things go wrong"):
paths stay inside root_dir, a checkpoint is data, every file gradlab writes is complete or absent,
one process writes a run, and TensorBoard curves continue cleanly after a kill -9."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_script

from gradlab.safety import AtomicCheckpointIO

QUICK = ["trainer.max_epochs=3", "print_config=false"]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under root with its size and mtime: what "nothing touched" compares."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def _refused(proc, *phrases: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    for phrase in phrases:
        assert phrase in out, (phrase, out)
    return out


# -- 1. paths stay home -------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["train.py", "eval.py", "predict.py"])
@pytest.mark.parametrize("name", ["../../elsewhere", "/tmp/gradlab-absolute", "a/b", "..", ".", "''", "' x'",
                                  "a\\\\b"])
def test_a_name_that_is_not_one_path_component_is_refused_and_nothing_is_written(script, name, tmp_path):
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    proc = run_script(script, f"name={name}", cwd=cwd)
    _refused(proc, "bad config value name=", "a single directory name")
    assert _files(tmp_path) == {"work": _files(tmp_path)["work"], "work/here": _files(tmp_path)["work/here"]}
    assert not Path("/tmp/gradlab-absolute").exists()


# -- 2. a checkpoint is data --------------------------------------------------------------------

RUN0 = Path("lightning_logs/default/version_0")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 3-epoch run on a CSV file, in a folder each test copies (paths inside are relative)."""
    cwd = tmp_path_factory.mktemp("trained")
    (cwd / "points.csv").write_text("x,y\n" + "".join(f"{i},{3 * i - 2}\n" for i in range(30)))
    proc = run_script("train.py", *QUICK, "data=csv", "data.path=points.csv", "data.target=y", cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd


def _copy(trained: Path, tmp_path: Path) -> Path:
    cwd = tmp_path / "work"
    shutil.copytree(trained, cwd, symlinks=True)
    victim = cwd / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    return cwd


def _craft(ckpt_file: Path, change) -> None:
    ckpt = torch.load(ckpt_file, weights_only=True)
    change(ckpt)
    torch.save(ckpt, ckpt_file)


def _each_checkpoint_state(value_of):
    def change(ckpt):
        for state in ckpt["callbacks"].values():
            state.update(value_of(state))
    return change


CKDIR = str(RUN0 / "checkpoints")
HOSTILE = {
    # Lightning's own inside-dirpath test does not resolve '..': this is the file that deleted a directory
    "best_model_path with ..": lambda cwd: {"best_model_path": f"{CKDIR}/../../../../victim"},
    "last_model_path absolute": lambda cwd: {"last_model_path": str(cwd / "victim" / "precious.txt")},
    "best_k_models outside": lambda cwd: {"best_k_models": {str(cwd / "victim"): torch.tensor(1.0)},
                                          "kth_best_model_path": str(cwd / "victim")},
    "a link out of checkpoints/": lambda cwd: {"kth_best_model_path": f"{CKDIR}/escape"},
    "dirpath elsewhere": lambda cwd: {"dirpath": str(cwd / "victim")},
    "a path that is not text": lambda cwd: {"best_model_path": 5},
}


@pytest.mark.slow
@pytest.mark.parametrize("case", HOSTILE)
def test_resume_refuses_a_checkpoint_whose_callbacks_name_paths_outside_its_run(case, trained, tmp_path):
    cwd = _copy(trained, tmp_path)
    (cwd / CKDIR / "escape").symlink_to(cwd / "victim")
    _craft(cwd / CKDIR / "last.ckpt", _each_checkpoint_state(lambda state: HOSTILE[case](cwd)))
    before = _files(cwd)
    proc = run_script("train.py", "trainer.max_epochs=6", "print_config=false", "data=csv", "data.path=points.csv",
                      "data.target=y", "resume=true", cwd=cwd)
    _refused(proc, "last.ckpt: refused", "not inside this run's checkpoint folder")
    assert _files(cwd) == before  # the victim, the run, its checkpoints: nothing touched
    assert (cwd / "victim" / "precious.txt").read_text() == "keep me\n"


@pytest.mark.slow
def test_a_checkpoint_from_outside_any_run_may_not_aim_into_the_new_run(trained, tmp_path):
    """ckpt_path=copy.ckpt starts a new run (version_1): a path written under its checkpoints/ that
    resolves elsewhere is what Lightning would delete; the claimed version_1 is given back."""
    cwd = _copy(trained, tmp_path)
    shutil.copy(cwd / CKDIR / "last.ckpt", cwd / "copy.ckpt")
    target = "lightning_logs/default/version_1/checkpoints/../../../../victim"
    _craft(cwd / "copy.ckpt", _each_checkpoint_state(lambda state: {"best_model_path": target}))
    before = _files(cwd)
    proc = run_script("train.py", "trainer.max_epochs=6", "print_config=false", "data=csv", "data.path=points.csv",
                      "data.target=y", "ckpt_path=copy.ckpt", cwd=cwd)
    _refused(proc, "copy.ckpt: refused", "best_model_path=")
    after = _files(cwd)
    after.pop("lightning_logs/default"), before.pop("lightning_logs/default")  # its mtime: version_1 came and went
    assert after == before


def test_the_checkpoint_writer_removes_only_plain_files_in_its_own_folder(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "a.ckpt").write_text("x")
    (folder / "inner").mkdir()
    (folder / "old.ckpt").write_text("x")
    (folder / "link.ckpt").symlink_to(tmp_path / "victim" / "a.ckpt")
    io = AtomicCheckpointIO(folder)
    for hostile in (folder / ".." / ".." / "victim", tmp_path / "victim" / "a.ckpt", folder / "inner",
                    folder / "link.ckpt"):
        io.remove_checkpoint(hostile)
    assert (tmp_path / "victim" / "a.ckpt").is_file() and (folder / "inner").is_dir()
    assert (folder / "link.ckpt").is_symlink()
    io.remove_checkpoint(folder / "old.ckpt")
    assert not (folder / "old.ckpt").exists()


def _eval(cwd: Path, *args: str):
    return run_script("eval.py", *args, cwd=cwd)


@pytest.mark.slow
def test_eval_reads_the_data_file_the_run_names_never_the_one_a_checkpoint_names(trained, tmp_path):
    cwd = _copy(trained, tmp_path)
    honest = _eval(cwd)
    assert honest.returncode == 0, honest.stderr
    (cwd / "secret.csv").write_text("x,y\n" + "".join(f"{i},{-7 * i}\n" for i in range(30)))
    _craft(cwd / CKDIR / "last.ckpt", lambda c: c["datamodule_hyper_parameters"].update(path="secret.csv"))
    crafted = _eval(cwd)
    assert crafted.returncode == 0, crafted.stderr
    assert crafted.stdout == honest.stdout  # the same numbers: points.csv, as the run's config.yaml says
    (cwd / RUN0 / "config.yaml").unlink()  # no record of the run's data: the file is not trusted either
    _refused(_eval(cwd), "no config.yaml of its run says which", "data_path=")
    assert _eval(cwd, "data_path=points.csv").stdout == honest.stdout


STORED = {
    "model optimization": (lambda c: c["hyper_parameters"].update(optimization="magic"),
                           "model.optimization='magic'"),
    "model n_features": (lambda c: c["hyper_parameters"].update(n_features=-1), "n_features=-1"),
    "data fraction": (lambda c: c["datamodule_hyper_parameters"].update(val_fraction=7), "data.val_fraction=7"),
    "data fractions together": (
        lambda c: c["datamodule_hyper_parameters"].update(val_fraction=0.6, test_fraction=0.6), "add up to"),
}


@pytest.mark.slow
@pytest.mark.parametrize("script,args", [("eval.py", []), ("predict.py", ["x=[5]"])])
@pytest.mark.parametrize("case", STORED)
def test_stored_hyperparameters_pass_the_config_rules_before_use(case, script, args, trained, tmp_path):
    cwd = _copy(trained, tmp_path)
    change, said = STORED[case]
    _craft(cwd / CKDIR / "last.ckpt", change)
    before = _files(cwd)
    _refused(run_script(script, *args, cwd=cwd), "last.ckpt: its stored hyperparameter", said)
    assert _files(cwd) == before
