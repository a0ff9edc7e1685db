"""Training: BPTT trainer, losses, checkpoints."""
