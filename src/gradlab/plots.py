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

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.w_path = [self._w(pl_module)] if self._one_weight(pl_module) else []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.w_path:
            self.w_path.append(self._w(pl_module))
        n = self.every_n_epochs
        if n > 0 and (trainer.current_epoch + 1) % n == 0 and trainer.is_global_zero:
            self._log(trainer, "fit", self.fit_figure(trainer, pl_module))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        out = Path(trainer.default_root_dir)
        figures = {"fit": self.fit_figure(trainer, pl_module)}
        if len(self.w_path) > 1:
            figures["loss_surface"] = self.loss_surface_figure(trainer)
        for name, fig in figures.items():
            fig.savefig(out / f"{name}.png", dpi=100)
            self.saved[name] = out / f"{name}.png"
            self._log(trainer, name, fig)  # add_figure closes the figure

    @staticmethod
    def _one_weight(pl_module: L.LightningModule) -> bool:
        lin = pl_module.net.lin
        return lin.weight.numel() == 1 and lin.bias is None

    @staticmethod
    def _w(pl_module: L.LightningModule) -> float:
        return pl_module.net.lin.weight.detach().item()

    @staticmethod
    def _log(trainer: L.Trainer, tag: str, fig) -> None:
        logger = trainer.logger
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_figure"):
            experiment.add_figure(f"plots/{tag}", fig, global_step=trainer.global_step)
        else:
            _pyplot().close(fig)

    @staticmethod
    def fit_figure(trainer: L.Trainer, pl_module: L.LightningModule):
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
        ax.set_title(f"epoch {trainer.current_epoch}")
        ax.legend()
        fig.tight_layout()
        return fig

    def loss_surface_figure(self, trainer: L.Trainer):
        plt = _pyplot()
        x, y = (t[:, 0].double() for t in trainer.datamodule.splits["train"])
        path = torch.tensor(self.w_path, dtype=torch.float64)
        lo, hi = float(path.min()), float(path.max())
        pad = max(hi - lo, 1.0) * 0.5
        w = torch.linspace(lo - pad, hi + pad, 200, dtype=torch.float64)

        def loss(ws):
            return ((ws[:, None] * x[None, :] - y[None, :]) ** 2).mean(1)

        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.plot(w, loss(w), "k", label="J(w) = mean((w x - y)^2)")
        ax.plot(path, loss(path), "ro-", markersize=3, label="gradient descent path")
        ax.set_xlabel("w")
        ax.set_ylabel("J(w)")
        ax.set_title(f"{len(path) - 1} epochs: w {path[0]:.4g} -> {path[-1]:.4g}")
        ax.legend()
        fig.tight_layout()
        return fig
