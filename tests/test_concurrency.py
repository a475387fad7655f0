"""Runs started at the same moment never share a run directory, a TensorBoard run or a checkpoint:
separate processes, and the jobs of a joblib sweep."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from omegaconf import OmegaConf

from gradlab.run import rundirs

SHORT = ["trainer.max_epochs=20", "data.n_samples=60", "print_config=false"]


def _claim(root: str, barrier, results) -> None:
    barrier.wait()  # every process calls new_run_dir at the same instant
    results.put(rundirs.new_run_dir(root, "race").name)


def test_processes_claiming_run_directories_at_once_each_get_their_own(tmp_path):
    n = 8
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(str(tmp_path), barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    claimed = sorted(results.get(timeout=5) for _ in range(n))
    assert claimed == sorted(f"version_{i}" for i in range(n))
    assert sorted(p.name for p in (tmp_path / "race").iterdir()) == claimed


def _pid_of(event_file: Path) -> str:
    return re.match(r"events\.out\.tfevents\.\d+\.[^.]+\.(\d+)\.\d+", event_file.name).group(1)


def _assert_runs_are_separate(run_dirs: list[Path], seeds: list[int]) -> None:
    """Each run dir holds one run: its own config, its own TensorBoard writer, its own checkpoints."""
    assert len(set(run_dirs)) == len(run_dirs) == len(seeds)
    seen_seeds, writers, ckpts = [], [], set()
    for run_dir in run_dirs:
        seed = OmegaConf.load(run_dir / "config.yaml").seed
        seen_seeds.append(seed)
        pids = {_pid_of(p) for p in run_dir.glob("events.out.tfevents.*")}
        assert len(pids) == 1, f"{run_dir}: event files from processes {pids}"
        writers += pids
        for path in (run_dir / "checkpoints").glob("*.ckpt"):
            ckpt = torch.load(path, weights_only=True)
            assert ckpt["datamodule_hyper_parameters"]["seed"] == seed, path  # written by this run
            ckpts.add(path.resolve())
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert sorted(seen_seeds) == sorted(seeds)
    assert len(set(writers)) == len(run_dirs)  # one TensorBoard writer process per run, none shared
    assert len(ckpts) >= len(run_dirs)  # each run its own last.ckpt, none shared


@pytest.mark.slow
def test_four_runs_started_at_once_never_share_a_run_directory(tmp_path):
    seeds = [1, 2, 3, 4]
    procs = [
        subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *SHORT, f"seed={s}"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for s in seeds
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    run_dirs = sorted((tmp_path / "lightning_logs" / "default").iterdir())
    assert [d.name for d in run_dirs] == [f"version_{i}" for i in range(4)]
    printed = sorted(re.search(r"run directory (\S+)", out).group(1) for out in outs)
    assert printed == [str(d.relative_to(tmp_path)) for d in run_dirs]  # each process names its own
    _assert_runs_are_separate(run_dirs, seeds)


def _workers_started_with(marker: str) -> list[int]:
    """Pids of live joblib (loky) worker processes whose environment holds `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            worker = b"popen_loky_posix" in (proc / "cmdline").read_bytes()
            if worker and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except (OSError, ValueError):  # gone meanwhile, or not a process
            continue
    return found


@pytest.mark.slow
def test_a_joblib_sweep_gives_every_job_its_own_run_directory_and_leaves_no_workers(tmp_path):
    marker = f"GRADLAB_TEST_SWEEP={uuid.uuid4()}"
    key, value = marker.split("=")
    with open(tmp_path / "out.txt", "w") as out:  # a file, not a pipe: lingering workers would hold a pipe
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", "hydra/launcher=joblib",
             "hydra.launcher.n_jobs=4", *SHORT, "seed=1,2,3,4"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, key: value},
        )
        proc.wait(timeout=600)
    assert proc.returncode == 0, (tmp_path / "out.txt").read_text()
    # the sweep's workers end with it: idle, they would hold its stdout open for minutes
    assert _workers_started_with(marker) == []
    sweeps = list((tmp_path / "lightning_logs" / "default").glob("sweep-*"))
    assert len(sweeps) == 1
    run_dirs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [next(p for p in d.name.split(",") if p.startswith("seed=")) for d in run_dirs] == [
        "seed=1", "seed=2", "seed=3", "seed=4"]
    _assert_runs_are_separate(run_dirs, [1, 2, 3, 4])
