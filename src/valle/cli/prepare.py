"""`prepare.py`: a composed config → shards, index and a printed summary."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from valle.cli.options import check_device, typed
from valle.codecs import build_codec, codec_class, describe_codec
from valle.codecs.base import Codec
from valle.data.prepare import PrepareResult, PrepareSettings, fit_mel_codebooks_for, prepare, summarize
from valle.errors import ConfigError

log = logging.getLogger(__name__)

# What each layout looks for (docs/data.md), for the error when it found nothing.
LAYOUT_FILES = {
    "folder": "{group}/{speaker}/{id}.wav (or .flac, .ogg, .mp3) with {id}.txt beside it",
    "libritts": "{subset}/{speaker}/{chapter}/{id}.wav with {id}.normalized.txt (else .original.txt)",
    "ljspeech": "metadata.csv and wavs/{id}.wav",
}


def _plain(node: Any, resolve: bool, throw_on_missing: bool = False) -> dict[str, Any]:
    """A config mapping as a plain dict."""
    values = OmegaConf.to_container(node, resolve=resolve, throw_on_missing=throw_on_missing)
    assert isinstance(values, dict)  # the nodes passed here are mappings, keyed by name
    return cast("dict[str, Any]", values)


def settings_from_config(cfg: DictConfig) -> PrepareSettings:
    """Validate the non-codec keys against `PrepareSettings` (a typo is an error, not a new key)."""
    values = _plain(cfg, resolve=True, throw_on_missing=True)
    keys = {k: v for k, v in values.items() if k not in ("codec", "hydra")}
    settings = typed(PrepareSettings, keys)
    if settings.num_workers < 0:
        raise ConfigError(
            f"num_workers={settings.num_workers}: give 0 (read audio in this process) "
            "or more worker processes"
        )
    return settings


def check_codec_numbers(kwargs: dict[str, Any]) -> None:
    """Convert a quoted number for a numeric codec setting, refuse one that is none (`codec.n_levels=abc`):
    codecs have no config schema, so their constructors would fail with a TypeError deep inside."""
    parameters = inspect.signature(codec_class(kwargs["name"])).parameters
    for key, value in kwargs.items():
        default = parameters[key].default if key in parameters else None
        if isinstance(default, bool) or not isinstance(default, (int, float)) or not isinstance(value, str):
            continue
        try:
            kwargs[key] = type(default)(value)
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ConfigError(f"codec.{key}={value}: give {kind}, e.g. codec.{key}={default}") from None


def check_found_audio(settings: PrepareSettings, result: PrepareResult) -> None:
    """An index with no utterance is a wrong layout (or a corpus to fix), not a data set to train on."""
    if result.index is not None and not result.index.samples:
        expected = LAYOUT_FILES.get(settings.layout, "see docs/data.md")
        raise ConfigError(
            f"layout={settings.layout} found no usable utterance under input={settings.input} "
            f"({len(result.index.skipped)} skipped, listed above; {settings.layout} expects {expected}); "
            "is it another layout?"
        )


def run(cfg: DictConfig) -> PrepareResult:
    settings = settings_from_config(cfg)
    check_device(settings.device)  # before the codebooks are fitted or the codec is loaded
    codec_kwargs = _plain(cfg.codec, resolve=True)
    check_codec_numbers(codec_kwargs)
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
    check_found_audio(settings, result)
    return result
