"""Checkpoints in a run: which model class each holds, written whole or not at all, removed only
inside the run, and the model rebuilt from one (for eval.py and predict.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gradlab.checks.checkpoint import BadCheckpoint, inside, load_checkpoint
from gradlab.run.files import atomic_file

MODEL_CLASS = "gradlab_model_class"  # the checkpoint key CheckpointBookkeeping writes
DEFAULT_MODEL = "gradlab.lessons.linear.LinearRegressor"  # a checkpoint that names no class: the first model's
# where each class lived before gradlab was laid out by concern: old checkpoints and configs name them
MOVED = {
    "gradlab.models.": "gradlab.lessons.linear.",
    "gradlab.classifiers.": "gradlab.lessons.classifiers.",
    "gradlab.data.": "gradlab.lessons.data.",
    "gradlab.plots.": "gradlab.show.pictures.",
    "gradlab.histograms.": "gradlab.show.tensorboard.",
    "gradlab.callbacks.TrainingCurves": "gradlab.show.tensorboard.TrainingCurves",
    "gradlab.progress.": "gradlab.show.progress.",
    "gradlab.logger.TensorBoardLogger": "gradlab.show.tensorboard.EpochlessTensorBoardLogger",
}


def moved(target: str) -> str:
    """A class path as it is named now: an old checkpoint's or config's name, mapped (see MOVED)."""
    for old, new in MOVED.items():
        if isinstance(target, str) and target.startswith(old):
            return new + target[len(old):]
    return target


class CheckpointBookkeeping(L.Callback):
    """What gradlab adds to every checkpoint Lightning writes, as one callback (Lightning calls every
    callback at each of about nine hooks a step; README "Speed"):
    - the model's class, written into it, so eval.py and predict.py rebuild that class;
    - the loggers' event files, flushed: after a kill -9, the curves then reach at least the step
      that resume continues from, so they show no hole before it.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[MODEL_CLASS] = f"{type(pl_module).__module__}.{type(pl_module).__qualname__}"
        for lg in trainer.loggers:
            flush = getattr(getattr(lg, "experiment", None), "flush", None)
            if callable(flush):
                flush()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written with `atomic_file`, and removed only when they are plain files in `folder`.

    The removal check is a second line behind `check_checkpoint_paths` (gradlab.checks.checkpoint):
    Lightning deletes a ModelCheckpoint's "previous best" recursively, with a path that may come from
    a resumed file.
    """

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("gradlab's checkpoint writer takes no storage_options")
        with atomic_file(path, "wb") as f:
            torch.save(checkpoint, f)

    def remove_checkpoint(self, path) -> None:
        p = Path(path)
        if inside(p, self.folder) and p.is_file() and not p.is_symlink():
            p.unlink()
        elif p.exists():
            print(f"gradlab: kept {p}: it is not a checkpoint file in {self.folder}, so it is not removed")


def restore_model(ckpt: dict, path: str | Path) -> L.LightningModule:
    """The model a checkpoint holds, in eval mode on the CPU, without an optimiser.

    Its class is one of gradlab's own (a checkpoint names it, and nothing outside gradlab is
    imported for it); its constructor gets the stored hyperparameters.
    """
    from hydra.utils import get_class

    name = moved(ckpt.get(MODEL_CLASS, DEFAULT_MODEL))
    try:
        if not (isinstance(name, str) and name.startswith("gradlab.lessons.")):
            raise ImportError
        cls = get_class(name)
        if not (issubclass(cls, L.LightningModule) and hasattr(cls, "coefficients")):
            raise ImportError
    except Exception:
        raise BadCheckpoint(f"{path}: it names the model class {name!r}, which is not a gradlab model "
                            "(the classes in gradlab.lessons that conf/model/ names)") from None
    try:
        model = cls(**ckpt["hyper_parameters"], optimizer=_no_optimizer)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise BadCheckpoint(f"{path}: its model does not match gradlab's {cls.__name__} ({first})") from None
    return model.eval()


def _no_optimizer(params):
    raise RuntimeError("a restored model is for evaluation and prediction; train with scripts/train.py")


def logger_resume_kwargs(ckpt_path: Path | None) -> dict:
    """TensorBoard's purge_step on resume: the steps a killed run logged after its checkpoint are
    dropped from the curves, so every step shows once, however the run before it ended."""
    if ckpt_path is None:
        return {}
    return {"purge_step": int(load_checkpoint(ckpt_path).get("global_step", 0))}
