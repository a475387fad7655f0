"""threads=auto: one torch thread for the course's small batches, torch's own count for large ones; a
number is used as given; OMP_NUM_THREADS and Lightning's DDP setting are left alone."""

from __future__ import annotations

import pytest
from conftest import run_script

from gradlab.run import threads


@pytest.mark.parametrize(("setting", "numbers", "distributed", "env", "expected"), [
    ("auto", 80, False, {}, 1),  # the journal: 80 rows x 1 feature
    ("auto", 100_000_000, False, {}, threads.TORCH_DEFAULT),
    ("auto", 80, True, {}, None),  # DDP: Lightning divides the cores between its processes
    ("auto", 80, False, {"OMP_NUM_THREADS": "3"}, None),  # the user's own setting
    (2, 80, False, {}, 2),
])
def test_auto_takes_one_thread_below_the_crossover_and_leaves_ddp_and_omp_alone(
        monkeypatch, setting, numbers, distributed, env, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert threads.choose(setting, numbers, distributed) == expected


@pytest.mark.parametrize(("args", "said"), [([], "on cpu, 1 thread\n"), (["threads=2"], "on cpu, 2 threads\n")])
def test_a_run_says_the_threads_it_uses(tmp_path, args, said):
    unset = {"OMP_NUM_THREADS": ""}  # as if the shell had none
    proc = run_script("train.py", "trainer.max_epochs=2", *args, cwd=tmp_path, env=unset)
    assert proc.returncode == 0, proc.stderr
    assert said in proc.stdout


def test_threads_refuses_a_count_below_one_before_anything_runs(tmp_path):
    proc = run_script("train.py", "threads=0", cwd=tmp_path)
    assert proc.returncode == 2 and "threads=0" in proc.stderr and "'auto'" in proc.stderr
    assert not (tmp_path / "lightning_logs").exists()
