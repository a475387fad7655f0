"""Pictures of the fit, logged to TensorBoard's Images tab and saved as PNG in the run directory.

- `fit`: the training points and the fitted line (one feature), or predicted against actual
  (several features); logged every `every_n_epochs`, so TensorBoard's step slider shows the
  line moving onto the data, and saved as fit.png at the end.
- `loss_surface`: for one-weight models (one feature, no bias: the toy lessons), the loss J(w)
  with the path gradient descent took on it, saved as loss_surface.png at the end.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch

from gradlab.safety import atomic_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: the journal's plt.show never opened a window anyway
    import matplotlib.pyplot as plt

    return plt


class FitPlots(L.Callback):
    """Draws the fit every `every_n_epochs` (0: only at the end) and at the end of training."""

    def __init__(self, every_n_epochs: int = 200):
        self.every_n_epochs = every_n_epochs
        self.w_path: list[float] = []
        self.saved: dict[str, Path] = {}
        self._fit_logged_at: int | None = None  # global step of the last fit picture in TensorBoard

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.w_path = [self._w(pl_module)] if self._one_weight(pl_module) else []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.w_path:
            self.w_path.append(self._w(pl_module))
        n, done = self.every_n_epochs, trainer.current_epoch + 1
        if n > 0 and done % n == 0 and trainer.is_global_zero:
            self._log(trainer, "fit", self.fit_figure(trainer, pl_module, done))
            self._fit_logged_at = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        out = Path(trainer.default_root_dir)
        figures = {"fit": self.fit_figure(trainer, pl_module, trainer.current_epoch)}
        if len(self.w_path) > 1:
            figures["loss_surface"] = self.loss_surface_figure(trainer)
        for name, fig in figures.items():
            with atomic_file(out / f"{name}.png", "wb") as f:  # a whole picture or the previous one
                fig.savefig(f, format="png", dpi=100)
            self.saved[name] = out / f"{name}.png"
            if name == "fit" and self._fit_logged_at == trainer.global_step:
                _pyplot().close(fig)  # the last periodic picture already shows this step
            else:
                self._log(trainer, name, fig)

    @staticmethod
    def _one_weight(pl_module: L.LightningModule) -> bool:
        weight, bias = pl_module.coefficients()
        return weight.numel() == 1 and bias is None

    @staticmethod
    def _w(pl_module: L.LightningModule) -> float:
        return pl_module.coefficients()[0].item()

    @staticmethod
    def _log(trainer: L.Trainer, tag: str, fig) -> None:
        logger = trainer.logger
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_figure"):
            experiment.add_figure(f"plots/{tag}", fig, global_step=trainer.global_step)
        # add_figure closes it, but fast_dev_run's DummyLogger answers add_figure with a no-op
        _pyplot().close(fig)

    @staticmethod
    def fit_figure(trainer: L.Trainer, pl_module: L.LightningModule, epochs_done: int):
        plt = _pyplot()
        x, y = trainer.datamodule.splits["train"]
        with torch.no_grad():
            pred = pl_module(x.to(pl_module.device)).cpu()
        fig, ax = plt.subplots(figsize=(6, 4.5))
        if x.shape[1] == 1:
            order = x[:, 0].argsort()
            ax.plot(x[:, 0], y[:, 0], "ro", markersize=4, label="training data")
            ax.plot(x[order, 0], pred[order, 0], "b", label="fitted line")
            ax.set_xlabel("x")
            ax.set_ylabel("y")
        else:
            ax.plot(y[:, 0], pred[:, 0], "bo", markersize=3, label="training rows")
            lo, hi = float(y.min()), float(y.max())
            ax.plot([lo, hi], [lo, hi], "k--", label="perfect fit")
            ax.set_xlabel("actual y")
            ax.set_ylabel("predicted y")
        ax.set_title(f"after {epochs_done} epochs")
        ax.legend()
        fig.tight_layout()
        return fig

    def loss_surface_figure(self, trainer: L.Trainer):
        plt = _pyplot()
        x, y = (t[:, 0].double() for t in trainer.datamodule.splits["train"])
        path = torch.tensor(self.w_path, dtype=torch.float64)
        w_best = (x @ y / (x @ x)).reshape(1)  # where dJ/dw = 0: the bottom of the bowl
        lo, hi = float(min(path.min(), w_best)), float(max(path.max(), w_best))
        pad = max(hi - lo, 1.0) * 0.5
        w = torch.linspace(lo - pad, hi + pad, 200, dtype=torch.float64)

        def loss(ws):
            return ((ws[:, None] * x[None, :] - y[None, :]) ** 2).mean(1)

        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.plot(w, loss(w), "k", label="J(w) = mean((w x - y)^2)")
        ax.plot(path, loss(path), "ro-", markersize=3, label="gradient descent path")
        ax.plot(w_best, loss(w_best), "b*", markersize=12, label=f"minimum, w = {float(w_best):.4g}")
        ax.set_xlabel("w")
        ax.set_ylabel("J(w)")
        ax.set_title(f"{len(path) - 1} epochs: w {path[0]:.4g} -> {path[-1]:.4g}")
        ax.legend()
        fig.tight_layout()
        return fig
