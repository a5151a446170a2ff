"""A ModelCheckpoint whose `last.ckpt` is the step training stopped at.

Lightning's `ModelCheckpoint(save_last=True)` saves `last.ckpt` every `every_n_train_steps`, and at the end
of training only if it never saved one (lightning 2.5: `on_train_end` checks `_last_checkpoint_saved`).
A run that stops between two intervals (`trainer.max_time`, a `max_steps` that is not a multiple, a
stop signal) therefore kept the weights of its previous interval: `make demo`'s 20-minute budget lost its
last ~110 steps, and with validation every 600 steps it would lose up to 600.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastStepCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` that also writes `last.ckpt` when training ends after its latest save.

    The final save carries the monitored metrics of the latest validation (no new validation is run); the
    top-k files are left as they are.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skips a step saved already
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)
