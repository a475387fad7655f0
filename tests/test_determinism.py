"""The same config and seed give bit-identical weights, optimiser state and loss curve across two
runs of the command line, with shuffled mini-batches; another seed gives other weights."""

from __future__ import annotations

import pytest
import torch
from conftest import run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# shuffled mini-batches of 8 (a new order every epoch), Adam (state to compare), manual optimisation
RUN = ["data.batch_size=8", "data.shuffle=true", "optimizer=adam", "optimizer.lr=0.05",
       "model.optimization=manual", "trainer.max_epochs=15", "trainer.log_every_n_steps=1", "print_config=false"]


@pytest.mark.slow
def test_the_same_seed_gives_bit_identical_weights_and_another_seed_does_not(tmp_path):
    names = {"first": 7, "second": 7, "other_seed": 8}
    for name, seed in names.items():  # each a process of its own (a fork of the test's fork server)
        proc = run_script("train.py", *RUN, f"seed={seed}", f"name={name}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = {name: tmp_path / "lightning_logs" / name / "version_0" for name in names}
    ckpts = {name: torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for name, d in runs.items()}
    first, second, other = ckpts["first"], ckpts["second"], ckpts["other_seed"]

    assert first["global_step"] == second["global_step"] == 15 * 10  # 80 training rows, batches of 8
    for key, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][key]), key
    for state, again in zip(first["optimizer_states"][0]["state"].values(),
                            second["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(state[k], again[k]) for k in ("exp_avg", "exp_avg_sq")), "Adam state differs"
    assert not torch.equal(first["state_dict"]["net.lin.weight"], other["state_dict"]["net.lin.weight"])

    curves = {
        name: [(e.step, e.value) for e in EventAccumulator(str(d), size_guidance={"scalars": 0}).Reload()
               .Scalars("train/loss")]
        for name, d in runs.items()
    }
    assert len(curves["first"]) == 150 and curves["first"] == curves["second"]
    assert curves["first"] != curves["other_seed"]
