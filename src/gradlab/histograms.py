"""Weight and bias histograms in TensorBoard's Histograms and Distributions tabs."""

from __future__ import annotations

import lightning.pytorch as L


class WeightHistograms(L.Callback):
    """Logs every parameter as a histogram every `every_n_epochs` (0: only at the end) and at the end.

    Only on those epochs: a histogram costs far more than a training step of a small model.
    """

    def __init__(self, every_n_epochs: int = 100, min_values: int = 11):
        self.every_n_epochs = every_n_epochs
        self.min_values = min_values
        self._logged_at: int | None = None  # global step of the last histograms written

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = self.every_n_epochs
        if n > 0 and (trainer.current_epoch + 1) % n == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._logged_at != trainer.global_step:
            self._log(trainer, pl_module)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logged_at = trainer.global_step
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_histogram"):  # TensorBoard's SummaryWriter
                for name, p in pl_module.named_parameters():
                    if p.numel() >= self.min_values:  # a histogram of a few numbers looks broken
                        experiment.add_histogram(f"weights/{name}", p.detach().cpu(), trainer.global_step)
