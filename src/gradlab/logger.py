"""What a run shows in TensorBoard beyond its curves: a short HParams row, a text summary, and one
chart with the train and val loss together (the Custom Scalars tab).

Everything goes through public APIs: Lightning's TensorBoardLogger, torch's SummaryWriter and its
`hparams` summary builder.
"""

from __future__ import annotations

import numbers
import os
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from lightning.pytorch import loggers
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

# Always in HParams, next to what the command line changed: what a reader compares runs by.
FIXED = ("experiment", "data", "model", "model.optimization", "optimizer", "optimizer.lr",
         "trainer.max_epochs", "data.batch_size")
NOT_HPARAMS = ("root_dir", "name", "print_config", "resume", "ckpt_path", "predict_x", "hydra.", "callbacks.")
MAX_HPARAMS = 15  # HParams shows every key as a column; past this a row no longer fits a screen


class TensorBoardLogger(loggers.TensorBoardLogger):
    """Lightning's TensorBoardLogger without the `epoch` scalar Lightning adds to every write.

    That chart is a diagonal line, and as TensorBoard sorts groups by name it is the first
    thing a run shows; the step axis already counts epochs in full-batch training.
    """

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if not all(isinstance(v, (numbers.Real, Tensor)) for v in metrics.values()):
            return super().log_metrics(metrics, step)  # dicts and the like, Lightning's way
        # The values of one call as one event, where Lightning writes an event per value: without
        # TensorFlow, TensorBoard's writer checksums each event in pure Python
        writer = self.experiment.file_writer
        if writer is None:  # closed by the Trainer at the end of fit: Lightning's way reopens it
            return super().log_metrics(metrics, step)
        from torch.utils.tensorboard.summary import scalar

        summary = scalar("", 0.0)
        summary.ClearField("value")
        for key, value in metrics.items():
            summary.value.extend(scalar(key, float(value)).value)
        writer.add_summary(summary, step)
        return None


def hparams(cfg: DictConfig, choices: Mapping[str, str], overrides: list[str]) -> dict[str, Any]:
    """The HParams row of a run: the fixed keys, then each key the command line set, as TensorBoard
    shows them well (class names short, true/false and null as words, lists as text)."""
    keys = [k for k in FIXED if k in choices or OmegaConf.select(cfg, k, default="__absent__") != "__absent__"]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in keys and not key.startswith(NOT_HPARAMS):
            keys.append(key)
    row = {}
    for key in keys[:MAX_HPARAMS]:
        value = choices[key] if key in choices else OmegaConf.select(cfg, key, default=None)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, Mapping) and "_target_" in value:  # a group's node: the class it builds
            value = str(value["_target_"]).rsplit(".", 1)[-1]
        row[key] = "full" if key == "data.batch_size" and value is None else _shown(value)
    return row


def _shown(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


@rank_zero_only
def write_summary(logger: loggers.TensorBoardLogger, row: dict[str, Any], metric_tags: list[str],
                  status: str, report: str, step: int) -> None:
    """The run's HParams row, whose metric columns read the run's own scalar tags (so no `hp/*`
    copies at step 0), and a TEXT entry: status, command line and the final report.
    `metric_tags`: the tags the row's end is reported for."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries
    from torch.utils.tensorboard.summary import text as text_summary
    from torch.utils.tensorboard.writer import FileWriter

    script = os.path.relpath(sys.argv[0]) if os.path.isabs(sys.argv[0]) else sys.argv[0]
    command = "python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]])
    text = f"{status}\n\n    {command}\n\n" + "\n".join(f"    {line}" for line in report.splitlines())
    # an event file of its own in the run's directory (TensorBoard reads them all as one run): the
    # Trainer has closed the logger's writer by now
    writer = FileWriter(logger.log_dir)
    # The session's start and end only, no experiment summary: TensorBoard then builds the table
    # from all runs, with the keys whose values differ between runs (a sweep's lr) first and
    # ticked, and one metric column per scalar tag of the runs (train/loss, val/loss, ...)
    _, start, end = hparams_summaries(row, {tag: 0.0 for tag in metric_tags})
    writer.add_summary(start)
    writer.add_summary(end)
    writer.add_summary(text_summary("run/summary", text), step)
    writer.close()


@rank_zero_only
def write_start(logger: loggers.TensorBoardLogger, row: dict[str, Any]) -> None:
    """hparams.yaml (the HParams row), and Custom Scalars: the train and val loss in one chart."""
    logger.log_hyperparams(row)  # without metrics Lightning writes no HParams summaries itself
    logger.experiment.add_custom_scalars({
        "loss": {
            "train and val loss": ["Multiline", ["train/loss", "val/loss"]],
            "gap to the best fit": ["Multiline", ["train/loss_gap"]],
        },
    })
