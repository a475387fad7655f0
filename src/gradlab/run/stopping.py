"""Stopping a run: cleanly at the end of an epoch on Ctrl-C or SIGTERM, at once when the loss
stops being finite.

Lightning's own handling of Ctrl-C and SIGTERM raises mid-epoch (KeyboardInterrupt wherever it
lands, SIGTERM at the next batch), which can leave a half-applied optimiser step in the checkpoint
and counters that resume one batch off (Lightning #19367, #19815). Stopping at an epoch boundary
instead gives a checkpoint that resumes to exactly the weights of an uninterrupted run, because
batch order depends only on (seed, epoch). A second Ctrl-C stops at once (Lightning then exits with
1; cli.run turns that into 130 using `received`).

The two parts, `GracefulStop` and `DivergenceGuard`, reach Lightning as one callback, `Stopping`:
Lightning calls every callback at each of about nine hooks a step, and on the journal's model each
callback costs about 20 us an epoch that way (README "Speed").
"""

from __future__ import annotations

import math
import signal
from collections.abc import Mapping

import lightning.pytorch as L
import torch
from torch import Tensor

received: int | None = None  # the last stop signal this process received during training


class Stopping(L.Callback):
    """Stops a run early: at the end of the epoch on a signal (`graceful`), at once at the first
    non-finite loss (`divergence`). Each hook below says which of the two it serves."""

    def __init__(self, read_every_step: bool | None = None) -> None:
        self.graceful = GracefulStop()
        self.divergence = DivergenceGuard(read_every_step)

    @property
    def signum(self) -> int | None:
        """The stop signal received during training, or None."""
        return self.graceful.signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.divergence.start(pl_module)
        self.graceful.install(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.divergence.watch(trainer, outputs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.graceful.stop_if_asked(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.divergence.check(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.divergence.watch_validation(trainer, pl_module, batch)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.divergence.check(trainer)  # raising here stops the file from being written

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.graceful.restore()
        self.divergence.check(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.graceful.restore()


class GracefulStop:
    """On SIGINT/SIGTERM/SIGHUP: finish this epoch, then ask the Trainer to stop; remembers the signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.interrupts = 0  # Ctrl-Cs received: the second stops at once
        self._previous: dict[int, object] = {}

    def install(self, trainer: L.Trainer) -> None:
        # Installed when training starts, after Lightning's own handlers (set up before that hook),
        # so it replaces them for the duration of training; restore() puts the previous ones back.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, self._handle)
        if trainer.is_global_zero:  # the moment from which a signal is handled as described
            print("gradlab: training; Ctrl-C stops after this epoch, with a checkpoint", flush=True)

    def _handle(self, signum: int, frame) -> None:
        global received
        self.interrupts += signum == signal.SIGINT
        if self.signum is not None:
            # Stopping already. Only a second Ctrl-C means now: in a sweep whose jobs run in worker
            # processes, a worker gets the terminal's Ctrl-C and the SIGTERM the sweep's process passes
            # on, in either order, and that is one stop
            if self.interrupts >= 2:
                raise KeyboardInterrupt
            return
        self.signum = received = signum
        print(
            f"\ngradlab: received {signal.Signals(signum).name}; stopping at the end of this epoch\n"
            f"gradlab: with a checkpoint (Ctrl-C {'again' if self.interrupts else 'twice'} to stop at once)",
            flush=True,  # two lines: 80 columns
        )

    def stop_if_asked(self, trainer: L.Trainer) -> None:
        """At the end of an epoch: stop there if a signal came."""
        # all ranks must agree, or DDP would hang with one rank waiting for the others
        if trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            self.signum = self.signum or signal.SIGTERM
            trainer.should_stop = True

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class Diverged(RuntimeError):
    """The loss stopped being finite: training cannot recover from it."""


def _loss(outputs) -> Tensor | None:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    return loss if isinstance(loss, Tensor) else None


class DivergenceGuard:
    """Stops the run at the first non-finite loss, naming its step; no checkpoint holds one.

    On the CPU a loss is checked as it comes (reading it costs nothing). On a GPU reading it would
    make the host wait for the device every step, so the first bad step is recorded on the device
    and read at logging steps, before each validation and before each checkpoint is written.
    """

    def __init__(self, read_every_step: bool | None = None) -> None:
        # None: read each loss on the CPU, record it on a GPU; False records everywhere (tests use it
        # to run the GPU's way on a CPU)
        self.read_every_step = read_every_step
        self._first_bad: Tensor | None = None  # on the device: the first non-finite step, or inf

    def start(self, pl_module: L.LightningModule) -> None:
        self._first_bad = torch.tensor(math.inf, device=pl_module.device)

    def watch(self, trainer: L.Trainer, outputs) -> None:
        """After each training step: its loss."""
        loss = _loss(outputs)
        if loss is None:
            return
        step = trainer.global_step - 1  # the optimizer step this loss was computed for
        if self.read_every_step if self.read_every_step is not None else loss.device.type == "cpu":
            if not math.isfinite(loss.item()):
                raise Diverged(self._message(trainer, "training", loss.item(), step))
            return
        bad = torch.where(torch.isfinite(loss.detach()), math.inf, float(step))
        torch.minimum(self._first_bad, bad, out=self._first_bad)
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self.check(trainer)

    def watch_validation(self, trainer: L.Trainer, pl_module: L.LightningModule, batch) -> None:
        """After each validation batch: its loss once more (validation is rare). Lightning logs the
        epoch's metrics right after the last batch, with no hook between, and an infinite val/loss
        would reach TensorBoard and ModelCheckpoint's ranking."""
        x, y = batch
        with torch.no_grad():
            loss = pl_module.criterion(pl_module(x), y)
        if not trainer.sanity_checking and not torch.isfinite(loss):
            raise Diverged(self._message(trainer, "val", loss.item(), trainer.global_step))

    def check(self, trainer: L.Trainer) -> None:
        """Raises Diverged if a non-finite loss was recorded on the device."""
        if self._first_bad is not None and math.isfinite(step := float(self._first_bad)):
            raise Diverged(self._message(trainer, "training", math.nan, int(step)))

    @staticmethod
    def _message(trainer: L.Trainer, stage: str, value: float, step: int) -> str:
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        advice = f"try optimizer.lr={lr / 10:g}" if lr else "try a smaller optimizer.lr"
        value_text = f"became {value}" if not math.isnan(value) or stage != "training" else "stopped being finite"
        return (
            f"the {stage} loss {value_text} at epoch {trainer.current_epoch} (step {step})"
            + (f" with optimizer.lr={lr:g}" if lr else "")
            + f"; the learning rate is probably too high for this data: {advice} (10x smaller)"
        )
