"""A run folder is data (README "What happens when things go wrong"): nothing read from disk runs code
or steers a write, every stored value is checked before use, every refusal comes before the first
folder or file, and a continued run only moves forward. Each case is what an attacker or a tired
user would do, through the command line, and checks that nothing was written."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, run_script

QUICK = ["trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2"]
RUN = Path("lightning_logs/default/version_0")


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file, folder and link under root with its size and mtime: what "nothing touched" compares."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def _refused(proc, *phrases: str, code: int = 2) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out, out
    for phrase in phrases:
        assert phrase in out, (phrase, out)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 4-epoch run (checkpoints at steps 2 and 4) in a folder each test copies."""
    cwd = tmp_path_factory.mktemp("trained")
    proc = run_script("train.py", *QUICK, "callbacks.last.every_n_epochs=2", cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd


@pytest.fixture
def work(trained, tmp_path) -> Path:
    cwd = tmp_path / "work"
    shutil.copytree(trained, cwd, symlinks=True)
    (cwd / "victim.txt").write_text("keep me\n")
    return cwd


# -- 1. nothing read from disk runs code or names a path -------------------------------------------

PLANTED = {
    "a profiler that copies files": ("trainer.profiler", {"_target_": "shutil.copyfile", "src": "a", "dst": "b"}),
    "a callback of its own": ("callbacks.sneaky", {"_target_": "os.system", "command": "touch pwned"}),
    "a class in place of the data's": ("data._target_", "builtins.exec"),
    "a checkpoint folder elsewhere": ("callbacks.checkpoint.dirpath", "/tmp"),
}


@pytest.mark.parametrize("case", PLANTED)
def test_a_resume_refuses_what_a_planted_config_yaml_would_build_or_write(case, work):
    key, value = PLANTED[case]
    config = work / RUN / "config.yaml"
    saved = yaml.safe_load(config.read_text())
    node = saved
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    config.write_text(yaml.safe_dump(saved))
    before = _files(work)
    proc = run_script("train.py", "resume=true", "trainer.max_epochs=6", cwd=work)
    _refused(proc, str(RUN / "config.yaml"), key.split("._target_")[0])
    assert _files(work) == before and not (work / "pwned").exists() and not (work / "b").exists()


@pytest.mark.parametrize("link", ["gradlab.lock", "result.json", "checkpoints/best.ckpt", "eval"])
def test_a_run_folder_holding_a_planted_link_is_refused_before_any_write(link, work):
    (work / RUN / link).unlink(missing_ok=True)  # a file gradlab wrote, replaced by a link
    (work / RUN / link).symlink_to(work / "victim.txt")
    before = _files(work)
    script, args = ("eval.py", []) if link == "eval" else ("train.py", ["resume=true", "trainer.max_epochs=6"])
    proc = run_script(script, *args, cwd=work)
    _refused(proc, "symbolic links", link.split("/")[-1])
    assert _files(work) == before
    assert (work / "victim.txt").read_text() == "keep me\n"


# -- 2. every stored value is checked before use -------------------------------------------------

def _softmax_run(cwd: Path) -> Path:
    proc = run_script("train.py", "experiment=course_softmax", "trainer.max_epochs=3", "name=wine", cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd / "lightning_logs/wine/version_0/checkpoints/last.ckpt"


CRAFTED = {
    "the step counter as text": (lambda c: c.__setitem__("global_step", "12"), "global_step"),
    "a negative epoch": (lambda c: c.__setitem__("epoch", -3), "epoch"),
    "a mean of the wrong length": (lambda c: c["WineDataModule"].update(x_mean=[0.0] * 3, x_std=[1.0] * 3),
                                   "WineDataModule.x_mean"),
    "a zero std": (lambda c: c["WineDataModule"].update(x_std=[0.0] * 13), "WineDataModule.x_std"),
    "fewer class names than outputs": (lambda c: c["WineDataModule"].update(classes=["a", "b"]),
                                       "WineDataModule.classes"),
    "feature names that are not text": (lambda c: c["WineDataModule"].update(feature_names=[1] * 13),
                                        "WineDataModule.feature_names"),
    "a best score that is not a number": (
        lambda c: [s.update(best_model_score="x") for s in c["callbacks"].values()], "best_model_score"),
    "optimiser state of another shape": (
        lambda c: c["optimizer_states"][0]["state"].update({0: {"momentum_buffer": torch.zeros(2, 2)}}),
        "optimizer_states[0].state[0].momentum_buffer"),
    "a learning rate that is not a number": (
        lambda c: c["optimizer_states"][0]["param_groups"][0].update(lr="fast"), "param_groups.lr"),
}


@pytest.fixture(scope="module")
def wine(tmp_path_factory) -> Path:
    return _softmax_run(tmp_path_factory.mktemp("wine"))


@pytest.mark.parametrize("script", ["eval.py", "predict.py", "train.py"])
@pytest.mark.parametrize("case", CRAFTED)
def test_a_crafted_checkpoint_value_is_refused_naming_the_entry_before_anything_is_written(case, script, wine,
                                                                                          tmp_path):
    change, entry = CRAFTED[case]
    ckpt = torch.load(wine, weights_only=True)
    change(ckpt)
    crafted = tmp_path / "crafted.ckpt"
    torch.save(ckpt, crafted)
    args = {"eval.py": [], "predict.py": ["x=[0]", "output=out.csv"],
            "train.py": ["experiment=course_softmax", "trainer.max_epochs=5"]}[script]
    before = _files(tmp_path)
    proc = run_script(script, f"ckpt_path={crafted}", *args, cwd=tmp_path)
    _refused(proc, "crafted.ckpt", entry)
    assert _files(tmp_path) == before


# -- 3. every refusal comes before the first folder or file -------------------------------------

REFUSED = {
    "a sweep with a bad name": (["-m", "name=../x", "optimizer.lr=0.1,0.01"], "name='../x'"),
    "every device of a CPU": (["trainer.devices=-1"], "`devices` selected with `CPUAccelerator`"),
    "a GPU-only strategy": (["trainer.strategy=fsdp"], "fsdp"),
    "a precision Lightning lacks": (["+trainer.precision=banana"], "banana"),
    "a home folder left to Hydra": (["root_dir='~/runs'"], "without '~' or '$'"),
    "a variable left to Hydra": (["root_dir='$HOME/runs'"], "without '~' or '$'"),
    "last.ckpt as a link to an old best": (["callbacks.checkpoint.save_last=link"], "'link' is refused"),
    "a sweep that continues runs": (["-m", "resume=true", "optimizer.lr=0.1,0.01"], "cannot continue runs"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_command_line_leaves_no_folder_or_file(case, tmp_path):
    args, phrase = REFUSED[case]
    proc = run_script("train.py", *args, *QUICK, cwd=tmp_path)
    _refused(proc, phrase)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_never_writes_into_another_sweeps_folder(tmp_path):
    sweep = ["-m", "hydra.sweep.dir=fixed", "optimizer.lr=0.1", *QUICK]
    assert run_script("train.py", *sweep, cwd=tmp_path).returncode == 0
    before = _files(tmp_path)
    _refused(run_script("train.py", *sweep, cwd=tmp_path), "exists already")
    assert _files(tmp_path) == before


def test_print_config_prints_markup_in_a_value_literally(tmp_path):
    proc = run_script("train.py", "print_config=true", "root_dir='runs[/b]x'", "trainer.max_epochs=2",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "root_dir: runs[/b]x" in proc.stdout


# -- 4. a continued run only moves forward -------------------------------------------------------

def test_continuing_from_a_checkpoint_older_than_the_runs_newest_is_refused_with_the_choices(work):
    older = work / RUN / "checkpoints" / "at_step_4.ckpt"  # as a best checkpoint of a run that went on
    shutil.copy(work / RUN / "checkpoints" / "last.ckpt", older)
    assert run_script("train.py", "resume=true", "trainer.max_epochs=6", cwd=work).returncode == 0
    before = _files(work)
    proc = run_script("train.py", f"ckpt_path={older.relative_to(work)}", "trainer.max_epochs=8", cwd=work)
    _refused(proc, "older than its run's newest state", "resume=true", "start a new run from these weights")
    assert _files(work) == before


def test_a_resume_on_changed_data_is_refused_naming_the_split(tmp_path):
    (tmp_path / "p.csv").write_text("x,y\n" + "".join(f"{i},{3 * i + 1}\n" for i in range(40)))
    csv = ["data=csv", "data.path=p.csv", "data.target=y"]
    assert run_script("train.py", *csv, *QUICK, cwd=tmp_path).returncode == 0
    (tmp_path / "p.csv").write_text((tmp_path / "p.csv").read_text().replace("\n5,16\n", "\n5,17\n"))
    before = _files(tmp_path / "lightning_logs")
    proc = run_script("train.py", *csv, "resume=true", "trainer.max_epochs=6", cwd=tmp_path)
    _refused(proc, "no longer the rows the run was trained on", "train")
    assert _files(tmp_path / "lightning_logs") == before


def test_a_checkpoint_from_outside_any_run_with_another_optimiser_starts_it_fresh_and_says_so(work):
    shutil.copy(work / RUN / "checkpoints" / "last.ckpt", work / "sgd.ckpt")
    proc = run_script("train.py", "ckpt_path=sgd.ckpt", "optimizer=adam", "trainer.max_epochs=3", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the optimiser starts fresh, from epoch 0" in proc.stdout
    new = torch.load(work / "lightning_logs/default/version_1/checkpoints/last.ckpt", weights_only=True)
    assert new["epoch"] == 3 and "betas" in new["optimizer_states"][0]["param_groups"][0]


def test_resuming_a_run_with_another_optimizer_class_still_exits_2(work):
    proc = run_script("train.py", "resume=true", "optimizer=adam", "trainer.max_epochs=6", cwd=work)
    _refused(proc, "optimizer._target_")


# -- 5. stops and full disks ----------------------------------------------------------------------

def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_run_in_the_folder(work):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = work / RUN / f".last.ckpt.{dead.stdout.strip()}.abcd1234.tmp"
    stale.write_bytes(b"half a checkpoint")
    alive = work / RUN / f".result.json.{os.getpid()}.abcd1234.tmp"  # a writer still running: kept
    alive.write_text("{")
    assert run_script("train.py", "resume=true", "trainer.max_epochs=6", cwd=work).returncode == 0
    assert not stale.exists() and alive.exists()


def test_eval_that_cannot_write_its_log_prints_its_numbers_and_exits_2_naming_the_path(work):
    def full_disk():  # every file may grow to 20 bytes, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (20, 20))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit fails instead of killing

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval.py")], cwd=work, capture_output=True,
                          text=True, timeout=300, preexec_fn=full_disk,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _refused(proc, f"cannot write {RUN}", "File too large", "The numbers above are computed")
    assert "test/loss (MSE)" in proc.stdout


@pytest.mark.slow
def test_sighup_saves_like_sigterm_and_exits_129(tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), "trainer.max_epochs=100000"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    for line in proc.stdout:  # wait until training runs
        lines.append(line)
        if "training; Ctrl-C" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGHUP)
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGHUP, out
    assert "received SIGHUP" in out and "checkpoint saved" in out
    assert (tmp_path / RUN / "checkpoints" / "last.ckpt").is_file()


# -- 6. text is shown as text -----------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["1_0", "١٢", "１２", "1,5", "0x10"])
def test_a_csv_cell_a_spreadsheet_would_not_read_as_a_number_is_refused_naming_line_and_column(cell, tmp_path):
    rows = [f"{i},{2 * i}" for i in range(30)]
    rows[7] = f'"{cell}",14'
    (tmp_path / "d.csv").write_text("x,y\n" + "\n".join(rows) + "\n", encoding="utf-8")
    proc = run_script("train.py", "data=csv", "data.path=d.csv", "data.target=y", *QUICK, cwd=tmp_path)
    _refused(proc, "d.csv, line 9, column 'x'", f"{cell!r} is not a number")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


def test_class_names_from_a_file_reach_the_terminal_with_control_characters_escaped(tmp_path):
    evil = "\x1b]0;pwned\x07\x1b[2J"
    rows = [f"{i},{i % 3},{evil if i >= 20 else 'plain'}" for i in range(40)]
    (tmp_path / "c.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    train = run_script("train.py", "model=softmax", "data=labelled_csv", "data.path=c.csv", "data.target=label",
                       *QUICK, cwd=tmp_path)
    assert train.returncode == 0, train.stdout + train.stderr
    proc = run_script("predict.py", "x=[[1,0],[38,2]]", "output=p.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "class plain" in proc.stdout and "class \\x1b]0;pwned\\x07\\x1b[2J" in proc.stdout
    assert "\x1b" not in proc.stdout + proc.stderr


def test_a_closed_pipe_stops_the_run_like_sigpipe_with_one_line_and_no_traceback(tmp_path):
    """python scripts/train.py | head -3: the reader goes away while the run still prints."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), "trainer.max_epochs=100000"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 128 + signal.SIGPIPE, err
    assert "Traceback" not in err and "closed it" in err
