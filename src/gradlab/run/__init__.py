"""Running a run: the recipe (train), eval and predict, the command line's exit codes, run directories
and their lock, checkpoints in a run, resume, sweeps, stopping (signals, divergence), atomic writes.

Kept free of imports: scripts import gradlab.run.signals first thing, before torch.
"""
