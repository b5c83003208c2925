"""Checkpoints: this package's own directories and the original TF1 checkpoints."""
