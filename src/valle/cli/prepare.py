"""`prepare.py`: a composed config → shards, index and a printed summary."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from valle.cli.options import typed
from valle.codecs import build_codec, describe_codec
from valle.codecs.base import Codec
from valle.data.prepare import PrepareResult, PrepareSettings, fit_mel_codebooks_for, prepare, summarize

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
    return typed(PrepareSettings, keys)


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
