from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest
import torch

from tests.helpers.codes import assert_codes_match_up_to_near_ties, codec_latents, quantizer_for
from tests.training.conftest import cpu_trainer, tiny_datamodule, tiny_module
from valle.card import ModelCard
from valle.checkpoints import load_model_weights, read_card
from valle.export import export_checkpoint, load
from valle.training.module import ValleModule


@pytest.fixture(scope="module")
def trained(tiny_shards, tmp_path_factory):
    """A tiny module trained a few steps, and its checkpoint."""
    tmp = tmp_path_factory.mktemp("trained")
    dm = tiny_datamodule(tiny_shards)
    module = tiny_module(dm)
    trainer = cpu_trainer(tmp, max_steps=4)
    trainer.fit(module, dm)
    trainer.save_checkpoint(tmp / "model.ckpt")
    return module.eval(), tmp / "model.ckpt", next(iter(dm.val_dataloader()))


def logits(model, batch, level):
    with torch.no_grad():
        [out] = model(batch, torch.full((batch.size,), level)).levels
    return out.logits


def test_export_then_load_gives_the_same_weights_and_logits_without_lightning(trained, tmp_path):
    module, ckpt, batch = trained
    out = export_checkpoint(ckpt, tmp_path / "model.pt")
    loaded = load(out)
    exported = loaded.model.state_dict()
    assert exported.keys() == module.model.state_dict().keys()
    for key, value in module.model.state_dict().items():
        assert torch.equal(exported[key], value), key  # the weights travel bit for bit
    for level in range(module.config.n_levels):
        # Two models in other memory: kernels may round differently, so the logits agree to float rounding.
        torch.testing.assert_close(logits(loaded.model, batch, level), logits(module.model, batch, level))
    assert loaded.symbols == module.card.symbols
    assert loaded.codec == module.card.codec
    assert loaded.stats["steps"] == 4 and loaded.stats["tokens"] > 0 and loaded.stats["longest_seconds"] > 0
    raw = torch.load(out, weights_only=True)
    assert raw["format"] == "valle" and raw["version"] == 1
    code = (
        f"import sys, valle; valle.load({str(out)!r}); "
        "assert 'lightning' not in sys.modules and 'hydra' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_card_round_trips_through_plain_data_and_an_export_keeps_its_keys(trained, tmp_path):
    module, ckpt, _ = trained
    card = read_card(ckpt)
    assert card.config == module.config and card.symbols == module.card.symbols
    assert card.stats == module.stats and card.codec_state is None
    assert ModelCard.from_dict(card.to_dict()) == card
    assert ModelCard.from_dict(card.to_dict(with_state=False)) == ModelCard(
        card.config, card.symbols, card.codec
    )
    raw = torch.load(export_checkpoint(ckpt, tmp_path / "model.pt"), weights_only=True)
    assert set(raw) == {
        "format",
        "version",
        "model",
        "dtype",
        "config",
        "symbols",
        "codec",
        "stats",
        "codec_state",
    }
    assert ModelCard.from_dict(raw) == card


def as_written_before_the_card(ckpt: Path, out: Path) -> Path:
    """The checkpoint with its hyper-parameters as valle wrote them before `ModelCard`: model, symbols and
    codec side by side."""
    data = torch.load(ckpt, weights_only=True)
    described = data["hyper_parameters"].pop("card")
    data["hyper_parameters"] |= {
        "model": described["config"],
        "symbols": described["symbols"],
        "codec": described["codec"],
    }
    torch.save(data, out)
    return out


def test_checkpoints_written_before_the_card_still_load_export_and_rebuild_the_module(trained, tmp_path):
    module, ckpt, batch = trained
    old = as_written_before_the_card(ckpt, tmp_path / "old.ckpt")
    assert read_card(old) == read_card(ckpt)
    for loaded in (load(old), load(export_checkpoint(old, tmp_path / "old.pt"))):
        assert loaded.card == read_card(ckpt)
        torch.testing.assert_close(logits(loaded.model, batch, 0), logits(module.model, batch, 0))
    rebuilt = ValleModule.load_from_checkpoint(old, card=read_card(old))
    assert rebuilt.card.config == module.config and rebuilt.stats == module.stats


def test_fp16_export_is_half_the_size_and_close(trained, tmp_path):
    module, ckpt, batch = trained
    fp32 = export_checkpoint(ckpt, tmp_path / "fp32.pt")
    fp16 = export_checkpoint(ckpt, tmp_path / "fp16.pt", dtype="fp16")
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size
    torch.testing.assert_close(
        logits(load(fp16).model, batch, 0), logits(module.model, batch, 0), atol=0.05, rtol=0.05
    )
    with pytest.raises(ValueError, match="dtype='int8'"):
        export_checkpoint(ckpt, tmp_path / "x.pt", dtype="int8")


def test_weights_for_another_codec_or_symbol_map_are_refused(trained, tiny_shards):
    module, ckpt, _ = trained
    other_codec = tiny_module(tiny_datamodule(tiny_shards))
    other_codec.card.codec = replace(other_codec.card.codec, name="dac", n_levels=9, sample_rate=44100)
    with pytest.raises(ValueError, match="codec 'encodec'.*but codec 'dac'"):
        load_model_weights(other_codec, ckpt)
    other_symbols = tiny_module(tiny_datamodule(tiny_shards))
    other_symbols.card.symbols = other_symbols.card.symbols.extended(["ʘ"], [])
    with pytest.raises(ValueError, match="another symbol map.*symbols it lacks: ʘ"):
        load_model_weights(other_symbols, ckpt)


def test_lora_fine_tune_saves_adapters_only_and_merges_on_export(trained, tiny_shards, tmp_path):
    base, ckpt, batch = trained
    dm = tiny_datamodule(tiny_shards)
    module = tiny_module(dm, lora={"rank": 4, "alpha": 8.0}, init_from=str(ckpt))
    load_model_weights(module, ckpt)
    trainable = [n for n, p in module.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    trainer = cpu_trainer(tmp_path, max_steps=3)
    trainer.fit(module, dm)
    trainer.save_checkpoint(tmp_path / "lora.ckpt")
    saved = torch.load(tmp_path / "lora.ckpt", weights_only=True)["state_dict"]
    assert saved and all("lora_" in k for k in saved)
    exported = load(export_checkpoint(tmp_path / "lora.ckpt", tmp_path / "merged.pt"))
    assert not any("lora_" in k for k in exported.model.state_dict())
    module.eval()
    torch.testing.assert_close(
        logits(exported.model, batch, 0), logits(module.model, batch, 0), atol=1e-4, rtol=1e-4
    )
    assert not torch.allclose(logits(exported.model, batch, 0), logits(base.model, batch, 0))


def test_lora_without_a_base_model_is_refused(tiny_shards):
    with pytest.raises(ValueError, match="set init_from"):
        tiny_module(tiny_datamodule(tiny_shards), lora={"rank": 4})


def test_mel_models_carry_their_codebooks_into_checkpoints_and_exports(tiny_corpus, tmp_path):
    """Nobody can download mel codebooks: the checkpoint and the export carry the ones the data used."""
    from tests.conftest import prepare_settings
    from valle.audio import load_for_codec
    from valle.codecs import build_codec, carried_state, codec_for
    from valle.codecs.mel import CODEBOOKS_FILE, fit_mel_codebooks, save_codebooks
    from valle.codecs.weights import WeightsError
    from valle.data.prepare import prepare

    shards = tmp_path / "shards"
    with pytest.raises(FileNotFoundError, match=CODEBOOKS_FILE):
        carried_state(build_codec("mel", codebook_size=16, weights="random").info, shards)
    wavs = [load_for_codec(p, 24_000) for p in sorted(tiny_corpus.rglob("*.wav"))[:4]]
    books = fit_mel_codebooks(wavs, codebook_size=16, n_iter=3, init="random")
    codec = build_codec("mel", codebook_size=16, weights=str(save_codebooks(shards / CODEBOOKS_FILE, books)))
    prepare(prepare_settings(tiny_corpus, shards), codec, codec.info)
    dm = tiny_datamodule(shards)
    module = tiny_module(dm, codec_state=carried_state(dm.codec_info, shards))
    cpu_trainer(tmp_path, max_steps=1).fit(module, dm)
    module.trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert "codec_state" not in module.hparams and "codec_state" not in module.hparams.card  # no tensors
    # in hparams.yaml

    for path in (tmp_path / "model.ckpt", export_checkpoint(tmp_path / "model.ckpt", tmp_path / "model.pt")):
        loaded = load(path)
        decoder = codec_for(loaded.codec, state=loaded.codec_state)  # weights="pretrained": the carried ones
        assert torch.equal(decoder.codebooks, books.codebooks) and torch.equal(decoder.mean, books.mean)
        expected, latents = codec.encode(wavs[0], 24_000), codec_latents(codec, wavs[0], 24_000)
        assert_codes_match_up_to_near_ties(
            quantizer_for(codec), expected, decoder.encode(wavs[0], 24_000), latents
        )
    with pytest.raises(WeightsError, match="mel codebooks the model file does not carry .*codec.weights="):
        codec_for(loaded.codec)  # a model file without them has nothing to decode with


# --- the codec weights the training codes came from -------------------------------------------------------


def compose_infer(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(
        config_dir=str(Path(__file__).resolve().parents[2] / "configs"), version_base="1.3"
    ):
        return compose("infer", overrides=list(overrides))


def test_a_model_on_random_codec_codes_says_so_and_infer_decodes_with_that_codec(
    trained, tiny_corpus, tmp_path
):
    """Shards from a codec at random init → checkpoint and export record it → infer.py (no codec.weights=)
    builds that codec rather than downloading the pretrained one, whose codes mean other sounds."""
    from valle.cli.infer import run

    module, ckpt, _ = trained
    assert module.card.codec.weights == "random:seed=0"  # from the shards' index
    export = export_checkpoint(ckpt, tmp_path / "model.pt")
    assert load(ckpt).codec.weights == load(export).codec.weights == "random:seed=0"
    prompt = sorted(tiny_corpus.rglob("*.wav"))[0]
    args = [
        f"ckpt={export}",
        "text=Hello.",
        f"prompt={prompt}",
        f"out={tmp_path / 'out.wav'}",
        "sampler.max_ar_steps=3",
    ]
    with mock.patch("torch.hub.load_state_dict_from_url", side_effect=AssertionError("downloaded")) as hub:
        run(compose_infer(*args))
        with pytest.raises(
            ValueError,
            match="made with codec weights random:seed=0 but weights pretrained were "
            "configured.*codec.weights=random",
        ):
            run(compose_infer(*args, "codec.weights=pretrained"))
    hub.assert_not_called()
    assert (tmp_path / "out.wav").is_file()


def test_files_that_record_no_codec_weights_still_load_as_unknown(trained, tmp_path):
    _, ckpt, _ = trained
    data = torch.load(as_written_before_the_card(ckpt, tmp_path / "old.ckpt"), weights_only=True)
    del data["hyper_parameters"]["codec"]["weights"]  # as checkpoints were written before
    torch.save(data, tmp_path / "old.ckpt")
    export = torch.load(export_checkpoint(ckpt, tmp_path / "model.pt"), weights_only=True)
    del export["codec"]["weights"]
    torch.save(export, tmp_path / "old.pt")
    for path in (tmp_path / "old.ckpt", tmp_path / "old.pt"):
        assert (
            load(path).codec.weights == ""
        )  # unknown: codec_for keeps the old default (pretrained), and logs it
