"""`python -m valle.serve ckpt=model.pt`: the model behind an HTTP API and a web page (docs/serving.md)."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from valle.cli.options import REQUIRED, check_device, typed
from valle.errors import ConfigError
from valle.sampling.pipeline import SamplerConfig
from valle.utils.threads import run_in_own_thread

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]
SERVE_VERBATIM_KEYS = ("ckpt", "voices_dir", "builtin_voices")


@dataclass
class ServeSettings:
    """configs/serve.yaml's keys but `sampler` (a `SamplerConfig`), typed and checked before the model loads.

    No defaults here: serve.yaml holds them, so the two cannot drift apart.

    Raises:
        ConfigError: a value out of its range; the message names the key and the range.
    """

    ckpt: str = REQUIRED
    host: str = REQUIRED
    port: int = REQUIRED
    device: str = REQUIRED
    quantize: str | None = REQUIRED
    language: str = REQUIRED
    voices_dir: str = REQUIRED
    builtin_voices: str | None = REQUIRED
    prompt_seconds: float = REQUIRED
    api_key_env: str | None = REQUIRED
    cors_origins: Any = REQUIRED  # a list of origins; `cors_origins=*` (one string) means ["*"]
    batching: bool = REQUIRED
    max_rows: int = REQUIRED
    max_queue: int = REQUIRED
    max_text_chars: int = REQUIRED
    max_upload_bytes: int = REQUIRED
    max_upload_seconds: float = REQUIRED
    max_sentence_seconds: float = REQUIRED
    chunk_seconds: float = REQUIRED
    log_level: str = REQUIRED

    def __post_init__(self) -> None:
        if isinstance(self.cors_origins, str):
            self.cors_origins = [self.cors_origins]
        problems = []
        if not 1 <= self.port <= 65535:
            problems.append(f"port={self.port}: choose a TCP port in 1-65535 (e.g. port=8000)")
        if self.max_rows < 1:
            problems.append(f"max_rows={self.max_rows}: at least 1 (1 decodes one request at a time)")
        if self.max_queue < 0:
            problems.append(f"max_queue={self.max_queue}: at least 0 (0 refuses requests while all rows run)")
        if not self.max_sentence_seconds > 0:
            problems.append(
                f"max_sentence_seconds={self.max_sentence_seconds}: more than 0 "
                "(60 lets a sentence be a minute)"
            )
        if problems:
            raise ConfigError("; ".join(problems))
        check_device(self.device)


def compose_config(argv: list[str]) -> DictConfig:
    """configs/serve.yaml with `key=value` overrides (paths taken verbatim)."""
    from hydra import compose, initialize_config_dir

    from valle.cli.argv import verbatim_overrides

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("serve", overrides=verbatim_overrides(argv, SERVE_VERBATIM_KEYS))


def serve_settings(cfg: DictConfig) -> ServeSettings:
    """The composed config's own keys (all but `sampler`) checked against `ServeSettings`.

    Raises:
        ConfigError: a value of the wrong type or out of its range, naming the key.
        MissingMandatoryValue: `ckpt` not given (reported as a user error by `exit_on_user_error`).
    """
    node = cfg.copy()
    with open_dict(node):
        del node["sampler"]
    try:
        return typed(ServeSettings, node)
    except MissingMandatoryValue:
        raise
    except OmegaConfBaseException as error:  # a value of the wrong type, e.g. port=abc
        key = getattr(error, "key", None) or "serve config"
        raise ConfigError(f"{key}: {str(getattr(error, 'msg', error)).splitlines()[0]}") from None


def build_server(settings: ServeSettings, sampler: SamplerConfig):  # noqa: ANN201 - valle.serving.app.Server
    """The loaded model, its engine (started) and voices, ready for `create_app`."""
    from valle.export import load
    from valle.sampling.stream import StreamSettings
    from valle.sampling.synthesize import Synthesizer
    from valle.serving.app import Limits, Server
    from valle.serving.engine import Engine
    from valle.serving.voices import VoiceStore

    s = settings
    loaded = load(s.ckpt, s.device)
    synthesizer = Synthesizer(loaded, device=s.device, quantize=s.quantize)
    codec = synthesizer.codec
    builtin = Path(s.builtin_voices) if s.builtin_voices else None
    if builtin is not None and not builtin.is_dir():
        raise ConfigError(f"builtin_voices={builtin}: no such folder of recordings")
    voices = VoiceStore(
        Path(s.voices_dir),
        codec,
        builtin,
        s.prompt_seconds,
        s.max_upload_seconds,
        # a transcript is phonemized as synthesis will: one the model cannot read is refused up front
        check_transcript=lambda text: synthesizer.text_ids(text, s.language),
    )
    stream_settings = StreamSettings.for_codec(codec.frame_rate, s.chunk_seconds, s.chunk_seconds / 2)
    max_ar_steps = math.ceil(s.max_sentence_seconds * codec.frame_rate)  # a sentence's frames at most
    limits = Limits(s.max_text_chars, s.max_upload_bytes, s.max_upload_seconds, max_ar_steps)
    rows = s.max_rows if s.batching else 1
    engine = Engine(synthesizer, rows, s.max_queue, stream_settings, max_steps=max_ar_steps).start()
    api_key = (os.environ.get(s.api_key_env) or None) if s.api_key_env else None
    origins = tuple(s.cors_origins or ())
    return Server(
        synthesizer, engine, voices, limits, sampler, s.language, api_key, Path(s.ckpt).stem, origins
    )


def main(argv: list[str]) -> None:
    import uvicorn

    from valle.serving.app import create_app

    cfg = compose_config(argv)
    settings, sampler = serve_settings(cfg), typed(SamplerConfig, cfg.sampler)
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # the main thread serves HTTP and must hold no OpenMP pool: valle.utils.threads says why
    server = run_in_own_thread(build_server, settings, sampler)
    if server.api_key is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "host=%s serves other machines with no API key: set %s", settings.host, settings.api_key_env
        )
    print(
        f"valle: serving {settings.ckpt} on http://{settings.host}:{settings.port}/ "
        "(API: /v1/audio/speech, docs: /docs)"
    )
    try:
        uvicorn.run(create_app(server), host=settings.host, port=settings.port, log_level=settings.log_level)
    finally:
        server.engine.stop()
