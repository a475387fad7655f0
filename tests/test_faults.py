"""Faults and hostile files, through the command line (README "What happens when things go wrong"):
paths stay inside root_dir, a checkpoint is data, every file gradlab writes is complete or absent,
one process writes a run, and TensorBoard curves continue cleanly after a kill -9."""

from __future__ import annotations

import json
import os
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_script
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.run.checkpoints import AtomicCheckpointIO
from gradlab.run.files import atomic_file
from gradlab.run.rundirs import LOCK_NAME

QUICK = ["trainer.max_epochs=3", "print_config=false"]
CSV = ["data=csv", "data.path=points.csv", "data.target=y"]  # the data of the `trained` run
MORE = ["trainer.max_epochs=6", "print_config=false", *CSV]  # continuing it


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


@pytest.mark.parametrize("override", ["callbacks.last.filename=../../../escaped", "callbacks.last.filename=/tmp/x",
                                      "callbacks.checkpoint.filename='sub/best-{epoch}'",
                                      "callbacks.checkpoint.filename='{epoch}/../../out'"])
def test_a_checkpoint_file_name_that_leaves_checkpoints_is_refused(override, tmp_path):
    proc = run_script("train.py", *QUICK, override, cwd=tmp_path)
    _refused(proc, f"bad config value {override.split('=')[0]}=", "no folders, no '..'")
    assert list(tmp_path.iterdir()) == []


# -- 2. a checkpoint is data --------------------------------------------------------------------

RUN0 = Path("lightning_logs/default/version_0")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 3-epoch run on a CSV file, in a folder each test copies (paths inside are relative)."""
    cwd = tmp_path_factory.mktemp("trained")
    (cwd / "points.csv").write_text("x,y\n" + "".join(f"{i},{3 * i - 2}\n" for i in range(30)))
    proc = run_script("train.py", *QUICK, *CSV, cwd=cwd)
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
    proc = run_script("train.py", *MORE, "resume=true", cwd=cwd)
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
    proc = run_script("train.py", *MORE, "ckpt_path=copy.ckpt", cwd=cwd)
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


# -- 3. every file gradlab writes is complete or absent ---------------------------------------

def _run_limited(script: str, *args: str, cwd: Path, max_file_bytes: int, tmpdir: Path):
    """A script whose files may grow to max_file_bytes (a full disk, for each file), with $TMPDIR on
    another filesystem than the run (where a rename would turn into a copy)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit fails, as on a full disk

    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, preexec_fn=limit,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmpdir)})


def _partial_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture
def shm(tmp_path):
    """$TMPDIR on another filesystem than the runs (tmpfs, where the machine has one)."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    folder = Path(base) / f"gradlab-tmp-{os.getpid()}-{tmp_path.name}"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder)


@pytest.mark.slow
def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one_whole(trained, tmp_path, shm):
    cwd = _copy(trained, tmp_path)
    last = cwd / CKDIR / "last.ckpt"
    before = last.read_bytes()
    assert len(before) > 4000  # the limit below stops the checkpoint, not the small files
    proc = _run_limited("train.py", *MORE, "resume=true", "~callbacks.plots", cwd=cwd, max_file_bytes=4000,
                        tmpdir=shm)
    _refused(proc, f"cannot write {RUN0 / 'checkpoints' / 'last.ckpt'}", "File too large")
    assert last.read_bytes() == before  # the previous checkpoint, complete
    torch.load(last, weights_only=True)
    assert _partial_files(cwd) == [] and list(shm.iterdir()) == []


@pytest.mark.slow
def test_a_full_disk_while_writing_a_picture_leaves_no_partial_png(trained, tmp_path, shm):
    cwd = _copy(trained, tmp_path)
    fit = cwd / RUN0 / "fit.png"
    before = fit.read_bytes()
    proc = _run_limited("train.py", *MORE, "resume=true", cwd=cwd, max_file_bytes=len(before) // 2, tmpdir=shm)
    _refused(proc, f"cannot write {RUN0 / 'fit.png'}")
    assert fit.read_bytes() == before and _partial_files(cwd) == []


def test_a_full_disk_before_the_config_is_saved_leaves_no_partial_config(tmp_path, shm):
    proc = _run_limited("train.py", *QUICK, cwd=tmp_path, max_file_bytes=600, tmpdir=shm)
    _refused(proc, f"cannot write {RUN0 / 'config.yaml'}", "File too large")
    assert not (tmp_path / RUN0 / "config.yaml").exists() and _partial_files(tmp_path) == []


@pytest.mark.parametrize("root_dir", ["a_file/logs", "a_file"])
def test_a_root_dir_that_cannot_be_a_directory_exits_2_naming_it(root_dir, tmp_path):
    (tmp_path / "a_file").write_text("not a directory\n")
    proc = run_script("train.py", *QUICK, f"root_dir={root_dir}", cwd=tmp_path)
    _refused(proc, "cannot write a_file", "Not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.slow
def test_predict_writes_a_whole_csv_or_none(trained, tmp_path, shm):
    cwd = _copy(trained, tmp_path)
    (cwd / "out").mkdir()
    _refused(run_script("predict.py", "x=[5]", "output=out", cwd=cwd), "output=out: that is a directory")
    _refused(run_script("predict.py", "x=[]", cwd=cwd), "bad config value x=[]", "a list of inputs")
    under_a_file = run_script("predict.py", "x=[5]", "output=points.csv/p.csv", cwd=cwd)
    _refused(under_a_file, "cannot write points.csv/p.csv")
    (cwd / "many.csv").write_text("x\n" + "".join(f"{i}\n" for i in range(2000)))
    (cwd / "predictions.csv").write_text("x,prediction\n1,1\n")  # an earlier answer, kept on failure
    proc = _run_limited("predict.py", "input=many.csv", "output=predictions.csv", cwd=cwd, max_file_bytes=8000,
                        tmpdir=shm)
    _refused(proc, "cannot write predictions.csv", "File too large")
    assert (cwd / "predictions.csv").read_text() == "x,prediction\n1,1\n" and _partial_files(cwd) == []
    ok = run_script("predict.py", "input=many.csv", "output=predictions.csv", cwd=cwd)
    assert ok.returncode == 0 and len((cwd / "predictions.csv").read_text().splitlines()) == 2001, ok.stderr


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary_one(stop, tmp_path):
    """The instant a kill would land: between the first byte and the rename."""
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"the previous checkpoint")
    with pytest.raises((KeyboardInterrupt, OSError)):
        with atomic_file(target, "wb") as f:
            f.write(b"half of the new")
            raise stop
    assert target.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


# -- 4. one writer per run, and 7. curves continue cleanly after a kill -9 ---------------------

LONG = ["data.n_samples=400", "data.batch_size=4", "optimizer.lr=0.001", "optimizer.momentum=0.9",
        "trainer.log_every_n_steps=1", "callbacks.last.every_n_epochs=2", "print_config=false",
        "trainer.check_val_every_n_epoch=2"]  # ModelCheckpoint saves on validation epochs if they are sparser
STARTED = "gradlab: training;"


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    flags = [a for a in args if a == "-m"]  # Hydra takes -m before the overrides
    rest = [a for a in args if a != "-m"]
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *flags, *LONG, *rest], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for(proc: subprocess.Popen, start: str) -> None:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(start):
            return
    raise AssertionError("never got to " + start + ":\n" + "".join(lines))


@pytest.mark.slow
def test_a_second_writer_of_a_run_in_use_is_refused_naming_the_holder(tmp_path):
    first = run_script("train.py", *LONG, "trainer.max_epochs=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    holder = _start(tmp_path, "trainer.max_epochs=10000", "callbacks.last.every_n_epochs=10000", "resume=true")
    try:
        _wait_for(holder, STARTED)
        for how in (["resume=true"], [f"ckpt_path={RUN0 / 'checkpoints' / 'last.ckpt'}"]):
            proc = run_script("train.py", *LONG, "trainer.max_epochs=10000", *how, cwd=tmp_path)
            _refused(proc, f"the run {RUN0} is in use by host ", f"pid {holder.pid}")
            assert holder.poll() is None
        lock = (tmp_path / RUN0 / LOCK_NAME).read_text()
        assert f"pid {holder.pid}" in lock
        # the refused ones added no run directory and recorded no resume (the holder's is the only one)
        assert sorted(p.name for p in (tmp_path / "lightning_logs/default").iterdir()) == ["version_0"]
        assert len(OmegaConf.load(tmp_path / RUN0 / "resumes.yaml")) == 1
        fresh = run_script("train.py", *LONG, "trainer.max_epochs=1", cwd=tmp_path)  # a new run is no writer of it
        assert fresh.returncode == 0 and "version_1" in fresh.stdout, fresh.stderr
    finally:
        holder.kill()
        holder.communicate()
    # the lock went with the killed process: the run can be continued
    last = RUN0 / "checkpoints" / "last.ckpt"
    again = run_script("train.py", *LONG, "trainer.max_epochs=3", f"ckpt_path={last}", cwd=tmp_path)
    assert again.returncode == 0 and f"continuing {RUN0} from epoch 2" in again.stdout, again.stdout + again.stderr


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


@pytest.mark.slow
def test_after_kill_9_and_resume_tensorboard_shows_every_step_once(tmp_path):
    epochs = ["trainer.max_epochs=16"]  # long enough to be killed soon after its first checkpoint (epoch 2)
    whole = run_script("train.py", *LONG, *epochs, "name=whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    killed = _start(tmp_path, *epochs, "name=killed")
    last = tmp_path / "lightning_logs/killed/version_0/checkpoints/last.ckpt"
    _wait_for(killed, STARTED)
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # well after the checkpoint: steps beyond it reach the event file, then the kill
    assert killed.poll() is None, "the run ended before the kill: make it longer"
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    run_dir = last.parent.parent
    at_kill = _scalars(run_dir)["train/loss"]
    step = torch.load(last, weights_only=True)["global_step"]
    # the event file had reached the checkpoint (and maybe beyond): a checkpoint after N steps follows the
    # loss of step N - 1 (steps count from 0), which the flush at the checkpoint wrote
    assert at_kill[-1][0] >= step - 1 and step > 0
    resumed = run_script("train.py", *LONG, *epochs, "name=killed", "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    ours, reference = _scalars(run_dir), _scalars(tmp_path / "lightning_logs/whole/version_0")
    assert set(ours) == set(reference) and "train/loss" in ours and "val/loss" in ours
    steps = [s for s, _ in ours["train/loss"]]
    assert steps == sorted(set(steps)) == list(range(len(steps))), "train/loss: a step shown twice, or a hole"
    for tag in reference:  # Lightning writes `epoch` twice at an epoch's last step, in any run: compare
        assert [s for s, _ in ours[tag]] == [s for s, _ in reference[tag]], f"{tag}: a hole or an extra step"
        assert ours[tag] == reference[tag], tag  # and the same values: the run continued exactly


# -- 5. resume means one thing -----------------------------------------------------------------

@pytest.mark.slow
def test_resume_continues_the_newest_run_or_says_which_runs_have_a_checkpoint(trained, tmp_path):
    cwd = _copy(trained, tmp_path)
    (cwd / "lightning_logs/default/version_1/checkpoints").mkdir(parents=True)  # killed before its first one
    before = _files(cwd)
    proc = run_script("train.py", *MORE, "resume=true", cwd=cwd)
    _refused(proc, "the newest run of 'default', lightning_logs/default/version_1, has no checkpoints/last.ckpt",
             f"ckpt_path={RUN0 / 'checkpoints' / 'last.ckpt'}")
    assert _files(cwd) == before
    chosen = run_script("train.py", *MORE, f"ckpt_path={RUN0 / 'checkpoints' / 'last.ckpt'}", cwd=cwd)
    assert chosen.returncode == 0 and f"run dir {RUN0}" in chosen.stdout, chosen.stderr
    assert torch.load(cwd / CKDIR / "last.ckpt", weights_only=True)["epoch"] == 6


FIRST = ["data.n_features=3", "optimizer.momentum=0.5", "trainer.max_epochs=3", "print_config=false"]
NOT_ON_RESUME = {
    "another optimizer class": (["optimizer=adam"], "optimizer._target_: 'torch.optim.SGD' in the run, "
                                                    "'torch.optim.Adam' now"),
    "other data": (["data.n_features=1"], "data.n_features: 3 in the run, 1 now"),
    "other data noise": (["data.noise=5"], "data.noise: 20.0 in the run, 5 now"),
    "another model": (["model.bias=false"], "model.bias: True in the run, False now"),
    "another seed": (["seed=7"], "seed: 42 in the run, 7 now"),
    "other momentum": (["optimizer.momentum=0.9"], "optimizer.momentum: 0.5 in the run, 0.9 now"),
}


@pytest.fixture(scope="module")
def three_features(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("three_features")
    proc = run_script("train.py", *FIRST, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd


@pytest.mark.slow
@pytest.mark.parametrize("case", NOT_ON_RESUME)
def test_a_resume_that_changes_what_the_run_was_trained_with_exits_2_showing_the_difference(
        case, three_features, tmp_path):
    cwd = tmp_path / "work"
    shutil.copytree(three_features, cwd)
    before = _files(cwd)
    change, said = NOT_ON_RESUME[case]
    proc = run_script("train.py", "trainer.max_epochs=6", *change, "resume=true", cwd=cwd)
    _refused(proc, "resume: this command line changes what the run", said, "config.yaml")
    assert _files(cwd) == before


@pytest.mark.slow
def test_a_resume_starts_from_the_runs_config_and_its_new_lr_takes_effect(three_features, tmp_path):
    cwd = tmp_path / "work"
    shutil.copytree(three_features, cwd)
    # nothing of FIRST repeated: the three features and the momentum come from the run's config.yaml
    proc = run_script("train.py", "trainer.max_epochs=6", "optimizer.lr=0.5", "resume=true", cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ckpt = torch.load(cwd / CKDIR / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 6 and list(ckpt["state_dict"]["net.lin.weight"].shape) == [1, 3]
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["lr"] == 0.5 and group["momentum"] == 0.5  # Lightning alone would have kept lr 0.01
    assert OmegaConf.load(cwd / RUN0 / "resumes.yaml") == [["trainer.max_epochs=6", "optimizer.lr=0.5",
                                                            "resume=true"]]
    assert OmegaConf.load(cwd / RUN0 / "config.yaml").optimizer.lr == 0.5  # what the next resume continues
    again = run_script("train.py", "trainer.max_epochs=7", "resume=true", cwd=cwd)
    assert again.returncode == 0, again.stderr
    ckpt = torch.load(cwd / CKDIR / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 7 and ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == 0.5
    assert len(OmegaConf.load(cwd / RUN0 / "resumes.yaml")) == 2


# -- 6. signals in every phase ------------------------------------------------------------------

# a short fit and validation, then a long test stage (50,000 rows in batches of 2): a signal that
# comes a while after the start lands in the imports, setup, fit, validation or test


def _slow_stages(n_samples: int = 100_000, batch_size: int | str = 2) -> list[str]:
    return [f"data.n_samples={n_samples}", "data.val_fraction=0.0002", "data.test_fraction=0.5",
            f"data.batch_size={batch_size}", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
            "print_config=false", "~callbacks.plots", "~callbacks.histograms"]


CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _signalled(args: list[str], signum: int, after_s: float, cwd: Path, script: str = "train.py") -> str:
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / script), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    time.sleep(after_s)
    assert proc.poll() is None, "it ended before the signal: make it longer"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    both = out + err
    assert proc.returncode == CODES[signum], (after_s, both)
    assert "Traceback" not in both, both
    return both


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("after_s", [0.3, 1.5, 4.0, 8.0])
def test_a_signal_in_any_phase_of_train_py_exits_130_or_143_and_leaves_whole_files(signum, after_s, tmp_path):
    _signalled(_slow_stages(), signum, after_s, tmp_path)
    assert _partial_files(tmp_path) == []
    for ckpt in tmp_path.rglob("*.ckpt"):
        torch.load(ckpt, weights_only=True)  # whatever was written is whole


@pytest.fixture(scope="module")
def slow_to_test(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("slow_to_test")
    proc = run_script("train.py", *_slow_stages(1000, "null"), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    ckpt = cwd / CKDIR / "last.ckpt"
    # the same model, now with a test split of 50,000 rows in batches of 2 (eval rebuilds the data from it)
    _craft(ckpt, lambda c: c["datamodule_hyper_parameters"].update(n_samples=100_000, batch_size=2))
    return cwd


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("after_s", [0.3, 2.0, 5.0])
def test_a_signal_in_any_phase_of_eval_py_exits_130_or_143(signum, after_s, slow_to_test):
    out = _signalled([], signum, after_s, slow_to_test, script="eval.py")
    assert "gradlab: stopped by" in out or "interrupted" in out, out


def _continue_command(out: str) -> str:
    """The printed continue-command, made runnable from anywhere (the script's absolute path)."""
    lines = out.splitlines()
    command = lines[lines.index(next(ln for ln in lines if ln.endswith("Continue with:"))) + 1].strip()
    assert command.startswith("python scripts/train.py "), command
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'scripts' / 'train.py'))}" + \
        command[len("python scripts/train.py"):]


@pytest.mark.slow
@pytest.mark.parametrize("sweep,chdir", [(False, False), (True, True)],
                         ids=["run", "sweep with hydra.job.chdir=true"])  # a sweep's job folder, shown from here
def test_the_printed_continue_command_works_when_pasted_into_a_shell(sweep, chdir, tmp_path):
    args = [*LONG, "trainer.max_epochs=4", "name=my run", "predict_x=[5,7]"]
    args += ["-m", "optimizer.lr=0.001,0.002"] if sweep else []
    args += ["hydra.job.chdir=true"] if chdir else []  # jobs run in their folders; the command is pasted here
    proc = _start(tmp_path, *args[len(LONG):])
    _wait_for(proc, STARTED)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out
    command = _continue_command(out)
    pasted = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert pasted.returncode == 0, command + "\n" + pasted.stdout + pasted.stderr
    ckpts = sorted(tmp_path.rglob("last.ckpt"))
    assert len(ckpts) == 1  # the interrupted run (or sweep job) continued in its own directory
    assert torch.load(ckpts[0], weights_only=True)["epoch"] == 4
    if sweep:
        assert "/sweep-" in str(ckpts[0]) and ",lr=0.001," in ckpts[0].parent.parent.name, ckpts


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill of the sweep's process", "Ctrl-C at a terminal, in an Optuna search"])
def test_a_stopped_parallel_sweep_leaves_every_started_job_continuable_with_its_printed_command(how, tmp_path):
    """hydra/launcher=joblib, two workers, three jobs (or Optuna's batches of two). A Ctrl-C reaches every
    process of the terminal's group; a `kill` reaches the sweep's process only, which passes it on. Either
    way each running job ends its epoch with a checkpoint, no other starts (the third job, Optuna's next
    batch), and the sweep prints each job's command; run as printed, each continues its own job
    folder to the end."""
    signum = signal.SIGINT if how.startswith("Ctrl-C") else signal.SIGTERM
    if "Optuna" in how:  # it picks the optimiser and its rate
        args = [a for a in LONG if not a.startswith("optimizer.")]
        args += ["hparams_search=lr", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4"]
    else:
        args = [*LONG, "optimizer.lr=0.001,0.002,0.003"]
    args += ["trainer.max_epochs=4", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.job.chdir=true"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), "-m", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    started = []
    for line in proc.stdout:
        started += [line] if line.startswith(STARTED) else []
        if len(started) == 2:  # both workers train
            break
    assert len(started) == 2, "the sweep ended before both jobs trained"
    if how.startswith("Ctrl-C"):
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signum, out
    assert "Traceback" not in out and "leaked" not in out, out
    lines = out.splitlines()
    listed = lines[lines.index(next(ln for ln in lines if ln.endswith("Continue each with:"))):]
    commands = [ln.strip() for ln in listed if ln.strip().startswith("python scripts/train.py ")]
    sweep = next((tmp_path / "lightning_logs" / "default").glob("sweep-*"))
    jobs = [p for p in sweep.iterdir() if p.is_dir()]
    results = {p.name: json.loads((p / "result.json").read_text())["status"] for p in jobs}
    # every job folder is a job that ran; a job on a loaded machine may have finished before the stop
    assert set(results.values()) <= {"interrupted", "finished"} and "interrupted" in results.values(), results
    assert len(commands) == list(results.values()).count("interrupted"), out
    # none started after the stop: two jobs, one each worker, unless one finished before it (a loaded machine)
    assert len(jobs) == 2 or "finished" in results.values(), results
    assert _partial_files(tmp_path) == []
    for command in commands:  # split as a shell splits it (a real shell: the test above)
        pasted = run_script("train.py", *shlex.split(command)[2:], cwd=tmp_path)
        assert pasted.returncode == 0, command + "\n" + pasted.stdout + pasted.stderr
    for job in jobs:  # each continued in its own folder, to the end
        assert torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 4, job
    assert not list((tmp_path / "lightning_logs" / "default").glob("version_*"))


@pytest.mark.slow
def test_a_ctrl_c_while_a_parallel_sweeps_jobs_set_up_exits_130_with_no_traceback(tmp_path):
    """Both workers have begun their jobs (imports, data, model, or already training: a random moment
    of the next 2.5 s): no traceback from a worker or from joblib, and every job folder left says what
    became of the job: finished, not trained (no checkpoint: started again with -m), or interrupted
    with its checkpoint."""
    after_s = random.uniform(0.0, 2.5)
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), "-m", "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2", *QUICK, "optimizer.lr=0.001,0.002,0.003"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    begun = 0
    for line in proc.stdout:
        begun += line.startswith("gradlab: run directory")
        if begun == 2:
            break
    time.sleep(after_s)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode in (0, 130) and "Traceback" not in out and "TerminatedWorkerError" not in out, \
        f"Ctrl-C {after_s:.2f} s after both jobs began:\n{out}"
    sweep = next((tmp_path / "lightning_logs" / "default").glob("sweep-*"))
    for job in (p for p in sweep.iterdir() if p.is_dir()):
        status = json.loads((job / "result.json").read_text())["status"]  # an empty folder is removed
        assert status in ("finished", "not trained") or \
            (status == "interrupted" and (job / "checkpoints" / "last.ckpt").is_file()), (job, status)
    assert _partial_files(tmp_path) == []


def test_the_ctrl_c_and_the_sigterm_of_one_stop_arrive_in_either_order_and_stop_once():
    """A sweep's worker gets the terminal's Ctrl-C and the SIGTERM the sweep's process passes on: one
    stop at the end of the epoch, whichever comes first; only a second Ctrl-C stops at once."""
    from gradlab.run.stopping import GracefulStop

    for first, second in [(signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)]:
        stop = GracefulStop()
        stop._handle(first, None)
        stop._handle(second, None)  # the same stop: no KeyboardInterrupt
        assert stop.signum == first
        with pytest.raises(KeyboardInterrupt):
            stop._handle(signal.SIGINT, None)  # the user's second Ctrl-C


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("after_s", [0.3, 1.5])
def test_a_signal_while_predict_py_starts_exits_130_or_143_and_writes_no_csv(signum, after_s, slow_to_test):
    _signalled(["x=[5]", "output=signalled.csv"], signum, after_s, slow_to_test, script="predict.py")
    assert not (slow_to_test / "signalled.csv").exists() and _partial_files(slow_to_test) == []


# -- 8. eval.py notices changed data --------------------------------------------------------------

@pytest.mark.slow
def test_eval_says_so_when_the_test_split_differs_from_the_one_the_checkpoint_was_tested_on(trained, tmp_path):
    cwd = _copy(trained, tmp_path)
    same = _eval(cwd)
    assert same.returncode == 0 and "differs from the one" not in same.stdout, same.stdout + same.stderr
    recorded = torch.load(cwd / CKDIR / "last.ckpt", weights_only=True)["CsvDataModule"]["test_fingerprint"]
    assert isinstance(recorded, str) and len(recorded) == 16
    (cwd / "points.csv").write_text("x,y\n" + "".join(f"{i},{3 * i - 1}\n" for i in range(30)))  # every y + 1
    edited = _eval(cwd)
    assert edited.returncode == 0, edited.stderr
    assert "the test split of CsvDataModule(path='points.csv'" in edited.stdout, edited.stdout
    assert f"recorded {recorded}" in edited.stdout and "not the numbers the run logged" in edited.stdout
    (cwd / "points.csv").write_text((trained / "points.csv").read_text())  # put back: quiet again
    assert "differs from the one" not in _eval(cwd).stdout


def test_every_write_is_fsynced_before_it_replaces_the_file(tmp_path, monkeypatch):
    """A rename before the data reaches the disk can leave an empty file after a power cut: the
    temporary file's fsync must come first, for every file gradlab writes (atomic_file, result.json,
    a sweep's summary go through it)."""
    from gradlab.run import rundirs

    calls = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append(("replace", str(a))) or replace(a, b))
    with atomic_file(tmp_path / "a.txt") as f:
        f.write("a")
    rundirs.write_result(tmp_path, {"status": "finished"})
    assert [c[0] for c in calls] == ["fsync", "replace"] * 2
    for (_, synced), (_, renamed) in zip(calls[::2], calls[1::2]):
        assert synced == renamed  # the file renamed is the file synced
    assert (tmp_path / "a.txt").read_text() == "a" and (tmp_path / "result.json").is_file()
