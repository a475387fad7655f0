"""Ctrl-C and SIGTERM stop training cleanly at the end of the current epoch.

Lightning's own handling raises mid-epoch (KeyboardInterrupt wherever it lands, SIGTERM at the
next batch), which can leave a half-applied optimiser step in the checkpoint and counters that
resume one batch off (Lightning #19367, #19815). Stopping at an epoch boundary instead gives a
checkpoint that resumes to exactly the weights of an uninterrupted run, because batch order
depends only on (seed, epoch). A second Ctrl-C stops at once (Lightning then exits with 1;
cli.run turns that into 130 using `received`).
"""

from __future__ import annotations

import signal

import lightning.pytorch as L

received: int | None = None  # the last stop signal this process received during training


class GracefulStop(L.Callback):
    """On SIGINT/SIGTERM: finish this epoch, then ask the Trainer to stop; remembers the signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed after Lightning's own handlers (set up before this hook), so it replaces them
        # for the duration of training; on_train_end puts the previous ones back.
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        if trainer.is_global_zero:  # the moment from which a signal is handled as described
            print("gradlab: training; Ctrl-C stops after this epoch, with a checkpoint", flush=True)

    def _handle(self, signum: int, frame) -> None:
        global received
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user really means now
        self.signum = received = signum
        print(
            f"\ngradlab: received {signal.Signals(signum).name}; stopping at the end of this epoch\n"
            "gradlab: with a checkpoint (Ctrl-C again to stop at once)",  # two lines: 80 columns
            flush=True,
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # all ranks must agree, or DDP would hang with one rank waiting for the others
        if trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            self.signum = self.signum or signal.SIGTERM
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
