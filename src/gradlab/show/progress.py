"""Progress for full-batch training, counted in epochs: one line at a terminal, the loss curve in a log.

Lightning's bars count batches, and a full-batch epoch is one batch: they read `0/1 0:00:00
0.00it/s`, show metrics up to a validation old, and redraw every step, which at a terminal costs
more than the journal's whole training step. This one counts epochs from 1, shows the loss of
the step just taken, and redraws at most `refresh_per_second` times, so a run at a terminal costs
about what it costs piped. When stdout is not a terminal it prints a plain line every few epochs,
as the journal's loop prints its loss, so a log keeps the trajectory.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping

import lightning.pytorch as L
from lightning.pytorch.callbacks import ProgressBar
from torch import Tensor


class EpochProgress(ProgressBar):
    """`print_every_n_epochs`: piped, a line every N epochs (0: about ten lines a run, and the last)."""

    def __init__(self, refresh_per_second: float = 10.0, print_every_n_epochs: int = 0):
        super().__init__()
        self.refresh_per_second = refresh_per_second
        self.print_every_n_epochs = print_every_n_epochs
        self._enabled = True
        self._tty = False
        self._loss: Tensor | None = None
        self._next_draw = 0.0
        self._started = 0.0
        self._every = 1
        self._drawn = False  # a progress line is on the screen, without its newline

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def print(self, *args, **kwargs) -> None:
        self._clear()
        print(*args, **kwargs)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._tty = sys.stdout.isatty()
        self._started = time.monotonic()
        self._next_draw = self._started
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        self._every = self.print_every_n_epochs or max(1, round(epochs / 10))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        self._loss = loss if isinstance(loss, Tensor) else self._loss
        if self._enabled and self._tty and (now := time.monotonic()) >= self._next_draw:
            self._next_draw = now + 1.0 / self.refresh_per_second
            self._draw(self._line(trainer, batch_idx + 1))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch + 1
        if self._enabled and not self._tty and (done % self._every == 0 or done == trainer.max_epochs):
            print(self._line(trainer, None, done), flush=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and self._tty:
            self._draw(self._line(trainer, None, trainer.current_epoch))
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._drawn = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._drawn:  # what is printed next starts on its own line
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._drawn = False

    def _line(self, trainer: L.Trainer, batch: int | None, epochs_done: int | None = None) -> str:
        epoch = trainer.current_epoch + 1 if epochs_done is None else epochs_done
        total = trainer.max_epochs
        text = f"Epoch {epoch}/{total}" if total and total > 0 else f"Epoch {epoch}"
        batches = trainer.num_training_batches
        if batch is not None and isinstance(batches, int) and batches > 1:
            text += f"  batch {batch}/{batches}"
        if self._loss is not None:
            text += f"  loss {self._loss.item():.6g}"  # the step just taken: never stale
        return text + f"  {time.monotonic() - self._started:.1f} s"

    def _draw(self, line: str) -> None:
        width = shutil.get_terminal_size((80, 24)).columns - 1  # never wrap: the line is redrawn in place
        sys.stdout.write("\r" + line[:width].ljust(width))
        sys.stdout.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            width = shutil.get_terminal_size((80, 24)).columns - 1
            sys.stdout.write("\r" + " " * width + "\r")
            self._drawn = False
