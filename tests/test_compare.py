"""scripts/compare.py and gradlab.show.compare.frame: runs side by side, checked against what each run
logged to TensorBoard and the config it ran with (independent of the result.json the table reads)."""

from __future__ import annotations

import csv

import pytest
import yaml
from conftest import run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


@pytest.fixture(scope="module")
def logbook(tmp_path_factory):
    """A folder of runs as a learner makes them: an lr sweep, a single run and a journal lesson."""
    cwd = tmp_path_factory.mktemp("logbook")
    for args in (["-m", "optimizer.lr=0.001,0.01,0.1", "trainer.max_epochs=30"],
                 ["optimizer.lr=0.05", "trainer.max_epochs=30"],
                 ["experiment=journal_numpy"]):
        proc = run_script("train.py", *args, cwd=cwd)
        assert proc.returncode == 0, proc.stderr
    return cwd


def _val_loss(run_dir) -> float:
    """The last val/loss the run logged to TensorBoard."""
    return EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload().Scalars("val/loss")[-1].value


def _table(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if not line or line.startswith(("(", "gradlab:")))
    return [line.split() for line in lines[:end]]


def test_compare_lists_every_run_with_the_settings_that_differ_within_80_columns(logbook):
    proc = run_script("compare.py", f"output={logbook / 'all.csv'}", cwd=logbook)
    assert proc.returncode == 0, proc.stderr
    assert all(len(line) <= 80 for line in proc.stdout.splitlines() if str(logbook) not in line)  # piped: 80
    header, *printed = _table(proc.stdout)
    assert header[:2] == ["run", "status"] and "lr" in header  # what the command lines changed comes first
    with (logbook / "all.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(printed) == len(rows) and "seed" not in rows[0]  # only what differs between the runs
    (sweep,) = (p.name for p in (logbook / "lightning_logs" / "default").glob("sweep-*"))
    assert sorted(r["run"] for r in rows) == sorted(
        [*(f"default/{sweep}/lr={lr},max_epochs=30" for lr in ("0.001", "0.01", "0.1")),
         "default/version_0", "journal_numpy/version_0"])
    for row in rows:  # each run's lr as its own config.yaml says
        config = yaml.safe_load((logbook / "lightning_logs" / row["run"] / "config.yaml").read_text())
        assert float(row["lr"]) == config["optimizer"]["lr"], row


def test_compare_filters_sorts_and_writes_every_column_to_csv(logbook):
    (sweep,) = (logbook / "lightning_logs" / "default").glob("sweep-*")
    out = logbook / "ranked.csv"
    proc = run_script("compare.py", f"sweep=default/{sweep.name}", "sort=val/loss", "top=2", f"output={out}",
                      cwd=logbook)
    assert proc.returncode == 0, proc.stderr
    logged = sorted((_val_loss(job), job.name) for job in sweep.iterdir() if job.is_dir())  # oracle: TensorBoard
    with out.open() as f:
        table = list(csv.DictReader(f))
    assert [row["run"] for row in table] == [f"default/{sweep.name}/{name}" for _, name in logged[:2]]
    assert [float(row["val/loss"]) for row in table] == pytest.approx([v for v, _ in logged[:2]], rel=1e-6)
    assert {"epochs", "seconds", "test/r2", "lr"} <= set(table[0])
    assert [r[0] for r in _table(proc.stdout)[1:]] == [row["run"] for row in table]  # printed in the same order
    assert "2 of 3 runs" in proc.stdout

    only = run_script("compare.py", "name=journal_numpy", cwd=logbook)
    assert [r[0] for r in _table(only.stdout)[1:]] == ["journal_numpy/version_0"]
    lesson = run_script("compare.py", "experiment=journal_numpy", cwd=logbook)
    assert [r[0] for r in _table(lesson.stdout)[1:]] == ["journal_numpy/version_0"]


def test_compare_refuses_a_column_the_table_has_not_and_writes_nothing(logbook):
    proc = run_script("compare.py", "sort=val/los", f"output={logbook / 'never.csv'}", cwd=logbook)
    assert proc.returncode == 2
    assert "sort=val/los" in proc.stderr and "val/loss" in proc.stderr and "Traceback" not in proc.stderr
    assert not (logbook / "never.csv").exists()


def test_the_same_table_as_a_pandas_dataframe(logbook):
    from gradlab.show.compare import frame

    table = frame(logbook / "lightning_logs", name="default", sort="val/loss")
    assert list(table["val/loss"]) == sorted(table["val/loss"])
    for run, row in table.iterrows():  # full precision: what TensorBoard logged
        assert row["val/loss"] == pytest.approx(_val_loss(logbook / "lightning_logs" / run), rel=1e-7)
    assert sorted(table["lr"]) == [0.001, 0.01, 0.05, 0.1]
