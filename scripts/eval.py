"""Evaluate a checkpoint on its own test split. Run: python scripts/eval.py [ckpt_path=last|PATH] [name=NAME]

Prints and logs test MSE, MAE and R2: the numbers of the training run's own test stage.
Config: conf/eval.yaml. Exit codes: see src/gradlab/run/cli.py.
"""

from gradlab.run import signals

signals.install()  # before anything else: Ctrl-C and SIGTERM exit 130 / 143 in every phase, imports included

import hydra
from omegaconf import DictConfig

from gradlab.run import cli


def _evaluate(cfg: DictConfig) -> dict:
    from gradlab.run.evaluate import evaluate  # heavy (torch, Lightning): only after the config is checked

    return evaluate(cfg)


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> dict:
    return cli.run(_evaluate, cfg)


if __name__ == "__main__":
    cli.main(main)
