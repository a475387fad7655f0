"""Train a model. Run: python scripts/train.py [group=option ...] [key=value ...]

Examples: python scripts/train.py model=linear
          python scripts/train.py experiment=journal_autograd
          python scripts/train.py -m optimizer.lr=0.001,0.01,0.1
Config: conf/train.yaml. Exit codes: see src/gradlab/cli.py.
"""

import hydra
from omegaconf import DictConfig

from gradlab import cli


def _train(cfg: DictConfig) -> float:
    from gradlab.train import train  # heavy (torch, Lightning): only after the config is checked

    result = train(cfg)
    if result.status == "interrupted":
        cli.exit_now(128 + result.signum)
    return result.metrics.get("val/loss", float("nan"))  # the value an Optuna sweep minimises


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return cli.run(_train, cfg)


if __name__ == "__main__":
    main()
    cli.exit_now(0)
