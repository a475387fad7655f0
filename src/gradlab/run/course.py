"""experiment=course_transfer (the course's lesson 15) in one command: pretrain a model on some classes,
then on the others fine-tune all its layers, fine-tune its head only (features frozen), and train the
same model from scratch, each with the same budget and in its own run directory; then a table of what the
pretrained weights bought. Each run is an ordinary train() with model.init_from, model.freeze and
data.keep_classes set."""

from __future__ import annotations

import copy

from omegaconf import DictConfig, open_dict

from gradlab.run.recipe import RunResult, train
from gradlab.show.report import say

VARIANTS = {  # row: (start from the pretrained weights, what is frozen)
    "all layers": (True, []),
    "head only": (True, ["features"]),
    "from scratch": (False, []),
}


def transfer_lesson(cfg: DictConfig) -> RunResult:
    """Runs the four trainings cfg.transfer describes and prints the table; returns the last run's result."""
    plan = cfg.transfer
    pretrained = train(_stage(cfg, f"{cfg.name}_pretrained", plan.pretrain_classes, cfg.trainer.max_epochs))
    if pretrained.status != "finished":
        return pretrained
    ckpt = pretrained.run_dir / "checkpoints" / "last.ckpt"
    rows = []
    for row, (from_pretrained, frozen) in VARIANTS.items():
        result = train(_stage(cfg, f"{cfg.name}_{row.replace(' ', '_')}", plan.classes, plan.epochs,
                              str(ckpt) if from_pretrained else None, frozen))
        if result.status != "finished":
            return result
        rows.append((row, result))
    say(_table(rows, plan, pretrained))
    return rows[-1][1]


def _stage(cfg: DictConfig, name: str, classes, epochs: int, init_from: str | None = None,
           freeze: list[str] = ()) -> DictConfig:
    stage = copy.deepcopy(cfg)
    with open_dict(stage):
        stage.pop("transfer")
        stage.name = name
        stage.data.keep_classes = list(classes)
        stage.trainer.max_epochs = int(epochs)
        stage.model.init_from = init_from
        stage.model.freeze = list(freeze)
    return stage


def _table(rows: list[tuple[str, RunResult]], plan, pretrained: RunResult) -> str:
    import torch

    lines = [f"Transfer learning: pretrained on digits {list(plan.pretrain_classes)}, then trained on",
             f"  {list(plan.classes)}, {plan.epochs} epoch(s) each; the pretrained run: {pretrained.run_dir}",
             f"{'':14}{'test accuracy':>14}{'epochs':>8}{'trainable parameters':>22}"]
    for row, result in rows:
        state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        trainable = _trainable(state, row)
        lines.append(f"{row:14}{100 * result.metrics['test/accuracy']:>12.4g} %{plan.epochs:>8}{trainable:>22,}")
    lines += [f"  {row}: {result.run_dir}" for row, result in rows]
    return "\n".join(lines)


def _trainable(state: dict, row: str) -> int:
    """Parameters the optimiser moved: all of the network's, or the head's alone with features frozen."""
    frozen = VARIANTS[row][1]
    return sum(v.numel() for k, v in state["state_dict"].items()
               if k.startswith("net.") and not any(k.startswith(f"net.{f}.") for f in frozen))
