"""`prepare.py`: a composed config → shards, index and a printed summary."""

from __future__ import annotations

import dataclasses
import logging

from omegaconf import DictConfig, OmegaConf

from valle.codecs import build_codec, describe_codec
from valle.data.prepare import PrepareResult, PrepareSettings, prepare, summarize

log = logging.getLogger(__name__)


def settings_from_config(cfg: DictConfig) -> PrepareSettings:
    """Validate the non-codec keys against `PrepareSettings` (a typo is an error, not a new key)."""
    values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    keys = {k: v for k, v in values.items() if k not in ("codec", "hydra")}
    schema = OmegaConf.structured(PrepareSettings)
    return PrepareSettings(**OmegaConf.to_container(OmegaConf.merge(schema, keys)))


def run(cfg: DictConfig) -> PrepareResult:
    settings = settings_from_config(cfg)
    codec_kwargs = OmegaConf.to_container(cfg.codec, resolve=True)
    if settings.layout == "seed":  # already encoded: only the codec's description is needed
        codec, info = None, describe_codec(**codec_kwargs)
    else:
        codec = build_codec(**codec_kwargs).to(settings.device).eval()
        info = codec.info
    log.info("preparing %s (%s layout) → %s with %s", settings.input, settings.layout, settings.output,
             dataclasses.asdict(info))
    result = prepare(settings, codec, info)
    print(summarize(result))
    return result
