from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.training.conftest import Repeat, cpu_trainer, tiny_datamodule, tiny_module
from valle.errors import ConfigError
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
        module, torch.utils.data.DataLoader(Repeat(batch, 300), batch_size=None)
    )
    losses = losses.values
    module.eval()
    with torch.no_grad():
        for level in range(dm.codec_info.n_levels):
            levels = torch.full((batch.size,), level)
            [out] = module.model(batch, levels).levels
            accuracy = (out.logits.argmax(-1) == out.targets).float().mean()
            assert accuracy > 0.95, f"level {level}: accuracy {accuracy:.3f}"
    chunks = [sum(losses[i : i + 60]) / 60 for i in range(0, 300, 60)]
    assert all(later < earlier for earlier, later in zip(chunks, chunks[1:], strict=False)), chunks


@pytest.mark.parametrize(
    "model",
    [
        ValleConfig.tiny(),
        ValleConfig.tiny(shared=False, prefix_lm=True, shared_head=True),
        ValleConfig.tiny(
            shared=False,
            backbone=BackboneConfig("retnet", 0.0),
            nar_backbone=BackboneConfig("transformer", 0.0),
        ),
        ValleConfig.tiny(
            shared=False,
            backbone=BackboneConfig("retnet", 0.0, {"moe_freq": 1, "moe_expert_count": 2}),
            nar_backbone=BackboneConfig("transformer", 0.0),
        ),
    ],
    ids=["shared-transformer", "split-transformer-prefixlm", "retnet-ar", "retnet-moe-ar"],
)
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
        module.model(batch, torch.ones(batch.size, dtype=torch.long))


def test_bf16_mixed_precision_trains_on_cpu(tiny_dm, tmp_path):
    trainer = cpu_trainer(tmp_path, max_steps=2, precision="bf16-mixed")
    trainer.fit(tiny_module(tiny_dm), tiny_dm)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_validation_logs_every_level_and_a_total_over_the_ar_and_the_nar(tiny_dm, tmp_path):
    trainer = cpu_trainer(
        tmp_path, max_steps=2, limit_val_batches=2, val_check_interval=2, check_val_every_n_epoch=None
    )
    trainer.fit(tiny_module(tiny_dm, training={"level_p": [3.0, 1.0]}), tiny_dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for level in range(tiny_dm.codec_info.n_levels):
        for name in ("loss", "acc", "top10"):
            assert f"val/{name}_l{level}" in metrics
    assert (
        metrics["val/loss_ar"] == metrics["val/loss_l0"] and metrics["val/loss_nar"] == metrics["val/loss_l1"]
    )
    # what checkpoints monitor: the levels weighted as training draws them, not the AR alone
    assert metrics["val/loss"] == pytest.approx(
        0.75 * metrics["val/loss_l0"] + 0.25 * metrics["val/loss_l1"], rel=1e-6
    )
    assert abs(metrics["val/loss"] - metrics["val/loss_ar"]) > 1e-4


def test_two_validation_passes_use_the_same_prompts_and_give_the_same_losses(tiny_dm, tmp_path):
    module = tiny_module(tiny_dm)
    loader = tiny_dm.val_dataloader()  # one loader, as fit keeps it: each pass is a new epoch of it
    trainer = cpu_trainer(tmp_path, limit_val_batches=1.0)
    passes = [trainer.validate(module, loader, verbose=False)[0] for _ in range(2)]
    assert passes[0].keys() == passes[1].keys() and "val/loss" in passes[0]
    for name, value in passes[0].items():
        assert passes[1][name] == pytest.approx(value, rel=1e-6), name


def test_label_smoothing_keeps_the_nar_loss_finite_and_its_metrics_working(tiny_dm, tmp_path):
    trainer = cpu_trainer(
        tmp_path, max_steps=2, limit_val_batches=1, val_check_interval=2, check_val_every_n_epoch=None
    )
    trainer.fit(tiny_module(tiny_dm, training={"label_smoothing": 0.1, "level_p": [1.0, 1.0]}), tiny_dm)
    metrics = trainer.callback_metrics
    for name in ("train/loss", "train/loss_l1", "val/loss_l1", "val/acc_l1", "val/top10_l1", "val/loss"):
        assert math.isfinite(float(metrics[name])), name
    batch = next(iter(tiny_dm.train_dataloader()))
    output = tiny_module(tiny_dm).model(
        batch, torch.ones(batch.size, dtype=torch.long)
    )  # every row on the NAR
    [nar] = output.levels
    assert nar.logits.shape[1] == tiny_dm.codec_info.codebook_size  # no stop class: the NAR never stops
    assert math.isfinite(
        float(torch.nn.functional.cross_entropy(nar.logits, nar.targets, label_smoothing=0.1))
    )


def test_prefix_lm_with_text_or_prompt_losses_is_refused_at_start_up(tiny_dm):
    for weights in ({"text_loss_weight": 0.1}, {"prompt_loss_weight": 0.1}):
        with pytest.raises(ConfigError, match="model.prefix_lm=true") as error:
            tiny_module(tiny_dm, ValleConfig.tiny(prefix_lm=True), training=weights)
        assert "\n" not in str(error.value)
    tiny_module(tiny_dm, ValleConfig.tiny(prefix_lm=True))  # without those losses it is fine
    tiny_module(tiny_dm, training={"text_loss_weight": 0.1})  # and so is a causal prefix


def test_resume_with_dropout_continues_with_the_same_losses(tiny_shards, tmp_path):
    def run(ckpt_path=None) -> list[float]:
        L.seed_everything(0)  # as train.py does, before building the model
        dm = tiny_datamodule(tiny_shards)
        module = tiny_module(dm, ValleConfig.tiny(backbone=BackboneConfig("transformer", 0.3)))
        losses = LossRecorder()
        saver = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="{step}")
        trainer = cpu_trainer(
            tmp_path,
            max_steps=4,
            limit_val_batches=1,
            val_check_interval=2,
            check_val_every_n_epoch=None,
            enable_checkpointing=True,
            callbacks=[losses, saver],
        )
        trainer.fit(module, dm, ckpt_path=ckpt_path)
        return losses.values

    straight = run()  # checkpoints after step 2 (then validates, which draws from the generators too)
    resumed = run(ckpt_path=tmp_path / "step=2.ckpt")
    assert len(straight) == 4 and len(resumed) == 2
    assert resumed == pytest.approx(straight[2:], rel=1e-6)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    from valle.training.rng import capture_rng_state, restore_rng_state

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.save({"rng": capture_rng_state()}, tmp_path / "state.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and (expected[1] == again[1]).all() and expected[2] == again[2]


def test_checkpoint_loads_without_training_config(tiny_dm, tmp_path):
    trainer = cpu_trainer(tmp_path, max_steps=2)
    module = tiny_module(tiny_dm)
    trainer.fit(module, tiny_dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ValleModule.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.config == module.config and loaded.card.symbols == module.card.symbols
    for key, value in module.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    assert loaded.stats["steps"] == 2 and loaded.stats["samples"] > 0


def test_level_distribution_default_skew_and_errors():
    assert torch.allclose(level_distribution(TrainingConfig(), 4), torch.full((4,), 0.25))
    assert torch.allclose(
        level_distribution(TrainingConfig(level_p=[2, 1, 1]), 3), torch.tensor([0.5, 0.25, 0.25])
    )
    with pytest.raises(ValueError, match="must hold 4 non-negative weights"):
        level_distribution(TrainingConfig(level_p=[1, 1]), 4)


def test_text_and_prompt_losses_are_added_only_when_weighted(tiny_dm, tmp_path):
    trainer = cpu_trainer(tmp_path, max_steps=2)
    trainer.fit(
        tiny_module(
            tiny_dm, training={"level_p": [1.0, 0.0], "text_loss_weight": 0.1, "prompt_loss_weight": 0.1}
        ),
        tiny_dm,
    )
    assert {"train/loss_text", "train/loss_prompt"} <= set(trainer.callback_metrics)
    plain = cpu_trainer(tmp_path, max_steps=2)
    plain.fit(tiny_module(tiny_dm, training={"level_p": [1.0, 0.0]}), tiny_dm)
    assert "train/loss_text" not in plain.callback_metrics


def test_symbols_read_as_unk_are_reported_once_per_epoch_with_the_top_ones(shards_copy, tmp_path, caplog):
    from tests.data.test_datamodule import drop_symbol
    from tests.data.test_prepare import read_all

    symbol = drop_symbol(shards_copy)
    dm = tiny_datamodule(shards_copy)
    expected = sum(
        s.symbols.count(symbol) for k, s in read_all(shards_copy).items() if k not in dm.split.val_keys
    )
    with caplog.at_level("WARNING", logger="valle.training.module"):
        cpu_trainer(tmp_path, max_steps=-1, max_epochs=2).fit(tiny_module(dm), dm)
    reports = [r.getMessage() for r in caplog.records if "read as <unk>" in r.getMessage()]
    assert len(reports) == 2, reports
    assert all(f"{expected} phoneme symbols" in m and f"{symbol!r} {expected}" in m for m in reports)


def test_ddp_that_expects_every_parameter_in_every_step_is_refused(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from valle.training.module import check_ddp_finds_unused_parameters

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        with pytest.raises(ConfigError, match="trainer.strategy=ddp_find_unused_parameters_true"):
            check_ddp_finds_unused_parameters(DistributedDataParallel(torch.nn.Linear(2, 2)))
        check_ddp_finds_unused_parameters(
            DistributedDataParallel(torch.nn.Linear(2, 2), find_unused_parameters=True)
        )
        check_ddp_finds_unused_parameters(torch.nn.Linear(2, 2))  # one process: nothing to check
    finally:
        dist.destroy_process_group()


def test_guided_attention_with_the_duration_prior_fits_it_and_keeps_it_in_checkpoints(tiny_shards, tmp_path):
    dm = tiny_datamodule(tiny_shards, max_tokens=1500, val_speakers=0, val_utterances=0)
    guided = {"weight": 1.0, "layers": [1], "heads": 1, "prior": "durations"}
    module = tiny_module(dm, training={"guided_attention": guided})
    trainer = cpu_trainer(tmp_path, max_steps=3)
    trainer.fit(module, dm.train_dataloader())
    seen_frames, seen_symbols = module.duration_prior.totals.tolist()
    assert seen_frames > seen_symbols > 0  # every step added its rows
    trainer.save_checkpoint(tmp_path / "prior.ckpt")
    restored = ValleModule.load_from_checkpoint(tmp_path / "prior.ckpt")
    assert torch.equal(restored.duration_prior.gram, module.duration_prior.gram)
    assert tiny_module(dm).duration_prior is None  # linear diagonal or no guidance: nothing to fit


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_an_ar_input_dropout_outside_0_to_1_is_refused_naming_the_field(share):
    with pytest.raises(ConfigError, match=rf"training.ar_input_dropout={share}"):
        TrainingConfig(ar_input_dropout=share)


def test_sliding_context_training_draws_a_window_in_a_share_of_the_steps(tiny_dm, tmp_path):
    from valle.training.module import SlidingContext

    always, never = SlidingContext(p=1.0, min_frames=5, max_frames=9), SlidingContext(p=0.0)
    assert all(5 <= (always.draw(3)[0] or 0) <= 9 and always.draw(3)[1] is None for _ in range(20))
    assert never.draw(3) == (None, None)
    shifted = [SlidingContext(p=1.0, max_shift=50).draw(4)[1] for _ in range(20)]
    assert all(s is not None and s.shape == (4,) and 0 <= int(s.min()) <= int(s.max()) <= 50 for s in shifted)
    assert len({int(v) for s in shifted for v in s}) > 10  # drawn per row, not one shift for all
    with pytest.raises(ConfigError, match="sliding_context"):
        SlidingContext(p=0.5, min_frames=10, max_frames=5)
    with pytest.raises(ConfigError, match="max_shift=100: .* set p > 0"):
        SlidingContext(max_shift=100)
    window = {"p": 1.0, "min_frames": 2, "max_frames": 4}
    for sliding in (window, {**window, "max_shift": 300}):
        trainer = cpu_trainer(tmp_path, max_steps=2)
        trainer.fit(tiny_module(tiny_dm, training={"sliding_context": sliding}), tiny_dm)
        assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    retnet = ValleConfig.tiny(
        backbone=BackboneConfig("retnet", 0.0), shared=False, nar_backbone=BackboneConfig()
    )
    with pytest.raises(ConfigError, match="sliding_context.p > 0 slides an attention window"):
        tiny_module(tiny_dm, model=retnet, training={"sliding_context": {"p": 0.5}})
