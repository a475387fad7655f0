"""What a run prints: the lines at its start, the predictions before and after training, and the
report at its end (the learned coefficients beside the best fit's, the final loss, where it went).

Everything goes through the model interface (gradlab.lessons); each line fits 80 columns.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.utilities import rank_zero_only

say = rank_zero_only(print)  # one process prints, however many DDP ranks run


def printable(text) -> str:
    """Text from a file (a class name, a column name) as it may reach a terminal: control characters
    (an escape sequence that retitles or clears the screen, a carriage return) shown as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def start(overrides: str, model: L.LightningModule, trainer: L.Trainer) -> str:
    """Two lines: what this run changes from the defaults, and what trains on what."""
    n_params = sum(p.numel() for p in model.parameters())
    device = trainer.strategy.root_device
    where = f"{device.type}" + (f":{device.index}" if device.index is not None else "")
    if device.type == "cpu":
        where += f", {_count(torch.get_num_threads(), 'thread')}"
    if trainer.world_size > 1:
        where += f", {trainer.world_size} processes"
    return (f"gradlab: overrides: {overrides or 'none (the defaults of conf/train.yaml)'}\n"
            f"gradlab: {type(model).__name__}, {_count(n_params, 'parameter')}, on {where}")


def predictions(when: str, model: L.LightningModule, x: torch.Tensor, shown: list[str]) -> str:
    """One line per input: `shown` is each input as the user wrote it, x the model's inputs (Q, F)."""
    if model.task == "classification":
        columns = model.outputs(x.to(model.device))
        return "\n".join(f"Prediction {when}: f({v}) = class {int(c)}, probability {float(p):.6g}"
                         for v, c, p in zip(shown, columns["class"], columns["probability"]))
    with torch.no_grad():
        y = model(x.to(model.device)).cpu()[:, 0]
    return "\n".join(f"Prediction {when}: f({v}) = {float(p):.8g}" for v, p in zip(shown, y))


def final(model, dm, trainer: L.Trainer, metrics: dict, best: dict | None, run_dir: Path, seconds: float,
          first_epoch: int = 0) -> str:
    """The end of a run. `best`: the model's best fit on the training split (None: no finite optimum);
    `first_epoch`: the epochs a continued checkpoint had done already."""
    score = "test/accuracy" if model.task == "classification" else "test/r2"
    if model.coefficients() is None:  # a hidden layer: no coefficients, no convex optimum
        lines = _network(model, dm, metrics)
    elif model.task == "classification":
        lines = _classifier(model, dm, metrics, best)
    else:
        lines = _regressor(model, metrics, best)
    return "\n".join(lines + _ending(trainer, seconds, metrics, score, run_dir, first_epoch))


def _regressor(model, metrics: dict, best: dict | None) -> list[str]:
    weight, bias = model.coefficients()
    lines = [f"Coefficients learned:       {_coefficients(weight, bias)}"]
    if best is not None:
        lines.append(f"Coefficients least squares: {_coefficients(best['weight'], best['bias'])}")
    optimum = f" (least squares: {_loss_text(best['loss'])})" if best is not None else ""
    lines.append(f"Final loss (train {model.loss_name}): {metrics['train/final_loss']:.8g}{optimum}")
    return lines


def _classifier(model, dm, metrics: dict, best: dict | None) -> list[str]:
    """Its largest coefficients, the optimum (or why there is none), the test accuracy, the final loss."""
    weight, bias = model.coefficients()
    names = getattr(dm, "feature_names", None) or [f"x{i + 1}" for i in range(weight.shape[1])]
    names = [printable(n) for n in names]
    lines = [f"Coefficients learned: {_largest(weight, names)}; norm |W| = {float(weight.norm()):.6g}"
             + (f", b = [{', '.join(f'{v:.6g}' for v in bias.tolist())}]" if bias is not None else "")]
    if best is not None:
        lines.append(f"Optimum (sklearn LogisticRegression(C=inf)): train {model.loss_name} "
                     f"{_loss_text(best['loss'])}, |W| = {float(best['weight'].norm()):.6g}; gap "
                     f"{metrics['train/final_loss'] - best['loss']:.6g}")
    elif (separation := model.separation(*dm.splits["train"])) == "complete":
        lines.append("Optimum: none: the train split is linearly separable, so the loss can approach 0 "
                     "as |W| grows (no finite optimum; no gap is logged)")
    elif separation == "partial":
        lines.append("Optimum: none: some rows of the train split are linearly separable from the rest, so "
                     "the loss keeps falling as |W| grows, towards a limit above 0 (no finite optimum; no gap "
                     "is logged)")
    if "test/accuracy" in metrics:
        n_test = len(dm.splits["test"][0])
        lines.append(f"Test accuracy: {metrics['test/accuracy']:.6g} ({round(metrics['test/accuracy'] * n_test)} "
                     f"of {n_test} rows); test F1 {metrics['test/f1']:.6g}")
    lines.append(f"Final loss (train {model.loss_name}): {metrics['train/final_loss']:.8g}")
    return lines


def _network(model, dm, metrics: dict) -> list[str]:
    """What a network with hidden layers has instead of coefficients and an optimum: its layers and
    parameter count, and for classes the lesson's lines: the test accuracy in percent, per class too."""
    n_params = sum(p.numel() for p in model.parameters())
    lines = [f"Network: {model.architecture()}, {n_params:,} parameters; no coefficients to show and no",
             "  optimum to compare with (the loss is not convex in the weights of a hidden layer)"]
    if len(lines[0]) > 80:  # a long architecture (a CNN's) on a line of its own
        lines = [f"Network: {model.architecture()}", f"  {n_params:,} parameters; no coefficients to show and no "
                 "optimum to compare", "  with (the loss is not convex in the weights of a hidden layer)"]
    if model.task == "classification" and "test/accuracy" in metrics:
        x, y = dm.splits["test"]
        predicted = model.outputs(x.to(model.device))["class"].cpu()
        what = "images" if getattr(dm, "image_shape", None) else "rows"
        percent = 100 * metrics["test/accuracy"]
        one_a_line = getattr(model, "accuracy_per_line", False)  # lesson 14's lines, not lesson 13's
        lines.append(f"Accuracy of the network: {percent:.4g} %" if one_a_line
                     else f"Accuracy of the network on the {len(x)} test {what}: {percent:.4g} %")
        classes = getattr(dm, "classes", None) or [str(k) for k in range(int(y.max()) + 1)]
        per_class = []
        for k, name in enumerate(classes):
            rows = y == k
            if rows.any():
                per_class.append(f"{name}: {100 * float((predicted[rows] == k).double().mean()):.4g} %")
        if one_a_line:
            per_class = [f"Accuracy of {text}" for text in per_class]
            lines += per_class
            per_class = []
        for start in range(0, len(per_class), 5):  # five classes a line, within 80 columns
            lead = "Accuracy of " if start == 0 else " " * len("Accuracy of ")
            lines.append(lead + ", ".join(per_class[start:start + 5]))
    lines.append(f"Final loss (train {model.loss_name}): {metrics['train/final_loss']:.8g}")
    return lines


def _ending(trainer: L.Trainer, seconds: float, metrics: dict, score: str, run_dir: Path,
            first_epoch: int = 0) -> list[str]:
    """The last lines of every report, each short enough for 80 columns: how long, the held-out
    numbers (`score`: the model's test metric beside its loss), the run and how to look at it."""
    shown = ", ".join(f"{k} {metrics[k]:.6g}" for k in ("val/loss", "test/loss", score) if k in metrics)
    ran = trainer.current_epoch - first_epoch
    epochs = (f"{ran} more epochs ({first_epoch + 1} to {trainer.current_epoch})" if first_epoch
              else f"{trainer.current_epoch} epochs")
    return [f"gradlab: finished {epochs} in {seconds:.1f} s", f"gradlab: {shown}",
            f"gradlab: run dir {run_dir}", f"gradlab: see it with: tensorboard --logdir {run_dir.parent.parent}"]


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _loss_text(loss: float) -> str:
    return "0" if abs(loss) < 1e-20 else f"{loss:.8g}"  # below 1e-20 it is float64 rounding of 0


def _coefficients(weight: torch.Tensor, bias: torch.Tensor | None) -> str:
    w = weight.detach().cpu().flatten().tolist()
    text = "w = " + (f"{w[0]:.8g}" if len(w) == 1 else "[" + ", ".join(f"{v:.6g}" for v in w) + "]")
    return text + (f", b = {float(bias.flatten()[0]):.8g}" if bias is not None else "")


def _largest(weight: torch.Tensor, names: list[str], n: int = 5) -> str:
    """The n coefficients largest in size, with their feature (and class, for several outputs)."""
    w = weight.detach().cpu()
    order = w.abs().flatten().argsort(descending=True)[:n].tolist()
    rows, cols = w.shape
    label = (lambda k, f: names[f]) if rows == 1 else (lambda k, f: f"{names[f]} (class {k})")
    shown = ", ".join(f"{label(i // cols, i % cols)} {float(w.flatten()[i]):.4g}" for i in order)
    return shown + (f" (largest {len(order)} of {w.numel()})" if w.numel() > len(order) else "")
