"""scripts/benchmark.py runs end to end at a tiny size: both tables come out, and gradlab and the
plain loops end at the same training MSE (the script exits 1 otherwise). No timings are checked:
they belong to the machine, not to the code."""

from __future__ import annotations

import re

from conftest import run_script


def test_benchmark_prints_both_workloads_with_agreeing_mses(tmp_path):
    proc = run_script("benchmark.py", "--rounds", "1", "--epochs", "20", "--rows", "3000", "--features", "5",
                      "--batch-size", "256", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = [line.strip("| ").split(" | ") for line in proc.stdout.splitlines() if line.startswith("| ")]
    runs = {(row[0], row[1]): row for row in cells if row[1] in ("plain", "barebones", "gradlab")}
    assert {run for _, run in runs} == {"plain", "barebones", "gradlab"}
    assert {name.split(":")[0] for name, _ in runs} == {"journal", "large"}
    for (name, run), row in runs.items():
        if run == "gradlab":
            assert row[6] == runs[(name, "plain")][6]  # final training loss (MSE here), as printed
            assert re.fullmatch(r"[0-9.]+x", row[4])  # the ratio gradlab / plain
            assert re.fullmatch(r"[0-9.]+x", row[5])  # and gradlab / Lightning's barebones floor
    assert proc.stdout.count("(agree)") == 2
    assert "peak over the workload" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # runs go to a temporary directory, nothing is left behind


def test_benchmark_times_whole_processes(tmp_path):
    proc = run_script("benchmark.py", "--process", "--runs", "1", "--long-epochs", "1200", cwd=tmp_path,
                      timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for command in ("scripts/journal_plain.py", "scripts/train.py model=linear", "at a terminal", "--help",
                    "bad value"):
        assert command in proc.stdout
    assert re.search(r"piped -?\d+ us, at a terminal -?\d+ us", proc.stdout)


def test_benchmark_runs_the_cnn_lesson_three_ways_to_the_same_loss(tmp_path):
    """--workload cnn at a tiny size (2 epochs of 15 batches of 100): lesson 14's plain loop, Lightning's
    floor and gradlab end at the same training loss."""
    proc = run_script("benchmark.py", "--workload", "cnn", "--rounds", "1", "--epochs", "2", "--threads", "1",
                      "data.batch_size=100", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = [line.strip("| ").split(" | ") for line in proc.stdout.splitlines() if line.startswith("| cnn: ")]
    runs = {row[1]: row for row in cells}
    assert set(runs) == {"plain", "barebones", "gradlab"}
    assert "course_cnn's convnet, SGD, batch 100, 2 epochs" in runs["gradlab"][0]
    assert runs["gradlab"][6] == runs["barebones"][6] == runs["plain"][6]  # final training loss, as printed
    assert re.fullmatch(r"[0-9.]+x", runs["gradlab"][5])  # gradlab / Lightning's barebones floor
    assert proc.stdout.count("(agree)") == 1
    assert list(tmp_path.iterdir()) == []
