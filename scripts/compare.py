"""Runs side by side: name, status, the settings that differ between them, train, val and test metrics,
epochs and seconds, within the terminal's width.

Run: python scripts/compare.py [name=NAME] [experiment=LESSON] [sweep=FOLDER] [sort=val/loss] [top=N]
                               [output=FILE.csv] [root_dir=lightning_logs]
e.g. python scripts/compare.py sweep=default/sweep-1820 sort=val/loss
Config: conf/compare.yaml (its keys, read without Hydra). Exit codes: 0 done, 2 a bad key or value.
"""

from gradlab.run import signals

signals.install()  # before anything else: Ctrl-C and SIGTERM exit 130 / 143 in every phase, imports included

import sys

from gradlab.run import cli


def _compare(cfg):
    from gradlab.show.compare import compare

    return compare(cfg)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        cli.exit_now(0)
    cli.run(_compare, cli.key_values("compare", sys.argv[1:]))
    cli.exit_now(0)
