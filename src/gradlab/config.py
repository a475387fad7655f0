"""Checks a composed run config before anything heavy is imported or any file is written.

Hydra already refuses unknown keys and unknown group options; this adds types and ranges,
in one table, so every bad value gets the same one-paragraph answer: the key, the bad value
and what is allowed. `check` is pure Python on purpose: it runs before torch and Lightning are
imported. `check_arguments` runs once they are (still before a run directory exists) and
catches what only the classes know: a key added with `+` that no constructor takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A config value outside what gradlab allows."""


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ge(lo: float, integer: bool = False) -> Callable[[Any], bool]:
    return lambda v: (_int(v) if integer else _num(v)) and v >= lo


def _gt(lo: float) -> Callable[[Any], bool]:
    return lambda v: _num(v) and v > lo


def _fraction(v: Any) -> bool:
    return _num(v) and 0 <= v < 1


def _one_of(*allowed: Any) -> Callable[[Any], bool]:
    return lambda v: v in allowed


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _numbers(v: Any) -> bool:
    return _num(v) or (isinstance(v, (list, tuple)) and len(v) > 0 and all(_num(x) or _row(x) for x in v))


def _row(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(_num(x) for x in v)


def _strings(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, str) and x for x in v)


def _text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _component(v: Any) -> bool:
    """One path component: a name that cannot lead out of the directory it is joined to."""
    return _text(v) and not any(c in v for c in "/\\\0") and v not in (".", "..") and v == v.strip()


def _file_pattern(v: Any) -> bool:
    """A checkpoint file name (pattern) that stays in checkpoints/: no folder outside the {metric}
    placeholders (Lightning fills those in), no '..', not absolute."""
    import re

    outside = re.sub(r"\{[^{}]*\}", "", v) if isinstance(v, str) else ""
    return _text(v) and "/" not in outside and "\\" not in outside and ".." not in v and "\0" not in v


def _betas(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(_num(b) and 0 <= b < 1 for b in v)


def _devices(v: Any) -> bool:
    indices = isinstance(v, (list, tuple)) and len(v) > 0 and all(_int(d) and d >= 0 for d in v)
    return v == "auto" or v == -1 or (_int(v) and v >= 1) or indices


def _batches(v: Any) -> bool:  # Lightning's limit_*_batches: a count or a fraction of the batches
    return v is None or (_int(v) and v >= 0) or (isinstance(v, float) and 0 <= v <= 1)


SEED_MAX = 2**32 - 1  # numpy's (and so Lightning's seed_everything's) limit
METRICS = ("val/loss", "val/mae", "val/r2", "train/loss")


# key -> (check, what is allowed). A key absent from the composed config is not checked.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _ge(0, integer=True)(v) and v <= SEED_MAX, f"an integer from 0 to {SEED_MAX}"),
    "name": (
        _component,
        "a single directory name for the run, e.g. name=my_run (no '/' or '\\', not '.' or '..', so not "
        "absolute either; not empty, no leading or trailing space), so the run lands in root_dir/<name>/",
    ),
    "root_dir": (_text, "a non-empty directory path (relative to where you run the script)"),
    "predict_x": (
        _numbers,
        "a number or a list of inputs, each a number (used for every feature) or a row with one "
        "number per feature, e.g. predict_x=[5,7]",
    ),
    "resume": (_bool, "true or false"),
    "ckpt_path": (_optional(_text), "null, 'last', or the path of a .ckpt file"),
    "data_path": (_optional(_text), "null (the run's config.yaml says) or the path of the run's CSV file"),
    "print_config": (_bool, "true or false"),
    # data (regression, toy, diabetes, csv)
    "data.n_samples": (_ge(2, integer=True), "an integer >= 2"),
    "data.n_features": (_ge(1, integer=True), "an integer >= 1"),
    "data.noise": (_ge(0), "a number >= 0"),
    "data.random_state": (
        lambda v: _ge(0, integer=True)(v) and v <= SEED_MAX, f"an integer from 0 to {SEED_MAX}"
    ),
    "data.val_fraction": (_fraction, "a number with 0 <= value < 1"),
    "data.test_fraction": (_fraction, "a number with 0 <= value < 1"),
    "data.batch_size": (_optional(_ge(2, integer=True)), "null (full batch) or an integer >= 2"),
    "data.shuffle": (_bool, "true or false"),
    "data.standardize": (_bool, "true or false"),
    "data.seed": (lambda v: _ge(0, integer=True)(v) and v <= SEED_MAX, f"an integer from 0 to {SEED_MAX}"),
    "data.path": (_text, "the path of a CSV file with a header row"),
    "data.target": (_text, "the name of the target column"),
    "data.features": (_optional(_strings), "null (all other columns) or a list of column names"),
    "data.split": (_one_of("seeded", "train_test_split"),
                   "'seeded' (gradlab's) or 'train_test_split' (sklearn's)"),
    # model
    "model.bias": (_bool, "true or false"),
    "model.init": (_one_of("default", "zeros"), "'default' or 'zeros'"),
    "model.optimization": (_one_of("automatic", "manual", "analytic"), "'automatic', 'manual' or 'analytic'"),
    # optimizer (sgd, adam; any torch.optim keyword below is checked if present)
    "optimizer._target_": (
        lambda v: _text(v) and v.startswith("torch.optim."),
        "a torch.optim class, e.g. torch.optim.SGD or torch.optim.Adam (or pick optimizer=sgd|adam)",
    ),
    "optimizer.lr": (_gt(0), "a number > 0, e.g. optimizer.lr=0.01"),
    "optimizer.momentum": (lambda v: _num(v) and 0 <= v < 1, "a number with 0 <= value < 1"),
    "optimizer.dampening": (lambda v: _num(v) and 0 <= v <= 1, "a number with 0 <= value <= 1"),
    "optimizer.nesterov": (_bool, "true or false"),
    "optimizer.weight_decay": (_ge(0), "a number >= 0"),
    "optimizer.betas": (_betas, "two numbers, each with 0 <= value < 1, e.g. optimizer.betas=[0.9,0.999]"),
    "optimizer.eps": (_gt(0), "a number > 0, e.g. 1e-8"),
    "optimizer.amsgrad": (_bool, "true or false"),
    # trainer
    "trainer.max_epochs": (_ge(1, integer=True), "an integer >= 1"),
    "trainer.min_epochs": (_optional(_ge(0, integer=True)), "null or an integer >= 0"),
    "trainer.max_steps": (lambda v: _int(v) and v >= -1, "-1 (no limit) or an integer >= 0"),
    "trainer.log_every_n_steps": (_ge(1, integer=True), "an integer >= 1"),
    "trainer.check_val_every_n_epoch": (_ge(1, integer=True), "an integer >= 1"),
    "trainer.fast_dev_run": (lambda v: _bool(v) or _ge(1, integer=True)(v), "true, false or an integer >= 1"),
    "trainer.accelerator": (_one_of("auto", "cpu", "gpu", "cuda", "mps"), "'auto', 'cpu', 'gpu', 'cuda' or 'mps'"),
    "trainer.devices": (_devices, "an integer >= 1, -1 (every device), 'auto' or a list of device indices"),
    "trainer.strategy": (_text, "a Lightning strategy name, e.g. 'auto' or 'ddp'"),
    "trainer.num_nodes": (_ge(1, integer=True), "an integer >= 1"),
    "trainer.deterministic": (_optional(_bool), "null, true or false"),
    "trainer.enable_progress_bar": (_bool, "true (callbacks.progress: a line at a terminal, the loss when piped) "
                                    "or false (no progress at all)"),
    "trainer.enable_model_summary": (_optional(_bool), "null, true or false"),
    "trainer.num_sanity_val_steps": (_ge(0, integer=True), "an integer >= 0"),
    "trainer.accumulate_grad_batches": (_ge(1, integer=True), "an integer >= 1"),
    "trainer.gradient_clip_val": (_optional(_ge(0)), "null or a number >= 0"),
    "trainer.limit_train_batches": (_batches, "null, an integer >= 0 or a fraction 0..1"),
    "trainer.limit_val_batches": (_batches, "null, an integer >= 0 or a fraction 0..1"),
    "trainer.limit_test_batches": (_batches, "null, an integer >= 0 or a fraction 0..1"),
    # logger
    "logger.default_hp_metric": (_bool, "true or false"),
    "logger.log_graph": (_bool, "true or false"),
    # callbacks
    "callbacks.checkpoint.monitor": (_optional(_one_of(*METRICS)), "null or one of " + ", ".join(METRICS)),
    "callbacks.checkpoint.mode": (_one_of("min", "max"), "'min' or 'max'"),
    "callbacks.checkpoint.save_top_k": (lambda v: _int(v) and v >= -1, "-1 (all), 0 (none) or an integer >= 1"),
    "callbacks.checkpoint.save_last": (_optional(lambda v: _bool(v) or v == "link"), "true, false or 'link'"),
    "callbacks.checkpoint.every_n_epochs": (_ge(1, integer=True), "an integer >= 1"),
    "callbacks.checkpoint.filename": (
        _optional(_file_pattern), "null or a file name pattern, e.g. 'best-{epoch}' (no folders, no '..')"),
    "callbacks.last.every_n_epochs": (_ge(1, integer=True), "an integer >= 1"),
    "callbacks.last.filename": (_file_pattern, "a file name, e.g. 'last' (no folders, no '..')"),
    "callbacks.last.enable_version_counter": (_bool, "true or false"),
    "callbacks.plots.every_n_epochs": (_ge(0, integer=True), "an integer >= 0 (0: only at the end)"),
    "callbacks.histograms.every_n_epochs": (_ge(0, integer=True), "an integer >= 0 (0: only at the end)"),
    "callbacks.histograms.min_values": (_ge(1, integer=True), "an integer >= 1"),
    "callbacks.curves.max_coefficients": (_ge(0, integer=True), "an integer >= 0 (0: no w and b curves)"),
    "callbacks.progress.refresh_per_second": (_gt(0), "a number > 0, e.g. 10"),
    "callbacks.progress.print_every_n_epochs": (_ge(0, integer=True),
                                                "an integer >= 0 (0: about ten lines a run)"),
}


def check(cfg: DictConfig) -> None:
    """Raises ConfigError naming the first bad key, its value and what is allowed."""
    _check_top_level(cfg)
    for key, (ok, allowed) in RULES.items():
        try:
            node = OmegaConf.select(cfg, key, throw_on_missing=True)
        except Exception as e:  # a missing value (???) or a broken interpolation
            raise ConfigError(_message(key, "<unset>", allowed, str(e).splitlines()[0])) from None
        if node is None and OmegaConf.select(cfg, key, default="__absent__") == "__absent__":
            continue
        value = OmegaConf.to_object(node) if isinstance(node, (DictConfig, ListConfig)) else node
        if not ok(value):
            raise ConfigError(_message(key, value, allowed))
    _check_combinations(cfg)


def check_stored(model_hparams: Any, data_hparams: Any, source: str) -> None:
    """ConfigError when the hyperparameters a checkpoint stores break the rules a command line must
    pass: a checkpoint is data, and its model and data arguments are built only once they pass."""
    try:
        cfg = OmegaConf.create({"model": dict(model_hparams or {}), "data": dict(data_hparams or {})})
    except Exception as e:
        raise ConfigError(f"{source}: its stored hyperparameters are not plain values ({e}); "
                          "use a checkpoint written by scripts/train.py") from None
    n_features = cfg.model.get("n_features")
    if not _ge(1, integer=True)(n_features):
        raise ConfigError(f"{source}: its stored hyperparameter n_features={n_features!r} is not allowed "
                          "(an integer >= 1); use a checkpoint written by scripts/train.py")
    for key, (ok, allowed) in RULES.items():
        if not key.startswith(("model.", "data.")):
            continue
        value = OmegaConf.select(cfg, key, default="__absent__")
        value = OmegaConf.to_object(value) if isinstance(value, (DictConfig, ListConfig)) else value
        if value != "__absent__" and not ok(value):
            raise ConfigError(f"{source}: its stored hyperparameter {key}={value!r} is not allowed ({allowed}); "
                              "nothing was run. Use a checkpoint written by scripts/train.py")
    try:
        _check_combinations(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: its stored hyperparameters: {e}") from None


def _check_top_level(cfg: DictConfig) -> None:
    """A top-level key added on the command line with `+` (`+sead=3`): Hydra accepts it, nothing in
    gradlab reads it (it reads the keys of its YAML), and the run would go on as if it were not
    there. Keys added under a group (`+trainer.profiler=simple`) go to that group's class, which
    check_arguments asks."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():  # composed by a test or the benchmark, not a command line
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    # `+key` only: Hydra refuses it for a key the YAML has, so each is new (`++key` may set one it has)
    added = {o.key_or_group for o in overrides if o.is_add() and "." not in o.key_or_group}
    for key in cfg:
        if key in added:
            allowed = ", ".join(k for k in cfg if k not in added)
            raise ConfigError(
                f"bad config key {key}: nothing in gradlab reads a top-level key {key!r}, so +{key} would be "
                f"ignored. Top-level keys of this config: {allowed}. Fix the spelling, or drop the key. "
                "Nothing was run and no run directory was created."
            )


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
    strategy = str(trainer.get("strategy", "auto"))
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


def check_arguments(cfg: DictConfig) -> None:
    """Raises ConfigError for a `_target_` that cannot be imported or a key its constructor lacks.

    Imports each target, so call it after `check` and before a run directory is claimed: a key
    appended with `+` (`+trainer.foo=1`) would otherwise fail only when the object is built.
    """
    import inspect

    from hydra.utils import get_object

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
            if key not in _HYDRA_KEYS and key not in params:
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
