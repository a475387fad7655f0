"""Loading checkpoints safely: torch.load(weights_only=True) only, so a malicious file cannot
run code, and a clear error for anything that is not a readable gradlab checkpoint. Also the
ModelCheckpoint that runs write them with (conf/callbacks/default.yaml)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from lightning.pytorch import callbacks

from gradlab.cli import BadCheckpoint

REQUIRED = ("state_dict", "hyper_parameters")


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents as plain containers and tensors, or BadCheckpoint saying why."""
    p = Path(path)
    if not p.is_file():
        raise BadCheckpoint(f"ckpt_path={str(path)!r}: no such checkpoint file")
    unreadable = (f"{p}: not a readable checkpoint (corrupt, truncated, or not written by torch.save? {{}}); "
                  "use another checkpoint of the run, e.g. checkpoints/last.ckpt")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on odd pickle protocols: the error says enough
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        unsafe = next((ln for ln in lines if "GLOBAL" in ln), None)  # a class or function to import
        if unsafe is not None:
            raise BadCheckpoint(
                f"{p}: refused to load: it holds objects other than tensors and plain values "
                f"({unsafe}). gradlab loads checkpoints with weights_only=True so that a file cannot run "
                "code; only load checkpoints written by gradlab"
            ) from None
        detail = next((ln for ln in lines if "Unsupported" in ln), lines[0])
        raise BadCheckpoint(unreadable.format(detail)) from None
    except Exception as e:  # zip and EOF errors, and whatever torch's readers raise on other bytes
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BadCheckpoint(unreadable.format(f"{type(e).__name__}: {first}".rstrip(": "))) from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise BadCheckpoint(f"{p}: not a gradlab checkpoint (it lacks {', '.join(REQUIRED)})")
    return ckpt


def check_fits(ckpt: dict, model: torch.nn.Module, path: str | Path) -> None:
    """BadCheckpoint when the checkpoint's weights do not fit `model` (another number of features, a
    bias where it had none, ...), said before Lightning starts a run it would stop with a traceback."""
    saved = {k: list(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    wanted = {k: list(v.shape) for k, v in model.state_dict().items()}
    problems = [f"{k} is {saved[k]} in the checkpoint and {shape} here"
                for k, shape in wanted.items() if k in saved and saved[k] != shape]
    problems += [f"{k} is missing from the checkpoint" for k in wanted if k not in saved]
    problems += [f"the checkpoint has {k}, which this model has not" for k in saved if k not in wanted]
    if not problems:
        return
    theirs, ours = ckpt["hyper_parameters"], getattr(model, "hparams", {})
    settings = [f"{k}={theirs[k]} there, {k}={ours[k]} here" for k in ("n_features", "bias")
                if k in theirs and k in ours and theirs[k] != ours[k]]
    raise BadCheckpoint(
        f"{path}: its weights do not fit the model this config builds: {'; '.join(problems)}"
        + (f" ({'; '.join(settings)})" if settings else "")
        + ". Continue it with the data and model settings it was trained with (its run's config.yaml), "
        "or start a new run without resume=true / ckpt_path"
    )


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint with its `state_key` built once, not on every hook call, and
    no work at batch ends, epoch ends and validations where it cannot save.

    With a profiler on, Lightning formats each callback's state_key for every hook it calls on it
    (about 8 a step); ModelCheckpoint's is the repr of its settings, ~3 us each time. Its settings
    never change after __init__, and the class name is the same, so the key, and every checkpoint,
    is exactly what Lightning's would be (tests/test_lean.py compares the files saved).
    """

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_state_key")
        if key is None:
            key = self.__dict__["_state_key"] = super().state_key
        return key

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._nothing_to_save(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._nothing_to_save(trainer):
            super().on_validation_end(trainer, pl_module)

    def _nothing_to_save(self, trainer) -> bool:
        """Whether Lightning's epoch-end and validation-end methods would save nothing now.

        They first deep-copy every logged metric (~0.1-0.7 ms), then look at the epoch: off a
        checkpoint epoch, with nothing deferred, no checkpoint saved at this step and no
        save_last="link", they do nothing else.
        """
        off_epoch = self._every_n_epochs < 1 or (trainer.current_epoch + 1) % self._every_n_epochs != 0
        return (off_epoch and not self._defer_save_until_validation and self.save_last != "link"
                and self._last_global_step_saved != trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning's checks for step- and time-based saving run after each batch (~3 us); with
        # neither every_n_train_steps nor train_time_interval set they always end in "skip".
        if self._every_n_train_steps >= 1 or self._train_time_interval is not None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
