from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from tests.training.conftest import Repeat, cpu_trainer, tiny_datamodule, tiny_module
from valle.models.config import BackboneConfig, ValleConfig
from valle.training.module import TrainingConfig, ValleModule, level_distribution


class LossRecorder(L.Callback):
    def __init__(self):
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.values.append(float(outputs["loss"]))


def test_tiny_model_memorizes_one_batch_at_every_level(tiny_shards, tmp_path):
    dm = tiny_datamodule(tiny_shards, max_tokens=1500, val_speakers=0, val_utterances=0)
    batch = next(iter(dm.train_dataloader()))
    module = tiny_module(dm, optim={"lr": 3e-3, "warmup_steps": 10, "schedule": "constant"})
    losses = LossRecorder()
    cpu_trainer(tmp_path, max_steps=300, gradient_clip_val=1.0, callbacks=[losses]).fit(
        module, torch.utils.data.DataLoader(Repeat(batch, 300), batch_size=None))
    losses = losses.values
    module.eval()
    with torch.no_grad():
        for level in range(dm.codec_info.n_levels):
            levels = torch.full((len(batch["keys"]),), level)
            [out] = module.model(batch, levels).levels
            accuracy = (out.logits.argmax(-1) == out.targets).float().mean()
            assert accuracy > 0.95, f"level {level}: accuracy {accuracy:.3f}"
    chunks = [sum(losses[i:i + 60]) / 60 for i in range(0, 300, 60)]
    assert all(later < earlier for earlier, later in zip(chunks, chunks[1:], strict=False)), chunks


@pytest.mark.parametrize("model", [
    ValleConfig.tiny(),
    ValleConfig.tiny(shared=False, prefix_lm=True, shared_head=True),
    ValleConfig.tiny(shared=False, backbone=BackboneConfig("retnet", 0.0),
                     nar_backbone=BackboneConfig("transformer", 0.0)),
    ValleConfig.tiny(shared=False, backbone=BackboneConfig("retnet", 0.0, {"moe_freq": 1, "moe_expert_count": 2}),
                     nar_backbone=BackboneConfig("transformer", 0.0)),
], ids=["shared-transformer", "split-transformer-prefixlm", "retnet-ar", "retnet-moe-ar"])
def test_backbones_and_layouts_train_a_few_steps(tiny_dm, tmp_path, model):
    module = tiny_module(tiny_dm, model, training={"level_p": [1.0, 1.0]})
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = cpu_trainer(tmp_path, max_steps=3)
    trainer.fit(module, tiny_dm)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    changed = [k for k, v in module.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("ar.backbone") for k in changed)
    assert any(k.startswith("nar_stack.backbone" if not model.shared else "ar.backbone") for k in changed)
    moe = model.backbone.options.get("moe_freq")
    assert ("train/aux_loss" in trainer.callback_metrics) == bool(moe)
    if moe:
        assert float(trainer.callback_metrics["train/aux_loss"]) > 0


def test_retnet_cannot_be_the_nar(tiny_dm):
    with pytest.raises(ValueError, match="transformer"):
        module = tiny_module(tiny_dm, ValleConfig.tiny(backbone=BackboneConfig("retnet", 0.0)))
        batch = next(iter(tiny_dm.train_dataloader()))
        module.model(batch, torch.ones(len(batch["keys"]), dtype=torch.long))


def test_bf16_mixed_precision_trains_on_cpu(tiny_dm, tmp_path):
    trainer = cpu_trainer(tmp_path, max_steps=2, precision="bf16-mixed")
    trainer.fit(tiny_module(tiny_dm), tiny_dm)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_validation_logs_every_level(tiny_dm, tmp_path):
    trainer = cpu_trainer(tmp_path, max_steps=2, limit_val_batches=2, val_check_interval=2,
                          check_val_every_n_epoch=None)
    trainer.fit(tiny_module(tiny_dm), tiny_dm)
    for level in range(tiny_dm.codec_info.n_levels):
        for name in ("loss", "acc", "top10"):
            assert f"val/{name}_l{level}" in trainer.callback_metrics
    assert "val/loss" in trainer.callback_metrics


def test_checkpoint_loads_without_training_config(tiny_dm, tmp_path):
    trainer = cpu_trainer(tmp_path, max_steps=2)
    module = tiny_module(tiny_dm)
    trainer.fit(module, tiny_dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ValleModule.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.config == module.config and loaded.hparams.symbols == module.hparams.symbols
    for key, value in module.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    assert loaded.stats["steps"] == 2 and loaded.stats["samples"] > 0


def test_level_distribution_default_skew_and_errors():
    assert torch.allclose(level_distribution(TrainingConfig(), 4), torch.full((4,), 0.25))
    assert torch.allclose(level_distribution(TrainingConfig(level_p=[2, 1, 1]), 3), torch.tensor([0.5, 0.25, 0.25]))
    with pytest.raises(ValueError, match="must hold 4 non-negative weights"):
        level_distribution(TrainingConfig(level_p=[1, 1]), 4)


def test_text_and_prompt_losses_are_added_only_when_weighted(tiny_dm, tmp_path):
    trainer = cpu_trainer(tmp_path, max_steps=2)
    trainer.fit(tiny_module(tiny_dm, training={"level_p": [1.0, 0.0], "text_loss_weight": 0.1,
                                               "prompt_loss_weight": 0.1}), tiny_dm)
    assert {"train/loss_text", "train/loss_prompt"} <= set(trainer.callback_metrics)
    plain = cpu_trainer(tmp_path, max_steps=2)
    plain.fit(tiny_module(tiny_dm, training={"level_p": [1.0, 0.0]}), tiny_dm)
    assert "train/loss_text" not in plain.callback_metrics
