"""Loading checkpoints safely: torch.load(weights_only=True) only, so a malicious file cannot
run code, and a clear error for anything that is not a readable gradlab checkpoint. The model a
checkpoint holds is rebuilt through the model interface (gradlab.models), by the class its run
recorded (`RecordModelClass`)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import lightning.pytorch as L
import torch

REQUIRED = ("state_dict", "hyper_parameters")
MODEL_CLASS = "gradlab_model_class"  # the checkpoint key RecordModelClass writes
OLDEST_MODEL = "gradlab.models.LinearRegressor"  # the only model before the key existed


class BadCheckpoint(ValueError):
    """A checkpoint file that is not a gradlab checkpoint, or is corrupt or unsafe to load."""


class RecordModelClass(L.Callback):
    """Writes the model's class into every checkpoint, so eval.py and predict.py rebuild that class."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[MODEL_CLASS] = f"{type(pl_module).__module__}.{type(pl_module).__qualname__}"


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
    settings = [f"{k}={theirs[k]} there, {k}={ours[k]} here" for k in ours
                if k in theirs and theirs[k] != ours[k]]
    raise BadCheckpoint(
        f"{path}: its weights do not fit the model this config builds: {'; '.join(problems)}"
        + (f" ({'; '.join(settings)})" if settings else "")
        + ". Continue it with the data and model settings it was trained with (its run's config.yaml), "
        "or start a new run without resume=true / ckpt_path"
    )


def restore_model(ckpt: dict, path: str | Path) -> L.LightningModule:
    """The model a checkpoint holds, in eval mode on the CPU, without an optimiser.

    Its class is one of gradlab's own (a checkpoint names it, and nothing outside gradlab is
    imported for it); its constructor gets the stored hyperparameters.
    """
    from hydra.utils import get_class

    name = ckpt.get(MODEL_CLASS, OLDEST_MODEL)
    try:
        if not (isinstance(name, str) and name.startswith("gradlab.")):
            raise ImportError
        cls = get_class(name)
        if not (issubclass(cls, L.LightningModule) and hasattr(cls, "coefficients")):
            raise ImportError
    except Exception:
        raise BadCheckpoint(f"{path}: it names the model class {name!r}, which is not a gradlab model "
                            "(gradlab.models and the classes in conf/model/)") from None
    try:
        model = cls(**ckpt["hyper_parameters"], optimizer=_no_optimizer)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise BadCheckpoint(f"{path}: its model does not match gradlab's {cls.__name__} ({first})") from None
    return model.eval()


def _no_optimizer(params):
    raise RuntimeError("a restored model is for evaluation and prediction; train with scripts/train.py")
