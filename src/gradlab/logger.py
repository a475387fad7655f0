"""Lightning's TensorBoardLogger, with fewer writes per logging step."""

from __future__ import annotations

import numbers
import time
from collections.abc import Mapping

from lightning.pytorch import loggers
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor
from torch.utils.tensorboard.summary import scalar


class TensorBoardLogger(loggers.TensorBoardLogger):
    """Writes what Lightning's does, in fewer, larger writes.

    - `log_metrics`: the scalars of one call go into one event (TensorBoard reads each value of an
      event as its own point), not one event each. Without TensorFlow installed, TensorBoard's
      writer reopens the event file for every event, in a thread that competes with training.
    - `save()` (a flush of the event file and two filesystem checks, ~0.2 ms), which Lightning
      calls after every logging step, runs at most once every `save_every_s` seconds. TensorBoard
      reads the files of a live run, so the flushes still come, every few seconds; `finalize()`
      (at the end of every run, also after Ctrl-C, divergence or an error) flushes the rest, so a
      finished or stopped run loses nothing. save_every_s=0 flushes at every logging step.
    """

    def __init__(self, *args, save_every_s: float = 5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.save_every_s = save_every_s
        self._saved_at: float | None = None

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = {k: v.item() if isinstance(v, Tensor) and v.numel() == 1 else v for k, v in metrics.items()}
        if not all(isinstance(v, numbers.Real) for v in values.values()):  # dicts and the like: Lightning's way
            return super().log_metrics(metrics, step)
        prefix = f"{self._prefix}{self.LOGGER_JOIN_CHAR}" if self._prefix else ""
        # each value exactly as add_scalar writes it; all of them in one event
        summary = Summary(value=[value for k, v in values.items() for value in scalar(prefix + k, v).value])
        self.experiment._get_file_writer().add_summary(summary, step)
        return None

    def save(self) -> None:
        now = time.monotonic()
        if self._saved_at is not None and now - self._saved_at < self.save_every_s:
            return
        self._saved_at = now
        super().save()
