"""Medusa heads (valle.models.medusa): what they learn to predict, how they train, and that they travel
with the model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.models.test_sequence import random_batch
from tests.training.conftest import cpu_trainer, tiny_datamodule, tiny_module
from valle.checkpoints import load_model_weights
from valle.errors import ConfigError
from valle.export import export_checkpoint, load
from valle.models.config import MedusaConfig, ValleConfig
from valle.models.valle import Valle


def medusa_model(heads: int = 3, **overrides) -> Valle:
    torch.manual_seed(0)
    return Valle(ValleConfig.tiny(medusa=MedusaConfig(heads=heads), **overrides).with_data(20, 3, 16))


def test_head_k_learns_the_code_k_frames_after_the_base_heads():
    model = medusa_model(heads=3).eval()
    batch = random_batch()
    with torch.no_grad():
        output = model(batch, torch.zeros(3, dtype=torch.long))
    [base] = output.levels
    stop = model.config.stop_token
    per_row = [  # each row's AR targets: its codes, then stop
        [*batch.codes[b, 0, : int(n)].tolist(), stop] for b, n in enumerate(batch.code_lengths)
    ]
    assert base.targets.tolist() == [t for row in per_row for t in row]
    assert len(output.medusa) == 3
    for k, out in enumerate(output.medusa):
        assert out.targets.tolist() == [t for row in per_row for t in row[k + 1 :]]
        assert out.logits.shape == (len(out.targets), stop + 1)
        # at the start each head is the base head: zero residual block, the base head's projection
        offsets = [sum(len(r) for r in per_row[:b]) for b in range(3)]
        rows = [offsets[b] + j for b, row in enumerate(per_row) for j in range(len(row) - k - 1)]
        torch.testing.assert_close(out.logits, base.logits[rows])


def test_a_model_without_heads_trains_and_decodes_as_before():
    model = medusa_model(heads=0)
    assert model.ar.medusa is None
    assert not any("medusa" in key for key in model.state_dict())
    output = model(random_batch(), torch.zeros(3, dtype=torch.long))
    assert output.medusa == []


def test_heads_train_jointly_and_log_their_accuracy(tiny_dm, tmp_path):
    model = ValleConfig.tiny(medusa=MedusaConfig(heads=2))
    module = tiny_module(tiny_dm, model=model, training={"level_p": [1.0, 0.0]})
    trainer = cpu_trainer(
        tmp_path, max_steps=3, limit_val_batches=1, val_check_interval=3, check_val_every_n_epoch=None
    )
    before = module.model.ar.medusa.blocks.detach().clone()
    trainer.fit(module, tiny_dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for head in (1, 2):
        assert f"train/loss_medusa{head}" in metrics
        assert 0.0 <= metrics[f"val/acc_medusa{head}"] <= metrics[f"val/top5_medusa{head}"] <= 1.0
    assert not torch.equal(module.model.ar.medusa.blocks, before)


def test_heads_added_to_a_trained_model_train_alone_and_export_with_it(tiny_shards, tmp_path):
    dm = tiny_datamodule(tiny_shards)
    base = tiny_module(dm)
    cpu_trainer(tmp_path / "base", max_steps=2).fit(base, dm)
    base_ckpt = tmp_path / "base.ckpt"
    base.trainer.save_checkpoint(base_ckpt)
    module = tiny_module(
        dm,
        model=ValleConfig.tiny(medusa=MedusaConfig(heads=2)),
        training={"medusa": {"freeze_backbone": True}},
        init_from=str(base_ckpt),
    )
    load_model_weights(module, base_ckpt)
    heads = module.model.ar.medusa
    assert heads is not None
    # the new heads start as the loaded model's own head, not the random one the module was built with
    torch.testing.assert_close(heads.weight[1], base.model.ar.heads.weight[0])
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("ar.medusa.") for n in trainable)
    frozen = {k: v.clone() for k, v in module.model.state_dict().items() if not k.startswith("ar.medusa.")}
    trainer = cpu_trainer(tmp_path / "heads", max_steps=3)
    trainer.fit(module, dm)
    for key, value in module.model.state_dict().items():
        if key in frozen:
            assert torch.equal(value, frozen[key]), key
    assert not torch.equal(heads.blocks, torch.zeros_like(heads.blocks))
    trainer.save_checkpoint(tmp_path / "heads.ckpt")
    loaded = load(export_checkpoint(tmp_path / "heads.ckpt", tmp_path / "heads.pt"))
    assert loaded.config.medusa.heads == 2
    for key, value in module.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_freezing_without_heads_or_a_trained_model_is_refused(tiny_dm):
    with pytest.raises(ConfigError, match=r"model.medusa.heads=K.*init_from"):
        tiny_module(tiny_dm, training={"medusa": {"freeze_backbone": True}}, init_from="x.ckpt")
    with pytest.raises(ConfigError, match="init_from"):
        tiny_module(
            tiny_dm,
            model=ValleConfig.tiny(medusa=MedusaConfig(heads=2)),
            training={"medusa": {"freeze_backbone": True}},
        )


def test_lora_fine_tune_trains_the_heads_beside_the_adapters(tiny_shards, tmp_path):
    dm = tiny_datamodule(tiny_shards)
    base = tiny_module(dm)
    cpu_trainer(tmp_path / "base", max_steps=2).fit(base, dm)
    base.trainer.save_checkpoint(tmp_path / "base.ckpt")
    module = tiny_module(
        dm,
        model=ValleConfig.tiny(medusa=MedusaConfig(heads=2)),
        lora={"rank": 4, "alpha": 8.0},
        init_from=str(tmp_path / "base.ckpt"),
    )
    load_model_weights(module, tmp_path / "base.ckpt")
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any(n.startswith("ar.medusa.") for n in trainable)
    trainer = cpu_trainer(tmp_path / "lora", max_steps=2)
    trainer.fit(module, dm)
    trainer.save_checkpoint(tmp_path / "lora.ckpt")
    saved = torch.load(tmp_path / "lora.ckpt", weights_only=True)["state_dict"]
    assert {k for k in saved if "medusa" in k} and all("lora_" in k or "medusa" in k for k in saved)
    exported = load(export_checkpoint(tmp_path / "lora.ckpt", tmp_path / "merged.pt"))
    torch.testing.assert_close(exported.model.ar.medusa.blocks, module.model.ar.medusa.blocks)


def test_negative_head_counts_are_refused():
    with pytest.raises(ConfigError, match=r"model.medusa.heads=-1"):
        ValleConfig.tiny(medusa={"heads": -1})
    assert replace(ValleConfig.tiny(), medusa={"heads": 2}).medusa.heads == 2  # Hydra hands dicts


def test_self_distilled_heads_learn_the_base_heads_own_argmax():
    """`training.medusa.targets=model`: head k's target at frame j + k + 1 is what the base head predicts
    there, the frame greedy decoding will check its guess against."""
    model = medusa_model(heads=2).eval()
    batch = random_batch()
    levels = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        recorded = model(batch, levels)
        distilled = model(batch, levels, medusa_distill=True)
    [base] = recorded.levels
    own = base.logits.argmax(-1).tolist()  # the base head's argmax at every response position, in row order
    lengths = [int(n) + 1 for n in batch.code_lengths]
    rows, start = [], 0
    for n in lengths:
        rows.append(own[start : start + n])
        start += n
    for k, out in enumerate(distilled.medusa):
        assert out.targets.tolist() == [t for row in rows for t in row[k + 1 :]]
        assert out.targets.tolist() != recorded.medusa[k].targets.tolist()
    with pytest.raises(ConfigError, match="training.medusa.targets='teacher'"):
        from valle.training.module import MedusaTraining

        MedusaTraining(targets="teacher")
