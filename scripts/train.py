"""Train a model. Run: python scripts/train.py [group=option ...] [key=value ...]

Examples: python scripts/train.py model=linear
          python scripts/train.py experiment=journal_autograd
          python scripts/train.py -m optimizer.lr=0.001,0.01,0.1
          python scripts/train.py -m hparams_search=lr
Config: conf/train.yaml. Exit codes: see src/gradlab/run/cli.py.
"""

from gradlab.run import signals

signals.install()  # before anything else: Ctrl-C and SIGTERM exit 130 / 143 in every phase, imports included

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gradlab.run import cli, sweeps

sweeps.register_resolvers()  # the sweep job folder names of conf/train.yaml
sweeps.register_launcher()  # hydra/launcher=joblib: gradlab's, which stops gently


def _train(cfg: DictConfig) -> float:
    from gradlab.run.course import transfer_lesson
    from gradlab.run.recipe import train  # heavy (torch, Lightning): only after the config is checked
    from gradlab.run.stopping import Diverged

    try:
        result = transfer_lesson(cfg) if cfg.get("transfer") else train(cfg)  # course_transfer: four runs
    except Diverged as e:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise  # exit code 3
        # one bad learning rate must not end a sweep: the job scores inf and the sweep goes on
        print(f"gradlab: training diverged: {e}. This sweep job scores val/loss = inf.", file=sys.stderr)
        return float("inf")
    if result.status == "interrupted":
        return cli.stopped("", result.signum)  # its continue command is printed
    return result.metrics.get("val/loss", float("nan"))  # the value an Optuna sweep minimises


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return cli.run(_train, cfg)


if __name__ == "__main__":
    cli.main(main)
