"""Showing a run: what it prints (report), its TensorBoard logger, HParams, curves and histograms
(tensorboard), its pictures (pictures) and its progress line (progress)."""
