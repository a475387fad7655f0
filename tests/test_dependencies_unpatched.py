"""gradlab uses Lightning, torchmetrics and TensorBoard as they ship: after runs of every kind, each
function and class attribute of theirs is still the object the library defined."""

from __future__ import annotations

import sys

import pytest
from conftest import make_cfg

from gradlab.run.recipe import train

LIBRARIES = ("lightning", "torchmetrics", "tensorboard")
LAZY = {"__annotations__"}  # Python makes it on first look at a class without annotations


def _definitions() -> dict[tuple[str, str], int]:
    """(module or class, attribute) -> the object's id, for every module of the libraries loaded now."""
    seen: dict[tuple[str, str], int] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(LIBRARIES):
            continue
        for attr, value in list(vars(module).items()):
            if callable(value):
                seen[(name, attr)] = id(value)
            if isinstance(value, type) and getattr(value, "__module__", "").startswith(LIBRARIES):
                for member, obj in list(vars(value).items()):
                    seen[(f"{name}.{attr}", member)] = id(obj)
    return seen


@pytest.mark.parametrize("optimization", ["automatic", "manual", "analytic"])
def test_a_run_replaces_no_function_or_method_of_its_dependencies(optimization, tmp_path):
    train(make_cfg("trainer.fast_dev_run=true", root_dir=tmp_path))  # every library module loaded
    before = _definitions()
    train(make_cfg("trainer.max_epochs=12", "trainer.check_val_every_n_epoch=4", "data.batch_size=16",
                   f"model.optimization={optimization}", root_dir=tmp_path))
    after = _definitions()
    changed = sorted(key for key, ident in before.items() if after.get(key, ident) != ident)
    classes = {owner for owner, _ in before}
    added = sorted(key for key in after.keys() - before.keys()
                   if key[0] in classes and "." in key[0] and key[1] not in LAZY)
    assert changed == [] and added == []  # nothing replaced, nothing set on a class of theirs
