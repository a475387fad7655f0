"""Export a trained model for plain PyTorch. Run: python scripts/export.py name=NAME | ckpt_path=PATH

Writes the model's state_dict and prints the plain PyTorch lines that load it.
Config: conf/export.yaml. Exit codes: see src/gradlab/run/cli.py.
"""

from gradlab.run import signals

signals.install()  # before anything else: Ctrl-C and SIGTERM exit 130 / 143 in every phase, imports included

import hydra
from omegaconf import DictConfig

from gradlab.run import cli


def _export(cfg: DictConfig):
    from gradlab.run.export import export  # heavy (torch, Lightning): only after the config is checked

    return export(cfg)


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig):
    return cli.run(_export, cfg)


if __name__ == "__main__":
    cli.main(main)
