"""gradlab from Python (a notebook, a script of your own): train with the same overrides as the
command line, load a run's model, and list runs side by side.

    from gradlab.run import api
    run = api.train("experiment=journal_regression")      # = python scripts/train.py experiment=...
    run.status, run.metrics["val/loss"], run.run_dir       # 'finished', 332.57, lightning_logs/...
    model = api.load_model(run.run_dir)                    # the trained LightningModule, in eval mode
    api.predict(run.run_dir, [5])                          # [416.47534]: f(5), as predict.py
    api.runs()                                             # compare.py's table as a pandas DataFrame

The same checks, run directory, TensorBoard run, result.json and report as `scripts/train.py`;
a bad override raises the exception whose message the command line prints (ConfigError, ...)
instead of exiting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradlab.run.recipe import RunResult

CONF = Path(__file__).resolve().parents[3] / "conf"  # the project's conf/, as scripts/train.py reads it


def compose(*overrides: str):
    """The config `python scripts/train.py *overrides` runs, composed by Hydra's compose API. Hydra's
    view of it (its overrides) is set too, so the run records them as a command-line run does
    (overrides.yaml, HParams' `args`, compare.py's columns)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from gradlab.run import sweeps

    sweeps.register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # the run's own config, as the command line's run gets it
    return cfg


def train(*overrides: str) -> RunResult:
    """Trains one run, as `python scripts/train.py *overrides` does (no `-m`: call it once per value).

    Returns its RunResult: run_dir (Path), status ('finished' or 'interrupted') and metrics
    ({'val/loss': ..., 'test/loss': ..., 'train/final_loss': ...}). Raises ConfigError (a bad
    override), DataError, BadCheckpoint, Diverged, ... with the message the command line prints.
    """
    from gradlab.checks.config import check
    from gradlab.run.recipe import train as recipe_train

    cfg = compose(*overrides)
    check(cfg)
    return recipe_train(cfg)


def load_model(run: str | Path, checkpoint: str = "last.ckpt"):
    """A run's trained model (a gradlab LightningModule, in eval mode, on the CPU), from its
    checkpoints/<checkpoint> (or a .ckpt path), read with weights_only=True as eval.py reads it.

    The model takes inputs as its training data gave them: standardised where the data was (see
    `predict`, which applies the standardisation stored with it)."""
    from gradlab.run.evaluate import restore

    return restore(_checkpoint(run, checkpoint)).model


def predict(run: str | Path, x: list, checkpoint: str = "last.ckpt") -> list[Any]:
    """The run's predictions for raw inputs, as `predict.py x=[...]` prints them: `x` is a list of
    numbers (each used for every feature) or of rows. Regression: one number each; a classifier:
    {'class': label, 'probability': p} each."""
    from gradlab.lessons.data import input_rows
    from gradlab.run.evaluate import restore

    restored = restore(_checkpoint(run, checkpoint))
    rows = restored.dm.transform(input_rows(x, restored.model.hparams.n_features, "x"))
    columns = {k: v.tolist() for k, v in restored.model.outputs(rows).items()}
    if list(columns) == ["prediction"]:
        return columns["prediction"]
    classes = getattr(restored.dm, "classes", None)
    return [{"class": classes[c] if classes is not None else c, "probability": p}
            for c, p in zip(columns["class"], columns["probability"])]


def runs(root: str | Path = "lightning_logs", name: str | None = None, experiment: str | None = None,
         sweep: str | None = None, sort: str | None = None):
    """compare.py's table as a pandas DataFrame (gradlab.show.compare.frame): one row per run."""
    from gradlab.show.compare import frame

    return frame(root, name, experiment, sweep, sort)


def _checkpoint(run: str | Path, checkpoint: str) -> Path:
    path = Path(run)
    return path if path.suffix == ".ckpt" else path / "checkpoints" / checkpoint
