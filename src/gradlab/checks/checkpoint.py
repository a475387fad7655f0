"""Whether a checkpoint file may be used: loaded with torch.load(weights_only=True) only, so a
malicious file cannot run code; its weights fit the model; its callbacks name no path outside its
own run's checkpoints/. Each failure is one clear error."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch

REQUIRED = ("state_dict", "hyper_parameters")


class BadCheckpoint(ValueError):
    """A checkpoint file that is not a gradlab checkpoint, or is corrupt or unsafe to load."""


class UnsafeCheckpoint(ValueError):
    """A checkpoint whose callback state names a path outside its own run's checkpoints/ folder."""


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


# what a ModelCheckpoint's state holds that names a file (it removes the "previous" ones)
PATH_KEYS = ("best_model_path", "last_model_path", "kth_best_model_path")


def check_checkpoint_paths(ckpt: dict, folder: str | Path, source: str | Path, strict: bool = True) -> None:
    """UnsafeCheckpoint when a callback's state in `ckpt` names a path outside `folder`.

    Lightning restores these paths into the run's ModelCheckpoints and may later delete them,
    recursively, after a check that does not resolve `..`. `folder` is the checkpoints/ folder of
    the run the resume writes in; checked before Lightning reads the file, so a refused file touches
    nothing. strict=False (a file from outside any run): only paths that Lightning would take for
    its own (those under `folder` as written) must stay inside it once resolved.
    """
    folder = Path(folder)
    states = ckpt.get("callbacks") or {}
    if not isinstance(states, dict):
        raise UnsafeCheckpoint(f"{source}: its callback state is not a mapping; not a checkpoint gradlab wrote")
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        named = [(key, state.get(key)) for key in PATH_KEYS]
        named += [("best_k_models", key) for key in (state.get("best_k_models") or {})]
        if state.get("dirpath") is not None and strict:
            named.append(("dirpath", state["dirpath"]))
        for key, value in named:
            if value in (None, ""):
                continue
            if not strict and isinstance(value, str) and not _lexically_under(value, folder):
                continue
            ok = isinstance(value, str) and (
                inside(Path(value), folder) if key != "dirpath" else _same(Path(value), folder))
            if not ok:
                raise UnsafeCheckpoint(
                    f"{source}: refused: its callback state ({str(name)[:60]}) has {key}={value!r}, which is "
                    f"not inside this run's checkpoint folder {folder} (with '..' and links resolved). "
                    "A checkpoint is data: it may not name files for gradlab to manage elsewhere. "
                    "Nothing was run or changed; use a checkpoint gradlab wrote in this run"
                )


def _lexically_under(value: str, folder: Path) -> bool:
    """Lightning's own test for "a file of this callback": `..` not resolved, as it does."""
    parents = Path(value).parents
    return any(f in parents for f in (folder, Path(os.path.abspath(folder)), Path(os.path.realpath(folder))))


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def inside(path: Path, folder: Path) -> bool:
    """Whether `path`, with `..` and symbolic links resolved, lies inside `folder` (resolved too)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except (TypeError, ValueError, OSError):
        return False
