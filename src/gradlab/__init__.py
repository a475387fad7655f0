"""gradlab: a deep-learning course's lessons with PyTorch Lightning, Hydra and TensorBoard.

- gradlab.lessons: the models and data a learner reads next to the journal (imports nothing else here);
- gradlab.run: running a run (the recipe, eval, predict, resume, run directories, stopping);
- gradlab.show: what a run shows (the printed report, TensorBoard, pictures, progress);
- gradlab.checks: what comes in (the config schema, checkpoint files).

Kept free of imports so that `scripts/*.py --help` and config errors answer before torch loads.
"""

__version__ = "0.1.0"
