"""Pictures of the fit, logged to TensorBoard's Images tab and saved as PNG in the run directory.

- `fit`: the training points and the fitted line (one feature), or predicted against actual
  (several features); logged every `every_n_epochs`, so TensorBoard's step slider shows the
  line moving onto the data, and saved as fit.png at the end.
  For classifiers (gradlab.lessons.classifiers): the sigmoid curve of the predicted probability along the
  linear score w x + b, with the training rows at their 0/1 labels (logistic), or the training
  split's confusion matrix (softmax).
  With two features (e.g. data.features=[a,b]) the decision regions instead; with one, the sigmoid
  along the feature.
- `confusion`: for classifiers, the test split's confusion matrix at the end, saved as confusion.png.
- `digits`, `misclassified`: for images (data=digits), the first test images with the predicted and
  the true class (the lesson shows six), and the test images the model gets wrong.
- `activations`: for a network (gradlab.lessons.mlp), lesson 12's activation functions and the
  derivatives its analytic path uses, the network's own drawn boldest.
- `loss_surface`: for one-weight models (one feature, no bias: the toy lessons), the loss J(w)
  with the path gradient descent took on it, saved as loss_surface.png at the end.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch

from gradlab.run.files import atomic_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: the journal's plt.show never opened a window anyway
    import matplotlib.pyplot as plt

    return plt


class FitPlots(L.Callback):
    """Draws the fit before training, every `every_n_epochs` (0: only at the end) and at the end.

    Every picture of a run has the same axes (set from the data before training), so TensorBoard's
    step slider shows the line moving, not the axes.
    """

    def __init__(self, every_n_epochs: int = 200):
        self.every_n_epochs = every_n_epochs
        self.w_path: list[float] = []
        self.saved: dict[str, Path] = {}
        self._fit_logged_at: int | None = None  # global step of the last fit picture in TensorBoard
        self._limits: tuple | None = None  # (x range, y range) of every fit picture of the run

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.w_path = [self._w(pl_module)] if self._one_weight(pl_module) else []
        self._limits = None
        if self.every_n_epochs > 0 and trainer.is_global_zero and trainer.current_epoch == 0:
            self._log(trainer, "fit", self.fit_figure(trainer, pl_module, 0, self))  # before training

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.w_path:
            self.w_path.append(self._w(pl_module))
        n, done = self.every_n_epochs, trainer.current_epoch + 1
        if n > 0 and done % n == 0 and trainer.is_global_zero:
            self._log(trainer, "fit", self.fit_figure(trainer, pl_module, done, self))
            self._fit_logged_at = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        out = Path(trainer.default_root_dir)
        figures = {"fit": self.fit_figure(trainer, pl_module, trainer.current_epoch, self)}
        if len(self.w_path) > 1:
            figures["loss_surface"] = self.loss_surface_figure(trainer)
        if hasattr(pl_module, "architecture"):  # a network: its activation among lesson 12's
            figures["activations"] = activations_figure(pl_module.net.activation)
        if pl_module.task == "classification":
            x, y = trainer.datamodule.splits["test"]
            figures["confusion"] = confusion_figure(confusion(pl_module, x, y), "test split")
            if getattr(trainer.datamodule, "image_shape", None):  # images: show some, and the mistakes
                figures["digits"] = images_figure(pl_module, trainer.datamodule, x, y, "test images", wrong=False)
                figures["misclassified"] = images_figure(pl_module, trainer.datamodule, x, y,
                                                         "misclassified test images", wrong=True)
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
        coefficients = pl_module.coefficients()  # None: a network with hidden layers
        return coefficients is not None and coefficients[0].numel() == 1 and coefficients[1] is None

    @staticmethod
    def _w(pl_module: L.LightningModule) -> float:
        return pl_module.coefficients()[0].item()

    @staticmethod
    def _log(trainer: L.Trainer, tag: str, fig) -> None:
        logger = trainer.logger
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_figure"):
            experiment.add_figure(f"train/pictures/{tag}", fig, global_step=trainer.global_step)
        # add_figure closes it, but fast_dev_run's DummyLogger answers add_figure with a no-op
        _pyplot().close(fig)

    @staticmethod
    def fit_figure(trainer: L.Trainer, pl_module: L.LightningModule, epochs_done: int,
                   plots: FitPlots | None = None):
        """The training points and the model's line (one feature) or predicted against actual.

        `plots`: the callback whose run this picture belongs to; its first picture fixes the axes.
        """
        if pl_module.task == "classification":
            return class_figure(trainer, pl_module, epochs_done)
        plt = _pyplot()
        x, y = trainer.datamodule.splits["train"]
        with torch.no_grad():
            pred = pl_module(x.to(pl_module.device)).cpu()
            loss = pl_module.criterion(pred, y).item()
        fig, ax = plt.subplots(figsize=(6, 4.5))
        if x.shape[1] == 1:
            order = x[:, 0].argsort()
            ax.plot(x[:, 0], y[:, 0], "ro", markersize=4, label="training data")
            network = pl_module.coefficients() is None
            label = "the network's fitted curve" if network else "fitted line"
            ax.plot(x[order, 0], pred[order, 0], "b", label=label)
            if network:  # a network: the linear model's best line beside its curve
                a = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
                w = torch.linalg.lstsq(a, y.double(), driver="gelsd").solution
                ax.plot(x[order, 0], (a @ w)[order, 0], "k--", label="linear model (least squares)")
            ax.set_xlabel("x")
            ax.set_ylabel("y")
        else:
            ax.plot(y[:, 0], pred[:, 0], "bo", markersize=3, label="training rows")
            lo, hi = float(y.min()), float(y.max())
            ax.plot([lo, hi], [lo, hi], "k--", label="perfect fit")
            ax.set_xlabel("actual y")
            ax.set_ylabel("predicted y")
        if plots is not None:
            if plots._limits is None:  # the data's range, with a margin: the line moves inside it
                pad_x = (float(x.max()) - float(x.min())) * 0.05 or 1.0
                pad_y = (float(y.max()) - float(y.min())) * 0.1 or 1.0
                xs = (y if x.shape[1] > 1 else x)[:, 0]
                plots._limits = ((float(xs.min()) - pad_x, float(xs.max()) + pad_x),
                                 (float(y.min()) - pad_y, float(y.max()) + pad_y))
            ax.set_xlim(*plots._limits[0])
            ax.set_ylim(*plots._limits[1])
        weight, bias = pl_module.coefficients() or (torch.empty(0), None)  # a network: none to show
        coefs = ""
        if weight.numel() == 1:
            coefs = f", w = {weight.item():.4g}" + (f", b = {bias.item():.4g}" if bias is not None else "")
        ax.set_title(f"epoch {epochs_done}{coefs}, loss = {loss:.4g}")
        ax.legend(loc="upper left")
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


def class_figure(trainer: L.Trainer, pl_module: L.LightningModule, epochs_done: int):
    """Logistic: the sigmoid along the linear score, rows at their labels; softmax: the confusion matrix."""
    x, y = trainer.datamodule.splits["train"]
    names = getattr(trainer.datamodule, "feature_names", None) or [f"x{i + 1}" for i in range(x.shape[1])]
    if x.shape[1] == 2:
        return boundary_figure(pl_module, x, y, names, f"training split after {epochs_done} epochs")
    if pl_module.hparams.get("n_classes"):  # several outputs, one per class
        return confusion_figure(confusion(pl_module, x, y), f"training split after {epochs_done} epochs")
    plt = _pyplot()
    with torch.no_grad():
        score = pl_module.net(x.to(pl_module.device)).cpu()[:, 0]  # w x + b, before the sigmoid
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if x.shape[1] == 1:  # one feature: the sigmoid along it
        weight, bias = pl_module.coefficients()
        score, w, b = x[:, 0], float(weight[0, 0]), 0.0 if bias is None else float(bias[0])
    z = torch.linspace(float(score.min()) - 1, float(score.max()) + 1, 200)
    curve = torch.sigmoid(w * z + b) if x.shape[1] == 1 else torch.sigmoid(z)
    ax.plot(score, y[:, 0], "ro", markersize=3, alpha=0.4, label="training rows (label 0 or 1)")
    ax.plot(z, curve, "b", label="sigmoid(w x + b): predicted probability of class 1")
    ax.axhline(0.5, color="k", linestyle="--", linewidth=0.8)
    ax.set_xlabel(f"{names[0]} (standardised)" if x.shape[1] == 1 else "w x + b")
    ax.set_ylabel("probability of class 1")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"training split after {epochs_done} epochs")
    fig.tight_layout()
    return fig


def boundary_figure(pl_module: L.LightningModule, x: torch.Tensor, y: torch.Tensor, names: list[str], title: str):
    """Two features: the class the model predicts at every point of the plane, and the rows."""
    plt = _pyplot()
    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    u, v = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200), indexing="xy")
    grid = torch.stack([u.flatten(), v.flatten()], 1)  # (200 * 200, 2)
    regions = pl_module.outputs(grid.to(pl_module.device))["class"].cpu().reshape(u.shape)
    k = pl_module.hparams.get("n_classes") or 2
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.contourf(u, v, regions, levels=torch.arange(k + 1) - 0.5, cmap="tab10", vmin=0, vmax=9, alpha=0.25)
    ax.scatter(x[:, 0], x[:, 1], c=y.reshape(-1), cmap="tab10", vmin=0, vmax=9, s=12, edgecolors="k",
               linewidths=0.3)
    ax.set_xlabel(f"{names[0]} (standardised)")
    ax.set_ylabel(f"{names[1]} (standardised)")
    ax.set_title(f"decision regions, {title}")
    fig.tight_layout()
    return fig


def confusion(pl_module: L.LightningModule, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K, K) counts: row = true class, column = predicted class (torchmetrics' confusion matrix)."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    predicted = pl_module.outputs(x.to(pl_module.device))["class"].cpu()
    k = pl_module.hparams.get("n_classes") or 2  # logistic regression: 2 classes on one output
    return multiclass_confusion_matrix(predicted, y.reshape(-1).long(), num_classes=k)


def confusion_figure(matrix: torch.Tensor, title: str):
    plt = _pyplot()
    k = len(matrix)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def images_figure(pl_module: L.LightningModule, dm, x: torch.Tensor, y: torch.Tensor, title: str, wrong: bool,
                  count: int = 6):
    """The first `count` images of (x, y) (wrong: of those classified wrong), each titled with the
    predicted and the true class."""
    plt = _pyplot()
    predicted = pl_module.outputs(x.to(pl_module.device))["class"].cpu()
    truth = y.reshape(-1)
    rows = torch.nonzero(predicted != truth)[:, 0] if wrong else torch.arange(len(x))
    rows = rows[:count]
    fig, axes = plt.subplots(1, count, figsize=(1.5 * count, 2.1))  # the lesson shows six
    for ax in axes.flat:
        ax.axis("off")
    raw = x * torch.tensor(dm.x_std) + torch.tensor(dm.x_mean) if dm.x_std is not None else x  # pixels as stored
    for ax, i in zip(axes.flat, rows.tolist()):
        ax.imshow(raw[i].reshape(dm.image_shape), cmap="gray_r")
        p, t = dm.classes[int(predicted[i])], dm.classes[int(truth[i])]
        ax.set_title(f"{p} (true {t})", fontsize=9, color="k" if p == t else "r")
    shown = f"{len(rows)} of {int((predicted != truth).sum())}" if wrong else f"first {len(rows)}"
    fig.suptitle(f"{title}: predicted (true), {shown}", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.78, wspace=0.1)  # tight_layout: 5x slower
    return fig


def activations_figure(chosen: str):
    """Lesson 12: sigmoid, tanh, relu and leaky relu, and their derivatives, on [-4, 4]."""
    from gradlab.lessons.mlp import ACTIVATIONS, derivative

    plt = _pyplot()
    z = torch.linspace(-4, 4, 401)
    fig, (ax, slope) = plt.subplots(1, 2, figsize=(9, 3.8))
    for name, function in ACTIVATIONS.items():
        style = {"linewidth": 3 if name == chosen else 1.2, "linestyle": "--" if name == "leaky_relu" else "-",
                 "label": name + (" (this network's)" if name == chosen else "")}
        ax.plot(z, function(z), **style)
        slope.plot(z, derivative(name, z), **style)
    ax.set_title("activation act(z)")
    slope.set_title("derivative act'(z), as backprop uses it")
    for a in (ax, slope):
        a.axhline(0, color="k", linewidth=0.5)
        a.axvline(0, color="k", linewidth=0.5)
        a.set_xlabel("z")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
