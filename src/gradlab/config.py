"""Checks a composed run config before anything heavy is imported or any file is written.

Hydra already refuses unknown keys and unknown group options; this adds types and ranges,
in one table, so every bad value gets the same one-paragraph answer: the key, the bad value
and what is allowed. Pure Python on purpose: it runs before torch and Lightning are imported.
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


# key -> (check, what is allowed). A key absent from the composed config is not checked.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_ge(0, integer=True), "an integer >= 0"),
    "name": (_text, "a non-empty name for the run directory"),
    "predict_x": (
        _numbers,
        "a number or a list of inputs, each a number (used for every feature) or a row with one "
        "number per feature, e.g. predict_x=[5,7]",
    ),
    "resume": (_bool, "true or false"),
    "ckpt_path": (_optional(_text), "null, 'last', or the path of a .ckpt file"),
    "print_config": (_bool, "true or false"),
    "data.n_samples": (_ge(2, integer=True), "an integer >= 2"),
    "data.n_features": (_ge(1, integer=True), "an integer >= 1"),
    "data.noise": (_ge(0), "a number >= 0"),
    "data.random_state": (_ge(0, integer=True), "an integer >= 0"),
    "data.val_fraction": (_fraction, "a number with 0 <= value < 1"),
    "data.test_fraction": (_fraction, "a number with 0 <= value < 1"),
    "data.batch_size": (_optional(_ge(2, integer=True)), "null (full batch) or an integer >= 2"),
    "data.shuffle": (_bool, "true or false"),
    "data.standardize": (_bool, "true or false"),
    "data.seed": (_ge(0, integer=True), "an integer >= 0"),
    "data.path": (_text, "the path of a CSV file with a header row"),
    "data.target": (_text, "the name of the target column"),
    "data.features": (_optional(_strings), "null (all other columns) or a list of column names"),
    "model.bias": (_bool, "true or false"),
    "model.init": (_one_of("default", "zeros"), "'default' or 'zeros'"),
    "model.optimization": (_one_of("automatic", "manual", "analytic"), "'automatic', 'manual' or 'analytic'"),
    "optimizer.lr": (_gt(0), "a number > 0, e.g. optimizer.lr=0.01"),
    "optimizer.momentum": (_ge(0), "a number >= 0"),
    "optimizer.weight_decay": (_ge(0), "a number >= 0"),
    "trainer.max_epochs": (_ge(1, integer=True), "an integer >= 1"),
    "trainer.min_epochs": (_optional(_ge(0, integer=True)), "null or an integer >= 0"),
    "trainer.log_every_n_steps": (_ge(1, integer=True), "an integer >= 1"),
    "trainer.check_val_every_n_epoch": (_ge(1, integer=True), "an integer >= 1"),
    "trainer.fast_dev_run": (lambda v: _bool(v) or _ge(1, integer=True)(v), "true, false or an integer >= 1"),
    "trainer.accelerator": (_one_of("auto", "cpu", "gpu", "cuda", "mps"), "'auto', 'cpu', 'gpu', 'cuda' or 'mps'"),
    "trainer.num_nodes": (_ge(1, integer=True), "an integer >= 1"),
    "trainer.deterministic": (_optional(_bool), "null, true or false"),
    "trainer.enable_progress_bar": (_optional(_bool), "null (on a terminal only), true or false"),
    "trainer.num_sanity_val_steps": (_ge(0, integer=True), "an integer >= 0"),
    "callbacks.checkpoint.every_n_epochs": (_ge(1, integer=True), "an integer >= 1"),
    "callbacks.plots.every_n_epochs": (_ge(0, integer=True), "an integer >= 0 (0: only at the end)"),
}


def check(cfg: DictConfig) -> None:
    """Raises ConfigError naming the first bad key, its value and what is allowed."""
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
    strategy = str(trainer.get("strategy", "auto"))
    if model.get("optimization") == "analytic" and "ddp" in strategy:
        raise ConfigError(
            f"model.optimization=analytic cannot run with trainer.strategy={strategy}: the closed-form "
            "gradient bypasses autograd, so DDP would not average it across processes. Allowed: "
            "model.optimization=automatic or manual with DDP, or analytic on one process. "
            "Nothing was run and no run directory was created."
        )


def _message(key: str, value: Any, allowed: str, detail: str = "") -> str:
    extra = f" ({detail})" if detail else ""
    return (
        f"bad config value {key}={value!r}{extra}. Allowed: {allowed}. "
        f"Fix it in the YAML under conf/ or on the command line (e.g. {key}=...). "
        "Nothing was run and no run directory was created."
    )
