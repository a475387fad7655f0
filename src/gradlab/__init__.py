"""gradlab: gradient-based regression with PyTorch Lightning, Hydra and TensorBoard.

Kept free of imports so that `scripts/*.py --help` and config errors answer before torch loads.
"""

__version__ = "0.1.0"
