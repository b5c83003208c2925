"""Training: the losses of each version, the trainer, its flags, and many-machine training."""
