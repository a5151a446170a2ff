"""`infer.py`: a composed config → audio files (and codes) for one text or a file of texts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from valle.audio import AUDIO_SUFFIXES, encode_audio, write_wav
from valle.cli.options import check_device, typed
from valle.codecs.base import Codec
from valle.errors import ConfigError, MissingFileError
from valle.export import load
from valle.recognizer_card import load_recognizer
from valle.sampling.pipeline import SamplerConfig
from valle.sampling.prompt import VOICE_SUFFIX, Prompt, check_prompt_seconds, load_prompt
from valle.sampling.synthesize import Synthesis, Synthesizer
from valle.utils.io import atomic_write_bytes, read_utf8

log = logging.getLogger(__name__)

# out= suffix → the file format of that name (`valle.audio.encode_audio`); Ogg holds Opus
OUT_FORMATS = {".wav": "wav", ".flac": "flac", ".mp3": "mp3", ".ogg": "opus", ".opus": "opus"}
# what may follow a texts= line's last "|" as its own prompt: audio libsndfile reads, or a voice preset
PROMPT_SUFFIXES = (*AUDIO_SUFFIXES, VOICE_SUFFIX)


def read_requests(cfg: DictConfig) -> list[tuple[str, str | None]]:
    """(text, prompt or None) pairs from `text=` or from the lines of `texts=FILE`."""
    if bool(cfg.text) == bool(cfg.texts):
        raise ConfigError('give exactly one of text="..." or texts=FILE (one utterance per line)')
    if cfg.text:
        return [(str(cfg.text), None)]
    path = Path(cfg.texts)
    if not path.is_file():
        raise MissingFileError(f"texts={path}: no such file")
    requests = [split_line(line, path) for line in read_utf8(path, "texts=").splitlines() if line.strip()]
    if not requests:
        raise ConfigError(f"texts={path}: the file holds no text")
    return requests


def split_line(line: str, path: Path) -> tuple[str, str | None]:
    """A `texts=` line → (text, its own prompt or None): "text | prompt.wav" splits at the last "|" when
    what follows it names a prompt file by its suffix (`PROMPT_SUFFIXES`); any other line is all text."""
    text, bar, prompt = line.rpartition("|")
    prompt = prompt.strip()
    if bar and Path(prompt).suffix.lower() in PROMPT_SUFFIXES:
        return text.strip(), prompt
    if bar and prompt and not any(c.isspace() for c in prompt) and Path(prompt).suffix:
        log.warning(
            "texts=%s: %r after the last '|' is not a prompt file (an audio file or a %s voice preset), "
            "so the line is all text: %r",
            path,
            prompt,
            VOICE_SUFFIX,
            line.strip(),
        )
    return line.strip(), None


def load_prompts(requests: list[tuple[str, str | None]], cfg: DictConfig, codec: Codec) -> list[Prompt]:
    """One prompt per request: its own (a `texts=` line's "|prompt.wav"), else `prompt=`.

    `prompt_text` is the transcript of `prompt=` alone; with it, that prompt is kept whole (continuation
    mode, see `load_prompt`). A line's own prompt has no transcript: cross-utterance mode, cropped.
    """
    return [
        load_prompt(p, codec, cfg.prompt_seconds)
        if p
        else load_prompt(cfg.prompt, codec, cfg.prompt_seconds, cfg.prompt_text)
        for _, p in requests
    ]


def check_out(cfg: DictConfig) -> None:
    """Refuse an `out=` whose suffix names a format infer does not write, before the model loads."""
    if cfg.text and Path(cfg.out).suffix.lower() not in OUT_FORMATS:
        raise ConfigError(
            f"out={cfg.out}: infer writes {', '.join(OUT_FORMATS)} files; end out= with one of them"
        )


def write_audio(path: Path, result: Synthesis) -> None:
    """The audio as the file `path`'s suffix names (one of `OUT_FORMATS`), written atomically."""
    response_format = OUT_FORMATS[path.suffix.lower()]
    if response_format == "wav":
        write_wav(path, result.wav, result.sample_rate)
        return
    atomic_write_bytes(
        path, encode_audio(result.wav.detach().cpu().float(), result.sample_rate, response_format)
    )


def write_outputs(results: list[Synthesis], cfg: DictConfig) -> list[Path]:
    paths = [Path(cfg.out)] if cfg.text else [Path(cfg.out_dir) / f"{i:04d}.wav" for i in range(len(results))]
    for path, result in zip(paths, results, strict=True):
        write_audio(path, result)
        if cfg.save_codes:
            np.save(path.with_suffix(".npy"), result.codes.numpy().astype(np.int16))
        limit = "  [hit max_ar_steps]" if result.hit_limit else ""
        print(f"{path}  ({result.wav.numel() / result.sample_rate:.2f} s){limit}")
    return paths


def run(cfg: DictConfig) -> list[Path]:
    sampler = typed(SamplerConfig, cfg.sampler)
    requests = read_requests(cfg)
    if any(p is None for _, p in requests) and not cfg.prompt:
        raise ConfigError(
            "no prompt: pass prompt=ref.wav (or a voice .npz), or end each line of texts= with |prompt"
        )
    check_prompt_seconds(cfg.prompt_seconds)
    check_out(cfg)
    check_device(cfg.device)
    loaded = load(cfg.ckpt, cfg.device)
    codec = loaded.card.build_codec(cfg.codec.weights, cfg.codec.name)
    recognizer = load_recognizer(cfg.recognizer, cfg.device) if cfg.recognizer else None
    synthesizer = Synthesizer(
        loaded, codec, cfg.device, quantize=cfg.quantize, compile=cfg.compile, recognizer=recognizer
    )
    prompts = load_prompts(requests, cfg, codec)
    results = synthesizer.synthesize(
        [t for t, _ in requests],
        prompts,
        cfg.language,
        sampler,
        cfg.long_text,
        cfg.prompt_seconds,
        progress=True,
    )
    return write_outputs(results, cfg)
