"""`infer.py`: a composed config → wav files (and codes) for one text or a file of texts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from valle.audio import write_wav
from valle.cli.options import check_device, typed
from valle.codecs.base import Codec
from valle.errors import ConfigError, MissingFileError
from valle.export import load
from valle.recognizer_card import load_recognizer
from valle.sampling.pipeline import SamplerConfig
from valle.sampling.prompt import Prompt, check_prompt_seconds, load_prompt
from valle.sampling.synthesize import Synthesis, Synthesizer
from valle.utils.io import read_utf8

log = logging.getLogger(__name__)


def read_requests(cfg: DictConfig) -> list[tuple[str, str | None]]:
    """(text, prompt or None) pairs from `text=` or from the lines of `texts=FILE`."""
    if bool(cfg.text) == bool(cfg.texts):
        raise ConfigError('give exactly one of text="..." or texts=FILE (one utterance per line)')
    if cfg.text:
        return [(str(cfg.text), None)]
    path = Path(cfg.texts)
    if not path.is_file():
        raise MissingFileError(f"texts={path}: no such file")
    requests = []
    for line in read_utf8(path, "texts=").splitlines():
        if line.strip():
            text, _, prompt = line.partition("|")
            requests.append((text.strip(), prompt.strip() or None))
    if not requests:
        raise ConfigError(f"texts={path}: the file holds no text")
    return requests


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


def write_outputs(results: list[Synthesis], cfg: DictConfig) -> list[Path]:
    paths = [Path(cfg.out)] if cfg.text else [Path(cfg.out_dir) / f"{i:04d}.wav" for i in range(len(results))]
    for path, result in zip(paths, results, strict=True):
        write_wav(path, result.wav, result.sample_rate)
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
