"""Checks a composed config before anything heavy is imported or any file is written.

`check` holds the config against its schema (gradlab.checks.schema: types, ranges, unknown keys)
and the rules that join several keys (fractions adding up, analytic under DDP, ...), so every bad
value gets the same one-paragraph answer: the key, the bad value and what is allowed. It imports
neither torch nor Lightning. `check_arguments` runs once they are (still before a run directory
exists) and asks what only the classes know: a key added with `+` to a Lightning or torch class.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value outside what gradlab allows."""


NOTHING_RAN = "Nothing was run and no run directory was created."
# keys the recipe fills in from the data; a config that sets them would clash with it
SUPPLIED = ("model.n_features", "model.n_classes", "model.image_shape", "data.labels")


def check(cfg: DictConfig, source: str | None = None) -> None:
    """Raises ConfigError naming the first bad key, its value and what is allowed. `source`: the file
    the config was read from (a run's config.yaml), named first in the message."""
    import msgspec

    from gradlab.checks import schema

    try:
        plain = _plain(cfg)
        plain = dict(sorted(plain.items(), key=lambda item: isinstance(item[1], dict)))  # seed=-1 before data.seed
        check_targets(plain)
        kind = (schema.TrainRun if "trainer" in plain else schema.EvalRun if "data_path" in plain
                else schema.CompareRuns if "sort" in plain else schema.PredictRun if "x" in plain
                else schema.ExportRun)
        try:
            msgspec.convert(plain, kind)
        except msgspec.ValidationError as e:
            raise ConfigError(_explain(str(e), plain, kind)) from None
        if kind is schema.TrainRun:
            for key in SUPPLIED:
                if OmegaConf.select(cfg, key, default=None) is not None:
                    raise ConfigError(f"bad config key {key}: gradlab sets it from the data, so it cannot be "
                                      f"given. Drop it (e.g. ~{key}). {NOTHING_RAN}")
            _check_combinations(cfg)
    except ConfigError as e:
        if source is None:
            raise
        raise ConfigError(f"{source}: {e}".replace("Fix it in the YAML under conf/ or on the command line",
                                                   "Fix it in that file or on the command line")) from None


def check_targets(plain: dict) -> None:
    """ConfigError for a `_target_` anywhere in the config (nested ones included, e.g. under
    trainer.profiler) that is neither a class conf/ offers (the schema's) nor one this command line
    names itself: a config read from a run folder is data, and decides nothing that runs."""
    allowed = _offered_targets() | _targets_on_the_command_line()
    for key, target in _targets_in(plain):
        if target not in allowed:
            raise ConfigError(
                f"bad config value {key}={target!r}: gradlab builds only the classes its conf/ offers and those "
                "the command line names itself (e.g. +trainer.profiler._target_=...). Remove the key, or pick "
                f"a group option (e.g. data=NAME). {NOTHING_RAN}"
            )


def _targets_in(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if k == "_target_":
                found.append((key, v))
            else:
                found += _targets_in(v, f"{key}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _targets_in(v, f"{prefix}{i}.")
    return found


def _offered_targets() -> set[str]:
    from gradlab.checks import schema

    return {tag for kind in vars(schema).values() if isinstance(kind, type) and (tag := _tag(kind))}


def _targets_on_the_command_line() -> set[str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    return {o.split("=", 1)[1] for o in HydraConfig.get().overrides.task
            if "=" in o and o.split("=", 1)[0].lstrip("+~").endswith("_target_")}


def check_stored(hparams: Any, target: str, source: str) -> None:
    """ConfigError when the hyperparameters a checkpoint stores for the class `target` (a model or a
    datamodule) break the rules a command line must pass: a checkpoint is data, and its model and
    data arguments are built only once they pass."""
    import msgspec

    from gradlab.checks import schema

    models = {_tag(kind): kind for kind in schema.Model.__args__}
    kinds = {**models, **{_tag(kind): kind for kind in schema.Data.__args__}}
    what = "model" if target in models else "data"
    if target not in kinds or not isinstance(hparams, dict):
        raise ConfigError(f"{source}: its stored {what} is not one gradlab builds ({target!r}); "
                          "use a checkpoint written by scripts/train.py")
    try:
        msgspec.convert({"_target_": target, **hparams}, kinds[target])
    except msgspec.ValidationError as e:
        located = str(e).replace(" - at `$", f" - at `$.{what}")  # the struct's keys sit under model. / data.
        detail = _explain(located, {what: {"_target_": target, **hparams}}, schema.TrainRun, stored=True)
        raise ConfigError(f"{source}: its stored hyperparameter {detail}; nothing was run. Use a checkpoint "
                          "written by scripts/train.py") from None
    if what == "model" and hparams.get("n_features") is None:
        raise ConfigError(f"{source}: its stored hyperparameter n_features=None is not allowed (an integer >= 1); "
                          "use a checkpoint written by scripts/train.py")
    try:
        _check_combinations(OmegaConf.create({what: hparams}))
    except ConfigError as e:
        raise ConfigError(f"{source}: its stored hyperparameters: {e}") from None


def _plain(cfg: DictConfig) -> dict:
    """The config as plain values, interpolations resolved; ConfigError for a missing (???) or broken one."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "a key"
        detail = str(e).splitlines()[0]
        raise ConfigError(f"bad config value {key}: {detail}. Set it in the YAML under conf/ or on the command "
                          f"line (e.g. {key}=...). {NOTHING_RAN}") from None


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _explain(message: str, plain: dict, kind: type, stored: bool = False) -> str:
    """msgspec's error as gradlab's paragraph: the key, the bad value, what the schema allows."""
    match = _AT.search(message)
    path = _steps(match.group("path")) if match else []
    while path and isinstance(path[-1], int):  # an item of a list: the key and its whole value are named
        path = path[:-1]
    problem = message[: match.start()] if match else message
    key = shown_key = ".".join(str(p) for p in path)
    if problem.startswith("Object contains unknown field"):
        extra = problem.split("`")[1]
        return _unknown_key(key, extra, plain, kind)
    if problem.startswith("Object missing required field"):
        missing = problem.split("`")[1]
        full = f"{key}.{missing}" if key else missing
        return f"bad config value {full}: it must be set. {_fix(full)}"
    value = _value(plain, path)
    allowed = _allowed_at(kind, plain, path)
    if stored:
        return f"{shown_key}={value!r} is not allowed ({allowed})"
    return f"bad config value {shown_key}={value!r}. Allowed: {allowed}. {_fix(shown_key)}"


def _fix(key: str) -> str:
    return f"Fix it in the YAML under conf/ or on the command line (e.g. {key}=...). {NOTHING_RAN}"


def _steps(path: str) -> list:
    """msgspec's `.optimizer.betas[1]` as ["optimizer", "betas", 1]."""
    return [int(index) if index else name for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path)]


def _value(plain: Any, path: list) -> Any:
    for step in path:
        plain = plain[step]
    return plain


def _unknown_key(key: str, extra: str, plain: dict, kind: type) -> str:
    if not key:  # a top-level key added with +: nothing reads it
        allowed = ", ".join(k for k in plain if k != extra)
        return (f"bad config key {extra}: nothing in gradlab reads a top-level key {extra!r}, so +{extra} would "
                f"be ignored. Top-level keys of this config: {allowed}. Fix the spelling, or drop the key. "
                f"{NOTHING_RAN}")
    struct = _narrow(_annotation_at(kind, plain, key.split(".")), _value(plain, key.split(".")))
    names = getattr(struct, "__struct_encode_fields__", ())
    target = _tag(struct) or key
    return (f"bad config key {key}.{extra}: {target} takes no argument {extra!r}. Allowed keys under {key}: "
            f"{', '.join(names)}. Fix the spelling, or drop the key (e.g. ~{key}.{extra}). {NOTHING_RAN}")


def _allowed_at(kind: type, plain: dict, path: list) -> str:
    import msgspec

    if path and path[-1] == "_target_":
        union = _unwrapped(_annotation_at(kind, plain, path[:-1]))
        tags = [t for t in map(_tag, typing.get_args(union) or [union]) if t]
        return f"one of {', '.join(repr(t) for t in tags)} (pick the group's option, e.g. {path[0]}=NAME)"
    return describe(msgspec.inspect.type_info(_annotation_at(kind, plain, path)))


# The schema is walked by its annotations, one class at a time: msgspec.inspect.type_info of the
# whole run config costs ~0.1 s, a third of what a refused command line may take.


def _annotation_at(kind: type, plain: Any, path: list):
    """The schema's annotation of the key at `path` (in a union of classes, the class whose _target_
    the node names)."""
    annotation = kind
    for step in path:
        node = _narrow(annotation, plain)
        if isinstance(node, type) and hasattr(node, "__struct_fields__"):
            python_name = dict(zip(node.__struct_encode_fields__, node.__struct_fields__))[step]
            annotation = typing.get_type_hints(node, include_extras=True)[python_name]
        else:  # a list or a tuple
            items = typing.get_args(node)
            annotation = items[step] if typing.get_origin(node) is tuple and len(items) > step else items[0]
        plain = plain[step] if isinstance(plain, list) or (isinstance(plain, dict) and step in plain) else None
    return annotation


def _unwrapped(annotation):
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _narrow(annotation, plain: Any):
    """A union of classes narrowed to the one `plain`'s _target_ names, an optional group to the group."""
    annotation = _unwrapped(annotation)
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else ()
    if members:
        target = plain.get("_target_") if isinstance(plain, dict) else None
        named = [m for m in members if target is not None and _tag(m) == target]
        others = [m for m in members if m is not type(None)]
        if named:
            return named[0]
        if len(others) == 1:
            return _unwrapped(others[0])
    return annotation


def _tag(kind) -> str | None:
    config = getattr(kind, "__struct_config__", None)
    return config.tag if config is not None and isinstance(config.tag, str) else None


def describe(info) -> str:
    """What a schema type allows, in words: 'an integer >= 1', 'null or a number > 0', ..."""
    import msgspec.inspect as mi

    if isinstance(info, mi.Metadata):
        return (info.extra_json_schema or {}).get("description") or describe(info.type)
    if isinstance(info, mi.UnionType):
        nulls = ["null"] if any(isinstance(t, mi.NoneType) for t in info.types) else []
        bools = ["true", "false"] if any(isinstance(t, mi.BoolType) for t in info.types) else []
        parts = nulls + bools + [describe(t) for t in info.types if not isinstance(t, (mi.NoneType, mi.BoolType))]
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]
    if isinstance(info, mi.BoolType):
        return "true or false"
    if isinstance(info, mi.LiteralType):
        values = [repr(v) for v in info.values]
        return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]
    if isinstance(info, (mi.IntType, mi.FloatType)):
        what = "an integer" if isinstance(info, mi.IntType) else "a number"
        low = [f"{op} {_num(v)}" for op, v in ((">=", info.ge), (">", info.gt)) if v is not None]
        high = [f"{op} {_num(v)}" for op, v in (("<=", info.le), ("<", info.lt)) if v is not None]
        if low and high and isinstance(info, mi.IntType) and info.ge is not None and info.le is not None:
            return f"an integer from {_num(info.ge)} to {_num(info.le)}"
        if low and high:  # "a number with 0 <= value < 1"
            return f"{what} with {low[0].split()[1]} {_flip(low[0].split()[0])} value {high[0]}"
        return " ".join([what, *low, *high])
    if isinstance(info, mi.StrType):
        return "a text"
    if isinstance(info, mi.NoneType):
        return "null"
    if isinstance(info, (mi.ListType, mi.TupleType)):
        return "a list"
    if isinstance(info, (mi.StructType, mi.DictType)):
        return "a group of keys"
    return str(info)


def _flip(op: str) -> str:
    return {">=": "<=", ">": "<"}[op]


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_combinations(cfg: DictConfig) -> None:
    data = cfg.get("data") or {}
    val, test = data.get("val_fraction", 0) or 0, data.get("test_fraction", 0) or 0
    if val + test >= 1:
        raise ConfigError(
            f"data.val_fraction={val} and data.test_fraction={test} add up to {val + test}, which "
            "leaves no training data. Allowed: fractions that add up to less than 1. "
            "Nothing was run and no run directory was created."
        )
    model, trainer = cfg.get("model") or {}, cfg.get("trainer") or {}
    optimization = model.get("optimization", "automatic")
    if optimization != "automatic":
        for key, off in (("gradient_clip_val", (None, 0, 0.0)), ("accumulate_grad_batches", (None, 1))):
            if trainer.get(key) not in off:
                raise ConfigError(
                    f"trainer.{key}={trainer.get(key)} cannot be used with model.optimization={optimization}: "
                    "Lightning applies it only when it runs the optimiser itself. Allowed: "
                    f"model.optimization=automatic, or leave trainer.{key} unset. "
                    "Nothing was run and no run directory was created."
                )
    optimizer = cfg.get("optimizer") or {}
    if optimizer.get("nesterov") and (optimizer.get("momentum", 0) <= 0 or optimizer.get("dampening", 0) != 0):
        raise ConfigError(
            f"optimizer.nesterov=true needs optimizer.momentum > 0 and optimizer.dampening=0 (got "
            f"momentum={optimizer.get('momentum', 0)}, dampening={optimizer.get('dampening', 0)}). "
            "Nothing was run and no run directory was created."
        )
    _check_predict_x(cfg)
    if trainer.get("devices") == 0:
        raise ConfigError(_message("trainer.devices", 0, "an integer >= 1, -1 (every device), 'auto' or a list "
                                   "of device indices"))
    strategy = str(trainer.get("strategy", "auto"))
    if data.get("loader") == "dataloader" and "ddp" in strategy:
        raise ConfigError(
            f"data.loader=dataloader cannot run with trainer.strategy={strategy}: Lightning would wrap its "
            "sampler, which already takes this rank's share, in a distributed sampler that shards it again. "
            "Allowed: data.loader=memory with DDP (the same batches), or data.loader=dataloader on one "
            "process. Nothing was run and no run directory was created."
        )
    if model.get("optimization") == "analytic" and "ddp" in strategy:
        raise ConfigError(
            f"model.optimization=analytic cannot run with trainer.strategy={strategy}: the closed-form "
            "gradient bypasses autograd, so DDP would not average it across processes. Allowed: "
            "model.optimization=automatic or manual with DDP, or analytic on one process. "
            "Nothing was run and no run directory was created."
        )


def _check_predict_x(cfg: DictConfig) -> None:
    """predict_x rows against the feature count, where the config alone tells it (not for CSVs)."""
    data = cfg.get("data") or {}
    if "n_features" in data:
        n = data.n_features
    elif str(data.get("_target_", "")).endswith("ToyDataModule"):
        n = 1
    else:
        return
    values = cfg.get("predict_x")
    values = OmegaConf.to_object(values) if OmegaConf.is_config(values) else values
    for row in values if isinstance(values, list) else [values]:
        if isinstance(row, list) and len(row) != n:
            raise ConfigError(_message(
                "predict_x", values, f"inputs with {n} value(s) each (the data has {n} feature(s)), "
                "or plain numbers, each used for every feature"
            ))


# Keys Hydra uses to build an object; never constructor arguments.
_HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def check_arguments(cfg: DictConfig):
    """Raises ConfigError for a `_target_` that cannot be imported or a key its constructor lacks;
    returns the Trainer built to check the trainer keys (None without any): Lightning's view of this
    process, which gradlab.run.nodes reads.

    Imports each target, so call it after `check` and before a run directory is claimed: a key
    appended with `+` (`+trainer.foo=1`) would otherwise fail only when the object is built.
    """
    import inspect

    from hydra.utils import get_object

    from gradlab.checks import schema

    for path, node in _targets(cfg):
        target = node["_target_"]
        try:
            obj = get_object(target)
        except Exception as e:
            detail = " ".join(str(e).split())
            raise ConfigError(_message(f"{path}._target_", target, "an importable class", detail)) from None
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):  # a builtin without a signature: nothing to compare
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        allowed = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        for key in node:
            recipes = path == "model" and key in schema.RECIPE_KEYS  # init_from, freeze: the recipe's
            if key not in _HYDRA_KEYS and key not in params and not recipes:
                raise ConfigError(
                    f"bad config key {path}.{key}: {target} takes no argument {key!r}. Allowed keys "
                    f"under {path}: {', '.join(a for a in allowed if a != 'self')}. Fix the spelling, or "
                    f"drop the key (e.g. ~{path}.{key}). Nothing was run and no run directory was created."
                )
    _check_accelerator(OmegaConf.select(cfg, "trainer.accelerator"))
    strategy = OmegaConf.select(cfg, "trainer.strategy")
    if isinstance(strategy, str) and strategy != "auto":
        from lightning.pytorch.strategies import StrategyRegistry

        if strategy not in StrategyRegistry.available_strategies():
            names = ", ".join(["auto", *StrategyRegistry.available_strategies()])
            raise ConfigError(_message("trainer.strategy", strategy, names))
    return _build_a_trainer(cfg) if "trainer" in cfg else None


def _build_a_trainer(cfg: DictConfig):
    """Builds the configured Trainer once, without logger or callbacks: what only Lightning knows
    (devices=-1 on a CPU accelerator, a strategy this machine cannot run, a `+trainer` value of the
    wrong kind) is refused here, before a run directory exists. A Trainer writes nothing until it fits."""
    from hydra.utils import instantiate

    try:
        return instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False,
                           enable_progress_bar=False, enable_model_summary=False)
    except Exception as e:
        cause = e.__cause__ or e  # Hydra wraps the constructor's error
        detail = " ".join(str(cause).split()) or type(cause).__name__
        raise ConfigError(f"bad config under trainer: Lightning's Trainer refuses it ({detail}). Fix the "
                          f"trainer keys (python scripts/train.py --cfg job -p trainer shows them). {NOTHING_RAN}"
                          ) from None


def _check_accelerator(accelerator: Any) -> None:
    import torch

    available = {
        "gpu": torch.cuda.is_available(),
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(accelerator, True):
        raise ConfigError(_message(
            "trainer.accelerator", accelerator, "'cpu' or 'auto' (this machine has no "
            f"{'GPU' if accelerator != 'mps' else 'Apple GPU'} that torch can use), e.g. trainer=default"
        ))


def _targets(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(key path, node) for each object the run builds: the group nodes and each callback."""
    found = []
    for group in ("data", "model", "optimizer", "trainer", "logger"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and "_target_" in node:
            found.append((group, node))
    for name, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            found.append((f"callbacks.{name}", node))
    return found


def _message(key: str, value: Any, allowed: str, detail: str = "") -> str:
    extra = f" ({detail})" if detail else ""
    return (
        f"bad config value {key}={value!r}{extra}. Allowed: {allowed}. "
        f"Fix it in the YAML under conf/ or on the command line (e.g. {key}=...). "
        "Nothing was run and no run directory was created."
    )
