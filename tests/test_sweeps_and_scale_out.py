"""Sweeps (-m), the Optuna search (hparams_search=lr), DDP on 2 CPU processes, and the GPU, DDP
and SLURM configs: each through scripts/train.py, checked against the run directories, the
TensorBoard runs and the weights a user would find."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_cfg, run_script
from oracles import seeded_split
from sklearn.datasets import make_regression
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.checks.config import check
from gradlab.run.recipe import train


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def _last(run_dir: Path, tag: str) -> float:
    return EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload().Scalars(tag)[-1].value


def _everything_under(root: Path) -> set[str]:
    """Every folder under root, relative, but the checkpoints/ folders inside run directories."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir() and p.name != "checkpoints"}


def _job(sweep: Path, changes: str) -> Path:
    """The folder of the sweep's job that changes `changes` (named by what it changes, e.g. `lr=0.1`)."""
    (found,) = sweep.glob(f"{changes},*")
    return found


def test_readmes_first_sweep_runs_one_job_per_value_and_names_a_converged_one_best(tmp_path):
    proc = run_script("train.py", "-m", "optimizer.lr=0.001,0.01,0.1", "print_config=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (sweep,) = (tmp_path / "lightning_logs" / "default").glob("sweep-*")  # one folder per sweep
    assert re.fullmatch(r"sweep-\d{4}", sweep.name)  # short: it starts every job's name in TensorBoard
    jobs = ["lr=0.001", "lr=0.01", "lr=0.1"]
    assert _everything_under(tmp_path) == {  # each job named by what it changes
        "lightning_logs", "lightning_logs/default", f"lightning_logs/default/{sweep.name}",
        *(f"lightning_logs/default/{sweep.name}/{job}" for job in jobs),
    }
    val_losses = []
    for job, lr in zip(jobs, (0.001, 0.01, 0.1)):
        run_dir = sweep / job
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["optimizer"]["lr"] == lr
        assert list(run_dir.glob("events.out.tfevents.*")), job  # its own TensorBoard run
        val_losses.append(_last(run_dir, "val/loss"))

    # oracle: the least-squares line of the training split (numpy), and each job's own final weights
    split = seeded_split(*make_regression(n_samples=100, n_features=1, noise=20.0, random_state=1), 42)
    x, y = (t.double().numpy() for t in split["train"])
    design = np.hstack([x, np.ones_like(x)])
    optimum = float(np.mean((design @ np.linalg.lstsq(design, y, rcond=None)[0] - y) ** 2))
    train_losses = []
    for job in jobs:
        state = _weights(sweep / job)
        w, b = state["net.lin.weight"].double().numpy(), state["net.lin.bias"].double().numpy()
        train_losses.append(float(np.mean((x @ w.T + b - y) ** 2)))
    assert train_losses[0] > 1.5 * optimum  # lr=0.001 is still on its way after 1000 epochs ...
    assert val_losses[0] < min(val_losses[1:])  # ... yet scores best on the 10 validation rows, by chance
    assert all(loss < 1.01 * optimum for loss in train_losses[1:])  # the other two reached the optimum

    # the verdict names the best of the converged jobs, and says why lr=0.001 is not it
    with (sweep / "sweep_summary.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [row["job"] for row in table] == jobs  # in the order they ran
    assert [float(row["val_loss"]) for row in table] == pytest.approx(val_losses, rel=1e-5)
    assert [float(row["optimum"]) for row in table] == pytest.approx([optimum] * 3, rel=1e-5)
    assert [row["converged"] for row in table] == ["no", "yes", "yes"]
    best = 1 + int(val_losses[2] < val_losses[1])
    assert [row["best"] for row in table] == ["yes" if i == best else "" for i in range(3)]
    assert f"gradlab: best by val/loss among converged jobs:\n  {jobs[best]}: val/loss" in proc.stdout
    assert "gradlab: note: lr=0.001 has a lower val/loss" in proc.stdout
    summary = proc.stdout[proc.stdout.index("gradlab: sweep "):]
    assert all(len(line) <= 80 for line in summary.splitlines())
    assert "\x1b[" not in proc.stdout + proc.stderr  # piped: no colour codes


def test_the_sweeps_table_names_each_job_by_what_differs_from_the_others(tmp_path):
    """The job column is narrow: settings every job shares (here the data's) would fill it, and every
    row would read the same."""
    proc = run_script("train.py", "-m", "data.n_samples=60", "data.noise=5", "optimizer.lr=0.1", "seed=1,2",
                      "trainer.max_epochs=3", "print_config=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (sweep,) = (tmp_path / "lightning_logs" / "default").glob("sweep-*")
    folders = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(folders) == 2 and all("n_samples=60" in f for f in folders)  # the folders keep every setting
    table = proc.stdout[proc.stdout.index("  job "):].splitlines()[1:3]
    assert [row.split()[0] for row in table] == ["seed=1", "seed=2"], table


@pytest.mark.parametrize(("names", "shown"), [
    (["lr=0.001,seed=1", "lr=0.1,seed=1"], ["lr=0.001", "lr=0.1"]),
    (["features=_a,b_,seed=3", "features=_a,c_,seed=3"], ["features=_a,b_", "features=_a,c_"]),  # comma in a value
    (["lr=0.1"], ["lr=0.1"]),  # one job: its whole name
    (["lr=0.1", "lr=0.1-1"], ["lr=0.1", "lr=0.1-1"]),
])
def test_what_a_job_is_shown_as_drops_only_what_every_job_shares(names, shown):
    from gradlab.run.sweeps import _what_differs

    assert _what_differs(names) == shown


def test_a_second_sweep_in_the_same_minute_gets_its_own_folder_and_repeated_values_their_own_jobs(tmp_path):
    from gradlab.run.sweeps import claim_job_dir, claim_sweep_dir

    first = claim_sweep_dir(tmp_path, "default")
    Path(first).mkdir(parents=True)  # as Hydra's launcher does
    second = claim_sweep_dir(tmp_path, "default")
    assert first != second and not Path(second).exists()
    assert Path(second).name.startswith(Path(first).name + "-")  # sweep-1820, sweep-1820-2
    names = [claim_job_dir(first, n, "optimizer.lr=0.1") for n in range(2)]
    assert names == ["lr=0.1", "lr=0.1-1"]


@pytest.mark.parametrize(("overrides", "expected"), [
    ("optimizer.lr=0.1", "lr=0.1"),
    ("optimizer.lr=0.0012345678901234567,optimizer=adam", "lr=0.00123457,optimizer=adam"),  # an Optuna trial
    ("callbacks.plots.every_n_epochs=5,callbacks.histograms.every_n_epochs=7",  # the same last part: kept whole
     "callbacks.plots.every_n_epochs=5,callbacks.histograms.every_n_epochs=7"),
    ("data.features=[a,b],seed=3", "features=_a,b_,seed=3"),  # a comma inside a value is no separator
    ("data.path=../../etc/passwd,name=/abs", "path=_etc_passwd,name=_abs"),
    ("", "3"),
    ("x=" + "a" * 300, "x=" + "a" * 94),
])
def test_sweep_job_folder_names_are_one_safe_path_component(overrides, expected):
    from gradlab.run.sweeps import job_dir_name

    name = job_dir_name(3, overrides)
    assert name == expected
    assert "/" not in name and ".." not in name and len(name) <= 100


@pytest.mark.slow
def test_optuna_search_writes_the_best_trials_parameters_and_val_loss(tmp_path):
    proc = run_script("train.py", "-m", "hparams_search=lr", "hydra.sweeper.n_trials=3",
                      "trainer.max_epochs=20", "print_config=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "A new study created" in proc.stderr and "\x1b[" not in proc.stdout + proc.stderr  # piped: no colour
    # trials named by their values to 6 significant digits, not Optuna's 16-19
    (sweep,) = (tmp_path / "lightning_logs" / "default").glob("sweep-*")
    names = [p.name for p in sweep.iterdir() if p.is_dir()]
    for name in names:
        lr, optimizer = re.fullmatch(r"lr=([0-9.e+-]+),optimizer=(sgd|adam),max_epochs=20", name).groups()
        assert len(re.sub(r"^[0.]*|\.|e.*$", "", lr)) <= 6, name
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer", "optimizer.lr"}

    trials = {}  # the val/loss each trial's own run logged, and what it ran with
    for run_dir in sorted(p for p in sweep.iterdir() if p.is_dir()):
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        trials[run_dir.name] = (_last(run_dir, "val/loss"), cfg["optimizer"])
    assert len(trials) == 3
    value, optimizer = min(trials.values(), key=lambda t: t[0])
    assert best["best_value"] == pytest.approx(value, rel=1e-7)
    assert optimizer["lr"] == pytest.approx(best["best_params"]["optimizer.lr"])
    assert optimizer["_target_"] == {"sgd": "torch.optim.SGD", "adam": "torch.optim.Adam"}[
        best["best_params"]["optimizer"]]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_ends_with_the_weights_of_one_process(tmp_path):
    proc = run_script("train.py", "trainer=ddp_cpu", "trainer.max_epochs=30", cwd=tmp_path,
                      fresh=True)  # DDP: a new interpreter (torch threads do not survive a fork)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "lightning_logs" / "default" / "version_0"
    assert _everything_under(tmp_path) == {"lightning_logs", "lightning_logs/default",
                                           "lightning_logs/default/version_0"}  # no rank's extra dir

    single = train(make_cfg("trainer.max_epochs=30", root_dir=tmp_path / "single"))
    for key, value in _weights(single.run_dir).items():  # full-batch GD: the mean of the two
        torch.testing.assert_close(_weights(run_dir)[key], value, rtol=1e-5, atol=1e-5)  # ranks' halves
    reported = json.loads((run_dir / "result.json").read_text())  # what rank 0's test stage reported
    assert reported["test_loss"] == pytest.approx(single.metrics["test/loss"], rel=1e-4)
    assert _last(run_dir, "val/loss") == pytest.approx(single.metrics["val/loss"], rel=1e-4)


@pytest.mark.slow
def test_sweep_with_ddp_runs_each_job_once_without_stray_dirs(tmp_path):
    proc = run_script("train.py", "-m", "trainer=ddp_cpu", "optimizer.lr=0.01,0.1", "trainer.max_epochs=10",
                      "print_config=false", cwd=tmp_path, fresh=True)  # DDP: a new interpreter
    assert proc.returncode == 0, proc.stderr
    (sweep,) = (tmp_path / "lightning_logs" / "default").glob("sweep-*")  # the workers made none
    assert _everything_under(tmp_path) == {
        "lightning_logs", "lightning_logs/default", f"lightning_logs/default/{sweep.name}",
        f"lightning_logs/default/{sweep.name}/lr=0.01,max_epochs=10,trainer=ddp_cpu",
        f"lightning_logs/default/{sweep.name}/lr=0.1,max_epochs=10,trainer=ddp_cpu",
    }
    for job, lr in (("lr=0.01", 0.01), ("lr=0.1", 0.1)):
        single = train(make_cfg(f"optimizer.lr={lr}", "trainer.max_epochs=10", root_dir=tmp_path / "single"))
        for key, value in _weights(single.run_dir).items():
            torch.testing.assert_close(_weights(_job(sweep, job))[key], value, rtol=1e-5, atol=1e-5)


def test_gpu_and_ddp_trainer_configs_compose_and_pass_the_checks():
    gpu = make_cfg("trainer=gpu")
    assert (gpu.trainer.accelerator, gpu.trainer.devices, gpu.trainer.strategy) == ("gpu", 1, "auto")
    ddp = make_cfg("trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    assert (ddp.trainer.accelerator, ddp.trainer.strategy, ddp.trainer.devices, ddp.trainer.num_nodes) == (
        "gpu", "ddp", 4, 2)
    cpu = make_cfg("trainer=ddp_cpu")
    assert (cpu.trainer.accelerator, cpu.trainer.devices, cpu.trainer.strategy) == ("cpu", 2, "ddp")
    for cfg in (gpu, ddp, cpu):
        check(cfg)
        assert cfg.trainer.max_epochs == 1000  # the rest comes from trainer/default.yaml


def test_slurm_launcher_composes_from_the_trainer_settings(tmp_path):
    proc = run_script("train.py", "--cfg", "all", "--resolve", "-p", "hydra.launcher", "hydra/launcher=slurm",
                      "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                      "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    launcher = yaml.safe_load(proc.stdout)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["partition"] == "gpu" and launcher["timeout_min"] == 60
    assert launcher["submitit_folder"].startswith("lightning_logs/default/sweep-")
    hydra_only = run_script("train.py", "--cfg", "hydra", "hydra/launcher=slurm", cwd=tmp_path)
    assert hydra_only.returncode == 0 and "tasks_per_node: ${trainer.devices}" in hydra_only.stdout
    assert not (tmp_path / "lightning_logs").exists()  # --cfg runs nothing


@pytest.mark.slow
def test_a_diverging_job_scores_inf_and_the_sweep_goes_on(tmp_path):
    proc = run_script("train.py", "-m", "optimizer.lr=100,0.01", "trainer.max_epochs=20", "print_config=false",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "training diverged" in proc.stderr and "This sweep job scores val/loss = inf." in proc.stderr
    (sweep,) = (tmp_path / "lightning_logs" / "default").glob("sweep-*")
    assert (_job(sweep, "lr=0.01") / "checkpoints" / "last.ckpt").is_file()  # the next job ran to the end


def test_a_sweep_with_cfg_is_a_usage_error_exit_2_without_a_traceback(tmp_path):
    proc = run_script("train.py", "-m", "optimizer.lr=0.1,0.2", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--cfg" in proc.stderr and "-m" in proc.stderr and not (tmp_path / "lightning_logs").exists()
