"""An exponential moving average (EMA) of the weights, validated and checkpointed in place of the raw ones.

A thin layer over Lightning's `WeightAveraging` callback (which keeps a `torch.optim.swa_utils.AveragedModel`)
with the foreach EMA update `ema = ema + (1 - decay) * (w - ema)` from `get_ema_multi_avg_fn`.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from valle.errors import ConfigError


class EMA(WeightAveraging):
    """Keep an EMA of the LightningModule's parameters (and floating-point buffers) during `fit`.

    What happens when (inherited from `WeightAveraging`, Lightning 2.6):

    - `setup("fit")` deep-copies the whole module once (one extra copy of the weights, on `device`).
    - After each optimizer step the callback selects (see `should_update`), the average is updated; the first
      selected step copies the weights, so the average starts at step `start_step` rather than at the init.
    - Validation during fit runs with the averaged weights: they are swapped into the module when the
      validation epoch starts and swapped back afterwards (see `on_validation_end` for when exactly). So
      `val/*` metrics, and audio sampled in validation hooks, describe the EMA model.
    - Checkpoints: `state_dict` holds the averaged weights, so `load_from_checkpoint`, export and inference
      use the EMA model; the raw weights go to `checkpoint["current_model_state"]` and the average's counter
      to `checkpoint["averaging_state"]`. `Trainer.fit(ckpt_path=...)` restores both, so a resumed run
      continues the same average. A checkpoint saved without this callback initialises both from `state_dict`.
    - When fit ends, the averaged weights are copied into the module for good (the raw ones are dropped).
    - Outside fit (`trainer.validate/test/predict` on a fresh Trainer) it does nothing but warn on load.

    Args:
        decay: weight of the old average in each update; 0.999 averages over roughly the last 1000 updates.
        update_every_n_steps: update after every n-th optimizer step (counted from `start_step`).
        start_step: zero-based index of the first optimizer step whose weights enter the average; lets
            the average skip the first, fast-moving steps.
        device: where the averaged copy lives; the module's device if None ("cpu" saves accelerator memory
            at the price of a host copy per update).
        use_buffers: average the buffers as well as the parameters.
    """

    def __init__(
        self,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        start_step: int = 0,
        device: torch.device | str | None = None,
        use_buffers: bool = True,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ConfigError(f"EMA decay must be in [0, 1], got {decay}")
        if update_every_n_steps < 1 or start_step < 0:
            raise ConfigError(
                f"EMA needs update_every_n_steps >= 1 and start_step >= 0, "
                f"got {update_every_n_steps} and {start_step}"
            )
        super().__init__(device=device, use_buffers=use_buffers, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay
        self.update_every_n_steps = update_every_n_steps
        self.start_step = start_step

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """True after the selected optimizer steps; never at epoch ends (the steps already cover them)."""
        if step_idx is None:
            return False
        return step_idx >= self.start_step and (step_idx - self.start_step) % self.update_every_n_steps == 0

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Keep the averaged weights in place: Lightning calls the module's own hook after the callbacks'."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Swap the raw weights back once validation, the module's `on_validation_epoch_end` included, is
        done.

        `WeightAveraging` swaps back in `on_validation_epoch_end`, which Lightning runs for callbacks before
        the module's hook, so audio sampled there would come from the raw weights. Here the swap happens one
        hook later; Lightning orders `ModelCheckpoint` after other callbacks, so it still saves with the raw
        weights in the module and the averaged ones in the averaged copy, as `on_save_checkpoint` expects.
        """
        if self._average_model is not None:
            self._swap_models(pl_module)
