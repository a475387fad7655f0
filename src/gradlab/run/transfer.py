"""Transfer learning (the course's lesson 15): a new run that starts from another run's weights
(`model.init_from`, its optimiser fresh) and keeps some of them fixed (`model.freeze`).

Both keys sit under `model` but are no constructor arguments: the recipe applies them to the model it
built, before any run directory exists, so a checkpoint that does not fit or a name that matches
nothing exits 2 with nothing written.
"""

from __future__ import annotations

import lightning.pytorch as L
import torch

from gradlab.checks.checkpoint import BadCheckpoint, load_checkpoint
from gradlab.checks.config import ConfigError
from gradlab.checks.schema import RECIPE_KEYS

KEYS = RECIPE_KEYS  # the recipe's, under model: not passed to the model's constructor


def init_from(model: L.LightningModule, path: str) -> None:
    """The weights of the checkpoint at `path` (read and validated as every checkpoint is), every layer
    of the same name and shape; the optimiser is not taken (it starts fresh)."""
    try:
        saved = load_checkpoint(path)
    except BadCheckpoint as e:
        raise BadCheckpoint(f"model.init_from={path!r}: {e}") from None
    theirs = {k: v for k, v in saved["state_dict"].items() if isinstance(v, torch.Tensor)}
    ours = model.state_dict()
    problems = [f"{k} is {list(theirs[k].shape)} there and {list(v.shape)} here" for k, v in ours.items()
                if k in theirs and theirs[k].shape != v.shape]
    problems += [f"{k} is missing there" for k in ours if k not in theirs]
    problems += [f"it has {k}, which this model has not" for k in theirs if k not in ours]
    their_classes = (saved.get("hyper_parameters") or {}).get("n_classes")
    our_classes = model.hparams.get("n_classes")
    if problems and their_classes and our_classes and their_classes != our_classes:  # the head says why
        problems.insert(0, f"its head tells {their_classes} classes apart and the data here has {our_classes} "
                           "(data.keep_classes picks as many, if the data has them)")
    if problems:
        raise BadCheckpoint(f"model.init_from={path!r}: its layers do not fit the {type(model).__name__} this "
                            f"config builds: {'; '.join(problems)}. Build the same layers (the model keys of its "
                            "run's config.yaml) or start from another checkpoint")
    model.load_state_dict(theirs)


def freeze(model: L.LightningModule, names: list[str]) -> list[str]:
    """requires_grad=False for every parameter a name matches: a submodule of the network (`features`,
    `head`) or a prefix of a named_parameters() name (`net.features.0`); returns the frozen names."""
    parameters = dict(model.named_parameters())
    frozen = []
    for name in names:
        prefix = name if name.startswith("net.") else f"net.{name}"  # the network's names, as printed
        matched = [p for p in parameters if p == prefix or p.startswith(prefix + ".")]
        if not matched:
            raise ConfigError(
                f"model.freeze: {name!r} matches no parameter of {type(model).__name__}; its parameters are "
                f"{', '.join(parameters)} (name a submodule, e.g. features or head, or a prefix of one of "
                "them). Nothing was run and no run directory was created.")
        frozen += matched
    if frozen and getattr(model, "optimization", None) == "analytic":
        raise ConfigError("model.freeze with model.optimization=analytic: the analytic path writes every "
                          "layer's gradient by hand, so frozen layers would still move; use automatic or "
                          "manual. Nothing was run and no run directory was created.")
    for p in frozen:
        parameters[p].requires_grad_(False)  # no gradient, so the optimiser leaves it as it is
    return frozen
