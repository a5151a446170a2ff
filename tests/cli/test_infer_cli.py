from __future__ import annotations

import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.cli.test_train_cli import ROOT
from tests.conftest import real_speech_dir
from valle.cli.argv import literal_override
from valle.cli.infer import load_prompts, read_requests, run, write_outputs
from valle.errors import ConfigError
from valle.sampling.pipeline import SamplerConfig
from valle.sampling.synthesize import Synthesis


def compose_infer(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("infer", overrides=list(overrides))


@pytest.mark.parametrize("sampler", sorted(p.stem for p in (ROOT / "configs" / "sampler").glob("*.yaml")))
def test_every_sampler_preset_is_a_valid_sampler_config(sampler):
    cfg = compose_infer("ckpt=m.pt", "text=hi", f"sampler={sampler}")
    OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SamplerConfig), cfg.sampler))


def test_texts_file_lines_take_a_prompt_file_after_their_last_bar_and_are_otherwise_text(tmp_path, caplog):
    lines = tmp_path / "lines.txt"
    lines.write_text(
        "First line.|a.wav\n\nSecond line.\nThird | with a pipe in it.\nA | B | my voices/v.npz\nC|ref.wv\n",
        encoding="utf-8",
    )
    cfg = compose_infer("ckpt=m.pt", f"texts={lines}")
    assert read_requests(cfg) == [
        ("First line.", "a.wav"),
        ("Second line.", None),
        ("Third | with a pipe in it.", None),
        ("A | B", "my voices/v.npz"),
        ("C|ref.wv", None),  # no prompt file's suffix: text, with a warning
    ]
    assert "'ref.wv' after the last '|' is not a prompt file" in caplog.text


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".ogg"])
def test_out_is_written_in_the_format_its_suffix_names(suffix, tmp_path):
    cfg = compose_infer("ckpt=m.pt", "text=hi", f"out={tmp_path / ('o' + suffix)}")
    wav = 0.5 * torch.sin(torch.arange(12_000) / 10)
    [path] = write_outputs([Synthesis("hi", torch.zeros(2, 37, dtype=torch.long), wav, 24_000, False)], cfg)
    assert sf.info(str(path)).format == {".flac": "FLAC", ".mp3": "MP3", ".ogg": "OGG"}[suffix]


def test_text_and_texts_are_exclusive_and_ckpt_is_required(tmp_path):
    with pytest.raises(ValueError, match="exactly one of"):
        read_requests(compose_infer("ckpt=m.pt"))
    with pytest.raises(ValueError, match="exactly one of"):
        read_requests(compose_infer("ckpt=m.pt", "text=hi", f"texts={tmp_path}"))
    cfg = compose_infer("text=hi")
    with pytest.raises(Exception, match="ckpt"):
        OmegaConf.to_container(cfg, throw_on_missing=True)


def test_prompt_text_describes_prompt_alone_which_is_then_kept_whole(tiny_codec, tmp_path):
    wav, rate = sf.read(str(real_speech_dir() / "LJ049-0108.wav"), dtype="float32")  # 9 s
    transcript = (real_speech_dir() / "LJ049-0108.txt").read_text().strip()
    for name in ("voice.wav", "other.wav"):
        sf.write(str(tmp_path / name), wav, rate)
    lines = tmp_path / "lines.txt"
    lines.write_text(f"First line.\nSecond line.|{tmp_path / 'other.wav'}\n", encoding="utf-8")
    cfg = compose_infer(
        "ckpt=m.pt",
        f"texts={lines}",
        f"prompt={tmp_path / 'voice.wav'}",
        literal_override("prompt_text", transcript),
    )
    voice, other = load_prompts(read_requests(cfg), cfg, tiny_codec)
    assert (
        voice.text == transcript and voice.codes.shape[1] > 8 * tiny_codec.frame_rate
    )  # continuation: all of it
    assert other.text is None and other.codes.shape[1] == 3 * tiny_codec.frame_rate  # its own: cropped to 3 s


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "device=cuda",
            r"device=cuda: no CUDA device is available \(torch.cuda.is_available\(\) is False\); use",
        ),
        (
            "device=mps",
            r"device=mps: no MPS device is available \(torch.backends.mps.is_available\(\) is False",
        ),
        ("device=gpu", "device=gpu: not a device torch knows; use device=cpu"),
        ("prompt_seconds=-1", "prompt_seconds=-1: give at least 0.5 seconds"),
        ("prompt_seconds=0", "prompt_seconds=0: give at least 0.5 seconds"),
        ("prompt_seconds=0.2", "prompt_seconds=0.2: give at least 0.5 seconds .* or prompt_seconds=null"),
        ("out=o.m4a", r"out=o.m4a: infer writes .wav, .flac, .mp3, .ogg, .opus files"),
    ],
)
def test_a_device_prompt_length_or_output_format_this_run_cannot_have_is_refused_before_loading(
    override, message, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=message):  # ckpt and prompt do not exist: refused before
        run(compose_infer("ckpt=none.pt", "text=hi", "prompt=none.wav", override))
