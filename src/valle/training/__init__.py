"""Training with Lightning: the LightningModule, its callbacks and weight averaging (EMA)."""
