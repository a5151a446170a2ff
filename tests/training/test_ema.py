"""EMA weight averaging with a real Trainer on CPU: the averaged weights are validated, kept and resumed."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from valle.training.ema import EMA

pytestmark = pytest.mark.filterwarnings("ignore:.*(num_workers|exists and is not empty).*")

N_BATCHES = 4


class Regression(L.LightningModule):
    """A Linear on random data that records its weights after every optimizer step and when validating."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 1)
        self.after_step: list[torch.Tensor] = []  # weights after optimizer step i, i = 0, 1, ...
        self.validated: list[torch.Tensor] = []  # weights seen by validation_step
        self.at_val_epoch_end: list[torch.Tensor] = []
        self.at_train_start: torch.Tensor | None = None

    def weights(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.net.parameters()]).clone()

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.validated.append(self.weights())

    def on_train_start(self) -> None:
        self.at_train_start = self.weights()

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        self.after_step.append(self.weights())

    def on_validation_epoch_end(self) -> None:
        self.at_val_epoch_end.append(self.weights())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.2)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4 * N_BATCHES, 3, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True) + 1), batch_size=4)


def trainer(tmp_path: Path, callbacks: list, max_epochs: int = 1) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        default_root_dir=tmp_path,
    )


def ema_by_hand(weights: list[torch.Tensor], decay: float, start: torch.Tensor | None = None) -> torch.Tensor:
    """The average of `weights` in order; the first one starts it unless a `start` average is given."""
    ema = weights[0] if start is None else start
    for w in weights[int(start is None) :]:
        ema = decay * ema + (1 - decay) * w
    return ema


def test_fit_validates_and_ends_with_the_hand_computed_average(tmp_path) -> None:
    torch.manual_seed(0)
    model = Regression()
    trainer(tmp_path, [EMA(decay=0.5, start_step=1, update_every_n_steps=2)]).fit(model, loader(), loader())

    steps = model.after_step
    assert len(steps) == N_BATCHES
    expected = ema_by_hand([steps[1], steps[3]], decay=0.5)  # steps 1 and 3: start 1, every 2nd
    assert not torch.allclose(expected, steps[-1])
    torch.testing.assert_close(model.weights(), expected, rtol=0, atol=1e-6)
    # Validation at the epoch's end ran on the average, the module's own epoch-end hook included.
    torch.testing.assert_close(model.validated[0], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.at_val_epoch_end[0], expected, rtol=0, atol=1e-6)


def test_checkpoint_holds_the_average_and_resumes_it(tmp_path) -> None:
    torch.manual_seed(0)
    first = Regression()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(tmp_path, [EMA(decay=0.5), checkpoint]).fit(first, loader(), loader())

    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    average = torch.cat([saved["state_dict"]["net.weight"].flatten(), saved["state_dict"]["net.bias"]])
    raw = torch.cat(
        [saved["current_model_state"]["net.weight"].flatten(), saved["current_model_state"]["net.bias"]]
    )
    torch.testing.assert_close(average, ema_by_hand(first.after_step, 0.5), rtol=0, atol=1e-6)
    torch.testing.assert_close(raw, first.after_step[-1], rtol=0, atol=0)

    resumed = Regression()
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", save_last=True
    )  # the run's own, as on a real resume
    run = trainer(tmp_path, [EMA(decay=0.5), checkpoint], max_epochs=2)
    run.fit(resumed, loader(), loader(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert run.global_step == 2 * N_BATCHES
    torch.testing.assert_close(resumed.at_train_start, raw, rtol=0, atol=0)  # training continues from raw
    expected = ema_by_hand(resumed.after_step, 0.5, start=average)  # and the average carries on
    torch.testing.assert_close(resumed.weights(), expected, rtol=0, atol=1e-6)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        EMA(decay=1.5)
    with pytest.raises(ValueError, match="update_every_n_steps"):
        EMA(update_every_n_steps=0)
