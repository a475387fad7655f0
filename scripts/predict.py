"""Predict with a trained model. Run: python scripts/predict.py x=[5,7] | input=FILE.csv [output=FILE.csv]

Inputs are raw values; the checkpoint's standardisation is applied. Writes a CSV.
Config: conf/predict.yaml. Exit codes: see src/gradlab/run/cli.py.
"""

from gradlab.run import signals

signals.install()  # before anything else: Ctrl-C and SIGTERM exit 130 / 143 in every phase, imports included

import hydra
from omegaconf import DictConfig

from gradlab.run import cli


def _predict(cfg: DictConfig):
    from gradlab.run.predict import predict  # heavy (torch, Lightning): only after the config is checked

    return predict(cfg)


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig):
    return cli.run(_predict, cfg)


if __name__ == "__main__":
    cli.main(main)
