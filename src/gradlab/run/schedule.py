"""A learning-rate schedule for every model (the course's lesson 15): torch's own StepLR, stepped once
at the end of each training epoch, as the lesson calls `scheduler.step()` after its training phase.

It is a callback rather than part of each LightningModule's `configure_optimizers`, so one config group
(`scheduler=step`) serves every model and every gradient path (Lightning steps a module's schedulers on
the automatic path only). Its state (StepLR's `last_epoch`, `base_lrs`, ...) is saved in checkpoints, so
a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

import lightning.pytorch as L
from torch.optim.lr_scheduler import StepLR


class StepSchedule(L.Callback):
    """lr = initial lr * gamma ** (epochs done // step_size): torch.optim.lr_scheduler.StepLR."""

    def __init__(self, step_size: int = 7, gamma: float = 0.1):
        self.step_size = step_size
        self.gamma = gamma
        self.scheduler: StepLR | None = None
        self.saved: dict | None = None  # a checkpoint's schedule, until the optimiser exists

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.scheduler = StepLR(trainer.optimizers[0], step_size=self.step_size, gamma=self.gamma)
        if self.saved is not None:  # a resume: where the schedule stopped (the optimiser's lr is restored)
            self.scheduler.load_state_dict(self.saved)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.scheduler.step()  # the lesson's scheduler.step(), once an epoch
        pl_module.log("train/lr", self.scheduler.get_last_lr()[0])

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self.saved = state_dict or None
