"""`prepare.py`: a composed config → shards, index and a printed summary."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from valle.audio import AudioError, load_for_codec
from valle.codecs import build_codec, describe_codec
from valle.codecs.base import Codec
from valle.data.prepare import PrepareResult, PrepareSettings, prepare, summarize
from valle.data.readers import read_corpus
from valle.errors import ConfigError

log = logging.getLogger(__name__)


def _plain(node: Any, resolve: bool, throw_on_missing: bool = False) -> dict[str, Any]:
    """A config mapping as a plain dict."""
    values = OmegaConf.to_container(node, resolve=resolve, throw_on_missing=throw_on_missing)
    assert isinstance(values, dict)  # the nodes passed here are mappings, keyed by name
    return cast("dict[str, Any]", values)


def settings_from_config(cfg: DictConfig) -> PrepareSettings:
    """Validate the non-codec keys against `PrepareSettings` (a typo is an error, not a new key)."""
    values = _plain(cfg, resolve=True, throw_on_missing=True)
    keys = {k: v for k, v in values.items() if k not in ("codec", "hydra")}
    schema = OmegaConf.structured(PrepareSettings)
    return PrepareSettings(**_plain(OmegaConf.merge(schema, keys), resolve=False))


MEL_FIT_UTTERANCES = 400  # evenly spaced over the corpus: enough frames for 256-entry codebooks


def fit_mel_codebooks_for(settings: PrepareSettings, codec_kwargs: dict) -> Path:
    """`codec=mel codec.weights=fit`: fit the codebooks on the corpus once, beside the shards.

    A rerun (or another part) reuses the file, so every shard is encoded with the same codebooks.
    """
    from valle.codecs.mel import CODEBOOKS_FILE, fit_mel_codebooks, save_codebooks

    path = Path(settings.output) / CODEBOOKS_FILE
    if path.is_file():
        return path
    utterances, _ = read_corpus(settings.layout, settings.input, settings.language)
    step = max(1, len(utterances) // MEL_FIT_UTTERANCES)
    wavs = []
    for utterance in utterances[::step]:
        assert utterance.audio_path is not None  # a corpus read from audio files
        try:
            wavs.append(
                load_for_codec(utterance.audio_path, codec_kwargs["sample_rate"], settings.silence_dbfs)
            )
        except AudioError as error:
            log.warning("not fitting on %s", error)
    if not wavs:
        raise ConfigError(f"input={settings.input}: no readable audio to fit the mel codebooks on")
    keys = ("sample_rate", "hop_length", "n_mels", "n_fft", "n_levels", "codebook_size")
    log.info("fitting mel codebooks on %d utterances", len(wavs))
    save_codebooks(path, fit_mel_codebooks(wavs, **{k: codec_kwargs[k] for k in keys}, init="random"))
    return path


def run(cfg: DictConfig) -> PrepareResult:
    settings = settings_from_config(cfg)
    codec_kwargs = _plain(cfg.codec, resolve=True)
    if codec_kwargs["name"] == "mel" and codec_kwargs.get("weights") == "fit":
        codec_kwargs["weights"] = str(fit_mel_codebooks_for(settings, codec_kwargs))
    codec: Codec | None
    if settings.layout == "seed":  # already encoded: only the codec's description is needed
        codec, info = None, describe_codec(**codec_kwargs)
    else:
        codec = build_codec(**codec_kwargs).to(settings.device).eval()
        info = codec.info
    log.info(
        "preparing %s (%s layout) → %s with %s",
        settings.input,
        settings.layout,
        settings.output,
        dataclasses.asdict(info),
    )
    result = prepare(settings, codec, info)
    print(summarize(result))
    return result
