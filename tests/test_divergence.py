"""A learning rate that is too high stops the run at the first non-finite loss: exit code 3, a
message naming the epoch and a smaller learning rate, the checkpoints from before kept (finite),
and TensorBoard showing the run as FAILED rather than a line of NaN."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from conftest import make_cfg, run_script
from hydra.utils import instantiate
from oracles import journal_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradlab.lessons.data import RegressionDataModule

LR = 10.0


def _journal_weights_until_the_loss_is_not_finite() -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Oracle: the journal's plain loop at lr=10 from gradlab's initial weights; (w, b, loss) after
    0, 1, 2, ... updates, the loss measured at those weights."""
    cfg = make_cfg("experiment=journal_regression")
    dm = RegressionDataModule(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    dm.setup()
    x, y = dm.splits["train"]  # all 100 rows: the journal has no held-out data
    L.seed_everything(cfg.seed, verbose=False)  # train() seeds so before it builds the model
    model = instantiate(cfg.model, n_features=1, optimizer=None)
    w0, b0 = model.coefficients()
    history = journal_loop(x, y, w0, b0, LR, 10_000, stop_at_non_finite=True)
    # entry i + 1 holds the weights after i updates with the loss at them: shift to (w_i, b_i, loss_i)
    return [(w, b, loss) for (w, b, _), (_, _, loss) in zip(history, history[1:])]


def test_a_too_high_learning_rate_stops_at_once_and_keeps_only_finite_checkpoints(tmp_path):
    path = _journal_weights_until_the_loss_is_not_finite()
    k = len(path) - 1  # the weights after k updates are the first with a non-finite loss
    # validation every epoch sees those weights first: at the end of epoch k - 1 (0-based)
    proc = run_script("train.py", "experiment=journal_regression", f"optimizer.lr={LR:g}",
                      "trainer.check_val_every_n_epoch=1", "callbacks.checkpoint.every_n_epochs=1",
                      "callbacks.last.every_n_epochs=1",
                      "callbacks.checkpoint.save_top_k=-1",  # keep every epoch's checkpoint, not just the best
                      "trainer.log_every_n_steps=1", cwd=tmp_path)

    assert proc.returncode == 3, proc.stderr
    message = proc.stderr
    assert "Traceback" not in message
    assert "training diverged" in message
    assert f"became inf at epoch {k - 1}" in message
    assert "try optimizer.lr=1 " in message  # 10x smaller than the one that diverged
    run_dir = tmp_path / "lightning_logs" / "journal_regression" / "version_0"
    assert str(run_dir.relative_to(tmp_path) / "checkpoints") in message

    ckpts = {p.name: torch.load(p, weights_only=True) for p in (run_dir / "checkpoints").glob("*.ckpt")}
    periodic = sorted(c["epoch"] for name, c in ckpts.items() if name.startswith("best-"))
    assert periodic == list(range(k - 1))  # one per epoch until the last one with a finite loss
    assert "last.ckpt" in ckpts
    for name, ckpt in ckpts.items():
        assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values()), name
    last = ckpts["last.ckpt"]
    assert last["epoch"] == k - 2
    w, b, _ = path[k - 1]  # its weights: after k - 1 updates, as the plain loop has them
    torch.testing.assert_close(last["state_dict"]["net.lin.weight"], w, rtol=1e-5, atol=0)
    torch.testing.assert_close(last["state_dict"]["net.lin.bias"], b, rtol=1e-5, atol=0)

    scalars, status = _tensorboard(run_dir)
    assert {"train/loss", "val/loss"} <= set(scalars)
    assert len(scalars["val/loss"]) == k - 1  # every finite validation was logged, the infinite one not
    assert status.startswith("FAILED: the val loss became inf") and f"epoch {k - 1}" in status


def _tensorboard(run_dir: Path) -> tuple[dict, str]:
    """The run's scalars (asserting that every value is finite) and its one status text."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    not_finite = [(tag, e.step, e.value) for tag, es in scalars.items() for e in es if not math.isfinite(e.value)]
    assert not_finite == []
    status = events.Tensors("run/summary/text_summary")
    assert len(status) == 1
    return scalars, status[0].tensor_proto.string_val[0].decode()


@pytest.mark.slow
@pytest.mark.parametrize("optimization", ["automatic", "manual", "analytic"])
def test_divergence_in_a_training_step_is_caught_by_every_gradient_path(optimization, tmp_path):
    proc = run_script("train.py", "data.batch_size=8", f"optimizer.lr={LR:g}",
                      f"model.optimization={optimization}", "trainer.log_every_n_steps=1", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "training diverged: the training loss became" in proc.stderr and "try optimizer.lr=1 " in proc.stderr
    run_dir = tmp_path / "lightning_logs" / "default" / "version_0"
    for ckpt_path in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt_path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values()), ckpt_path.name
    scalars, status = _tensorboard(run_dir)
    assert "train/loss" in scalars
    assert status.startswith("FAILED: the training loss became")


def test_the_gpu_way_of_watching_the_loss_names_the_same_first_bad_step_and_saves_no_bad_checkpoint(tmp_path):
    """On a GPU DivergenceGuard records the first non-finite step on the device and reads it at
    logging steps, validations and checkpoints (no sync per step); read_every_step=False runs
    that way here."""
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from gradlab.lessons.linear import LinearRegressor
    from gradlab.run.stopping import Diverged, Stopping

    path = _journal_weights_until_the_loss_is_not_finite()
    k = len(path) - 1  # the loss at the weights after k updates is the first that is not finite
    cfg = make_cfg("experiment=journal_regression")
    dm = RegressionDataModule(**{k_: v for k_, v in cfg.data.items() if k_ != "_target_"})
    L.seed_everything(cfg.seed, verbose=False)
    model = LinearRegressor(1, optimizer=lambda p: torch.optim.SGD(p, lr=LR))
    saved = ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1, filename="{epoch}")
    trainer = L.Trainer(max_epochs=k + 50, accelerator="cpu", devices=1, logger=False, log_every_n_steps=7,
                        callbacks=[Stopping(read_every_step=False), saved], limit_val_batches=0,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    with pytest.raises(Diverged, match=rf"stopped being finite at epoch \d+ \(step {k}\)"):
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step < k + 7  # found at the next logging step or checkpoint, not at the end
    files = sorted(tmp_path.glob("*.ckpt"))
    assert files  # checkpoints were written before it ...
    for file in files:  # ... and each holds finite weights
        state = torch.load(file, weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values()), file.name
