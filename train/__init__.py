"""Training code for automaster: corpus building, datasets, de-mastering, losses and the loop."""
