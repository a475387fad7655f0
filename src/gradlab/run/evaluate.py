"""Evaluate a checkpoint on its own test split, and rebuild what a checkpoint holds.

The model and its data are rebuilt from the checkpoint alone (model hyperparameters, datamodule
class, hyperparameters and standardisation), loaded with weights_only=True. The test stage then
runs the same code as the training run's own test stage, so its numbers are the same.
`scripts/eval.py` is a thin Hydra wrapper around `evaluate(cfg)`; `predict.py` uses `restore`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as L
from omegaconf import DictConfig

from gradlab.checks.checkpoint import BadCheckpoint, check_state_fits, load_checkpoint
from gradlab.checks.config import check_stored
from gradlab.lessons import data
from gradlab.lessons.csvfile import DataError
from gradlab.lessons.data import TensorDataModule
from gradlab.run import rundirs, signals
from gradlab.run.checkpoints import DEFAULT_MODEL, MODEL_CLASS, moved, restore_model
from gradlab.run.files import WriteError
from gradlab.show import tensorboard

# the answer is one line: no GPU/TPU notices or tips from Lightning around it
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
warnings.filterwarnings("ignore", message=".*GPU available but not used.*")  # a linear model: the CPU is enough


@dataclass
class Restored:
    path: Path
    model: L.LightningModule  # a gradlab model (see gradlab.lessons), in eval mode, on the CPU
    dm: TensorDataModule  # not set up (no data read yet), but transform() already standardises
    step: int  # the checkpoint's global step


def find_checkpoint(ckpt_path: str | None, root_dir: str, name: str) -> Path:
    """The file `ckpt_path` names: a path, or "last" = last.ckpt of the newest run of `name`."""
    if not ckpt_path:
        raise BadCheckpoint("ckpt_path is not set; give ckpt_path=last (newest run of name=...) or ckpt_path=PATH")
    if ckpt_path != "last":
        return Path(ckpt_path)
    last = rundirs.last_checkpoint(root_dir, name)
    if last is None:
        lesson = (Path(__file__).resolve().parents[3] / "conf" / "experiment" / f"{name}.yaml").is_file()
        how = f"experiment={name}" if lesson else f"name={name}"  # name=<a lesson> alone trains the defaults
        raise FileNotFoundError(
            f"ckpt_path=last: no run of {name!r} with a checkpoint under {root_dir}/{name}/; train one "
            f"first (python scripts/train.py {how}), pick another name=..., or give ckpt_path=PATH"
        )
    return last


def restore(path: Path, data_path: str | None = None) -> Restored:
    """The trained model and its (not yet loaded) datamodule, from a checkpoint file.

    The stored hyperparameters pass the config rules first. A data file's path never comes from the
    checkpoint (a crafted one could point anywhere): it is `data_path`, or the run's own config.yaml's.
    """
    ckpt = load_checkpoint(path)
    check_stored(ckpt["hyper_parameters"], moved(ckpt.get(MODEL_CLASS, DEFAULT_MODEL)), str(path))
    dm = _datamodule(ckpt, path, data_path or _run_data_path(path))
    model = restore_model(ckpt, path)
    check_state_fits(ckpt, model, path)  # its standardisation, names and classes: one per input or output
    return Restored(path, model, dm, int(ckpt.get("global_step", 0)))


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Runs the test stage on the checkpoint's test split; prints and logs the model's test metrics."""
    signals.raise_from_now_on()
    path = find_checkpoint(cfg.ckpt_path, cfg.root_dir, cfg.name)
    restored = restore(path, cfg.get("data_path"))
    dm = restored.dm
    if isinstance(dm, data.CsvDataModule) and dm.path is None:
        raise DataError(f"{path}: it was trained on a CSV file, and no config.yaml of its run says which; "
                        "give it as data_path=FILE.csv")
    saved = (dm.x_mean, dm.x_std)
    dm.setup("test")
    if not _same_statistics(saved, (dm.x_mean, dm.x_std)):
        raise DataError(
            f"{path}: the data of {type(dm).__name__}({_arguments(dm)}) now differs from the data this "
            "model was trained on (the training split's mean and std changed), so the test split would "
            "not be the training run's; restore that data, or evaluate a model trained on the new data"
        )
    changed = dm.saved_fingerprint is not None and dm.fingerprint() != dm.saved_fingerprint
    if changed:  # the numbers below are still right for this data, but not the run's own
        print(f"gradlab: note: the test split of {type(dm).__name__}({_arguments(dm)}) differs from the one "
              f"{path} was tested on (fingerprint {dm.fingerprint()}, recorded {dm.saved_fingerprint}): the data "
              "has changed since training, so these are not the numbers the run logged")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    metrics = {k: float(v) for k, v in trainer.test(restored.model, datamodule=dm, verbose=False)[0].items()}

    n_test = len(dm.splits["test"][0])
    loss_name = getattr(restored.model, "loss_name", "")
    shown = ", ".join(f"{k}{f' ({loss_name})' if k == 'test/loss' else ''} {v:.8g}" for k, v in metrics.items())
    text = f"gradlab: {path} on its test split ({n_test} rows): {shown}"
    print(text, flush=True)  # before any write: a folder that cannot be written loses none of it
    run_dir = rundirs.run_dir_of(path) or path.parent
    if rundirs.run_dir_of(path) is not None:
        rundirs.refuse_links(run_dir)  # TensorBoard would write through a planted link
    try:
        tensorboard.write_evaluation(str(run_dir), text, restored.step)  # TEXT tab, at the checkpoint's step
    except OSError as e:
        raise WriteError(f"cannot write {run_dir}: {e.strerror or e}. The numbers above are computed; only "
                         "their TensorBoard copy is missing (pick a writable place or free some space)") from None
    print(f"gradlab: logged to TensorBoard's TEXT tab of the run {run_dir} (run/eval)")
    return metrics


def _same_statistics(saved: tuple, now: tuple) -> bool:
    """The training split's mean and std, as recorded and as computed now, up to float64 rounding (the
    same rows in another summation order differ in the last digits)."""
    import numpy as np

    if any(v is None for v in (*saved, *now)):
        return saved == now
    return all(len(a) == len(b) and np.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(saved, now))


def _run_data_path(path: Path) -> str | None:
    """data.path in the config.yaml of the run the checkpoint belongs to, if it has one."""
    from omegaconf import OmegaConf

    run_dir = rundirs.run_dir_of(Path(path))
    saved = run_dir / "config.yaml" if run_dir is not None else None
    if saved is None or not saved.is_file():
        return None
    try:
        value = OmegaConf.select(OmegaConf.load(saved), "data.path")
    except Exception:
        return None
    return value if isinstance(value, str) else None


def _datamodule(ckpt: dict, path: Path, data_path: str | None) -> TensorDataModule:
    # Lightning stores a datamodule's state_dict under its class name, its arguments beside it
    for key, state in ckpt.items():
        cls = getattr(data, key, None) if isinstance(key, str) else None
        if isinstance(cls, type) and issubclass(cls, TensorDataModule):
            arguments = ckpt.get("datamodule_hyper_parameters", {})
            check_stored(arguments, f"{cls.__module__}.{cls.__name__}", str(path))
            try:
                arguments = dict(ckpt.get("datamodule_hyper_parameters", {}))
                if "path" in arguments:  # where the data is: never the checkpoint's say
                    arguments["path"] = data_path
                dm = cls(**arguments)
            except TypeError as e:
                raise BadCheckpoint(f"{path}: its datamodule arguments do not fit {key} ({e})") from None
            dm.load_state_dict(state)
            return dm
    raise BadCheckpoint(
        f"{path}: it holds no gradlab datamodule state, so its data and standardisation are unknown; "
        "use a checkpoint written by scripts/train.py"
    )


def _arguments(dm: TensorDataModule) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in dm.hparams.items())
