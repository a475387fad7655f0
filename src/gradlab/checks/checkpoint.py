"""Whether a checkpoint file may be used: loaded with torch.load(weights_only=True) only, so a
malicious file cannot run code; its weights fit the model; its callbacks name no path outside its
own run's checkpoints/. Each failure is one clear error."""

from __future__ import annotations

import math
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
    check_values(ckpt, p)
    return ckpt


def _refuse(source, key: str, value, allowed: str) -> None:
    shown = repr(value) if not isinstance(value, torch.Tensor) else f"a tensor of shape {list(value.shape)}"
    raise BadCheckpoint(f"{source}: its entry {key} is {shown[:120]}, where gradlab writes {allowed}; nothing was "
                        "run or written. Use a checkpoint written by scripts/train.py")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _numbers(value, positive: bool = False) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
        for v in value)


def check_values(ckpt: dict, source) -> None:
    """BadCheckpoint naming the first entry whose type, range or length is not what gradlab writes:
    every value a checkpoint holds is checked here, once, before anything uses it (eval, predict and
    resume all load through load_checkpoint). How the entries fit a model is check_fits'."""
    for key in ("epoch", "global_step"):
        if key in ckpt and not _count(ckpt[key]):
            _refuse(source, key, ckpt[key], "an integer >= 0")
    if not isinstance(ckpt["state_dict"], dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt["state_dict"].items()):
        _refuse(source, "state_dict", type(ckpt["state_dict"]).__name__, "names and tensors")
    if not isinstance(ckpt["hyper_parameters"], dict):
        _refuse(source, "hyper_parameters", ckpt["hyper_parameters"], "a mapping of plain values")
    if "gradlab_model_class" in ckpt and not isinstance(ckpt["gradlab_model_class"], str):
        _refuse(source, "gradlab_model_class", ckpt["gradlab_model_class"], "a class path")
    for name, state in data_states(ckpt).items():
        _check_data_state(name, state, source)
    _check_optimizer_states(ckpt.get("optimizer_states", []), source)
    callbacks = ckpt.get("callbacks", {})
    for name, state in (callbacks.items() if isinstance(callbacks, dict) else []):
        if isinstance(state, dict) and "best_model_score" in state:
            score = state["best_model_score"]
            if score is not None and not (isinstance(score, (int, float)) and not isinstance(score, bool)
                                          or isinstance(score, torch.Tensor) and score.numel() == 1):
                _refuse(source, f"callbacks[{str(name)[:40]}...].best_model_score", score, "a number or null")


def data_states(ckpt: dict) -> dict[str, dict]:
    """The datamodule states a checkpoint holds: Lightning stores each under its class's name."""
    return {k: v for k, v in ckpt.items() if isinstance(k, str) and k.endswith("DataModule")}


def _check_data_state(name: str, state, source) -> None:
    if not isinstance(state, dict):
        _refuse(source, name, state, "a mapping")
    mean, std = state.get("x_mean"), state.get("x_std")
    if (mean is None) != (std is None):
        _refuse(source, f"{name}.x_std", std, "a list beside x_mean, or both null")
    if mean is not None and not _numbers(mean):
        _refuse(source, f"{name}.x_mean", mean, "a list of finite numbers")
    if std is not None and not (_numbers(std, positive=True) and len(std) == len(mean)):
        _refuse(source, f"{name}.x_std", std, f"a list of {len(mean)} numbers > 0 (one per x_mean)")
    if state.get("test_fingerprint") is not None and not isinstance(state["test_fingerprint"], str):
        _refuse(source, f"{name}.test_fingerprint", state["test_fingerprint"], "a text")
    prints = state.get("fingerprints")
    if prints is not None and not (isinstance(prints, dict) and all(
            k in ("train", "val", "test") and (v is None or isinstance(v, str)) for k, v in prints.items())):
        _refuse(source, f"{name}.fingerprints", prints, "a text per split (train, val, test)")
    names = state.get("feature_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        _refuse(source, f"{name}.feature_names", names, "a list of column names")
    classes = state.get("classes")
    if classes is not None and not (isinstance(classes, list) and len(classes) >= 2
                                    and all(isinstance(c, (int, str)) and not isinstance(c, bool) for c in classes)
                                    and len(set(map(str, classes))) == len(classes)):
        _refuse(source, f"{name}.classes", classes, "a list of 2 or more distinct labels (integers or texts)")


def _check_optimizer_states(states, source) -> None:
    if not isinstance(states, list):
        _refuse(source, "optimizer_states", states, "a list")
    for i, state in enumerate(states):
        groups = state.get("param_groups") if isinstance(state, dict) else None
        if not isinstance(groups, list) or not isinstance(state.get("state", {}), dict):
            _refuse(source, f"optimizer_states[{i}]", state, "torch's optimiser state_dict")
        for group in groups:
            lr = group.get("lr") if isinstance(group, dict) else None
            if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
                _refuse(source, f"optimizer_states[{i}].param_groups.lr", lr, "a number > 0")


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
        check_state_fits(ckpt, model, path)
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


def check_state_fits(ckpt: dict, model: torch.nn.Module, path) -> None:
    """BadCheckpoint when what the checkpoint stores beside the weights does not fit the model: the
    standardisation and the feature names one per input, the class names one per output, the
    optimiser's per-weight state shaped like the weights."""
    n_features = dict(getattr(model, "hparams", {})).get("n_features")
    n_classes = None
    if getattr(model, "task", "") == "classification":
        with torch.no_grad():  # the outputs of one row of zeros: one per class (logistic: 1, for 2 classes)
            n_classes = max(model(torch.zeros(1, n_features)).shape[-1], 2)
    for name, state in data_states(ckpt).items():
        for key in ("x_mean", "x_std", "feature_names"):
            if n_features is not None and state.get(key) is not None and len(state[key]) != n_features:
                _refuse(path, f"{name}.{key}", state[key], f"a list of {n_features} (one per input of the model)")
        if n_classes is not None and state.get("classes") is not None and len(state["classes"]) != n_classes:
            _refuse(path, f"{name}.classes", state["classes"], f"{n_classes} labels (one per class it tells)")
    shapes = [list(p.shape) for p in model.parameters()]
    for i, opt in enumerate(ckpt.get("optimizer_states", [])):
        for index, per_weight in opt.get("state", {}).items():
            for key, value in (per_weight.items() if isinstance(per_weight, dict) else []):
                if isinstance(value, torch.Tensor) and value.dim() > 0 and (
                        not isinstance(index, int) or index >= len(shapes) or list(value.shape) != shapes[index]):
                    _refuse(path, f"optimizer_states[{i}].state[{index}].{key}", value,
                            "a tensor shaped like the weight it belongs to")


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
