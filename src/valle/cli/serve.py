"""`python -m valle.serve ckpt=model.pt`: the model behind an HTTP API and a web page (docs/serving.md)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from valle.cli.options import typed
from valle.errors import ConfigError
from valle.sampling.pipeline import SamplerConfig

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]
SERVE_VERBATIM_KEYS = ("ckpt", "voices_dir", "builtin_voices")


def compose_config(argv: list[str]) -> DictConfig:
    """configs/serve.yaml with `key=value` overrides (paths taken verbatim)."""
    from hydra import compose, initialize_config_dir

    from valle.cli.argv import verbatim_overrides

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("serve", overrides=verbatim_overrides(argv, SERVE_VERBATIM_KEYS))


def build_server(cfg: DictConfig):  # noqa: ANN201 - valle.serving.app.Server, imported lazily
    """The loaded model, its engine (started) and voices, ready for `create_app`."""
    from valle.export import load
    from valle.sampling.stream import StreamSettings
    from valle.sampling.synthesize import Synthesizer
    from valle.serving.app import Limits, Server
    from valle.serving.engine import Engine
    from valle.serving.voices import VoiceStore

    sampler = typed(SamplerConfig, cfg.sampler)
    loaded = load(cfg.ckpt, cfg.device)
    synthesizer = Synthesizer(loaded, device=cfg.device, quantize=cfg.quantize)
    codec = synthesizer.codec
    builtin = Path(cfg.builtin_voices) if cfg.builtin_voices else None
    if builtin is not None and not builtin.is_dir():
        raise ConfigError(f"builtin_voices={builtin}: no such folder of recordings")
    voices = VoiceStore(Path(cfg.voices_dir), codec, builtin, cfg.prompt_seconds, cfg.max_upload_seconds)
    settings = StreamSettings.for_codec(codec.frame_rate, cfg.chunk_seconds, cfg.chunk_seconds / 2)
    engine = Engine(synthesizer, cfg.max_rows if cfg.batching else 1, cfg.max_queue, settings).start()
    limits = Limits(cfg.max_text_chars, cfg.max_upload_bytes, cfg.max_upload_seconds)
    api_key = (os.environ.get(cfg.api_key_env) or None) if cfg.api_key_env else None
    name = Path(cfg.ckpt).stem
    origins = tuple(cfg.get("cors_origins") or ())
    return Server(synthesizer, engine, voices, limits, sampler, cfg.language, api_key, name, origins)


def main(argv: list[str]) -> None:
    import uvicorn

    from valle.serving.app import create_app

    cfg = compose_config(argv)
    logging.basicConfig(level=str(cfg.log_level).upper(), format="%(levelname)s %(name)s: %(message)s")
    server = build_server(cfg)
    if server.api_key is None and cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("host=%s serves other machines with no API key: set %s", cfg.host, cfg.api_key_env)
    print(f"valle: serving {cfg.ckpt} on http://{cfg.host}:{cfg.port}/ (API: /v1/audio/speech, docs: /docs)")
    try:
        uvicorn.run(create_app(server), host=cfg.host, port=int(cfg.port), log_level=str(cfg.log_level))
    finally:
        server.engine.stop()
