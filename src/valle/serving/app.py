"""The HTTP API: OpenAI's `POST /v1/audio/speech`, voices, health, metrics and the web page.

    app = create_app(Server(synthesizer, engine, voices, limits))   # valle.cli.serve builds these

Errors are JSON in OpenAI's shape, `{"error": {"message", "type", "code"}}`, with a 4xx status that
says whose fault it was; the message names the field and the fix.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import secrets
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

import torch
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from valle.audio import encode_audio, pcm16
from valle.errors import ConfigError, one_line
from valle.sampling.ar import check_durations, check_guidance
from valle.sampling.pipeline import MAX_CANDIDATES, SamplerConfig
from valle.sampling.synthesize import Synthesizer
from valle.serving.engine import Engine, Job, QueueFull
from valle.serving.voices import VoiceError, VoiceStore
from valle.text.phonemize import TextError
from valle.text.split import split_sentences
from valle.utils.threads import off_loop

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "static" / "index.html"
MEDIA_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
}
FORMATS = tuple(MEDIA_TYPES)
STREAMABLE = ("wav", "pcm")  # a compressed file is written whole; concatenated pieces would click
SAMPLER_TYPES = get_type_hints(SamplerConfig)
JSON_BODY_BYTES = 1 << 20  # a speech request is text (up to 6 bytes a character in JSON) and a few numbers
FORM_BYTES = 1 << 16  # an upload's multipart framing and its name and transcript fields
# whole (not streamed) speech: "true" when a sentence reached its AR step limit, so the audio may be cut short
HIT_STEP_LIMIT = "X-Hit-Step-Limit"
# a request's max_ar_steps_per_phoneme at most: 5x the default (20), over a second a phoneme at 75 Hz
MAX_STEPS_PER_PHONEME = 100.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask (each refused with a 4xx that says the limit)."""

    max_text_chars: int = 2000
    max_upload_bytes: int = 10 * 1024 * 1024
    max_upload_seconds: float = 30.0
    # AR steps (frames) one sentence may take, whatever its sampler asks: each row's cache is sized by its
    # step limit, so this bounds the memory a request can make the server allocate
    max_ar_steps: int = 4500


@dataclass
class Server:
    """Everything the routes use."""

    synthesizer: Synthesizer
    engine: Engine
    voices: VoiceStore
    limits: Limits = field(default_factory=Limits)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # defaults for what a request leaves out
    language: str = "en-us"
    api_key: str | None = None  # None: no key needed
    model_name: str = "valle"
    # web pages on these origins may call the API from a browser (CORS); empty: only the server's own page
    cors_origins: tuple[str, ...] = ()


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind


def error_response(status: int, message: str, code: str, kind: str = "invalid_request_error") -> JSONResponse:
    headers = {401: {"WWW-Authenticate": "Bearer"}, 429: {"Retry-After": "1"}}.get(status)
    body = {"error": {"message": message, "type": kind, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def method_not_allowed_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """A 405's headers, its `Allow` listing HEAD beside GET (`HeadAsGet` answers HEAD on every GET route)."""
    headers = dict(headers or {})
    allowed = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
    if "GET" in allowed and "HEAD" not in allowed:
        headers["Allow"] = ", ".join([*allowed, "HEAD"])
    return headers


class VoiceRef(BaseModel):
    """OpenAI's custom-voice object, `{"id": "voice_1234"}`: the same id as the plain string."""

    model_config = ConfigDict(extra="forbid")

    id: str


class SpeechRequest(BaseModel):
    """OpenAI's request shape, and valle's sampler settings."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # Python's json reads NaN and Infinity

    model: str = "valle"  # one model per server: any name is accepted
    input: str
    voice: str | VoiceRef  # a voice id from GET /v1/voices, or OpenAI's {"id": ...}
    response_format: str = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream: bool = False
    # OpenAI's streaming field: "audio" streams the audio bytes (as stream=true), "sse" the same bytes as
    # server-sent events (`speech.audio.delta` with base64 audio, then `speech.audio.done`)
    stream_format: Literal["audio", "sse"] | None = None
    instructions: str | None = None  # OpenAI's style prompt: accepted, not used (VALL-E follows the voice)
    # valle's own: the main sampler knobs, then any other `SamplerConfig` key in `sampler`
    temperature: float | None = Field(None, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, ge=1.0)
    seed: int | None = Field(None, ge=0, lt=2**63)
    language: str | None = None
    sampler: dict[str, Any] | None = None


def sampler_config(request: SpeechRequest, defaults: SamplerConfig, max_ar_steps: int) -> SamplerConfig:
    """The request's settings over the server's defaults.

    Args:
        max_ar_steps: the server's bound on a sentence's AR steps (`Limits.max_ar_steps`).

    Raises:
        ApiError: an unknown `sampler` key, a value of the wrong type, a value over the server's bound, beam
            search (not streamable), or an inconsistent setting.
    """
    known = {f.name for f in fields(SamplerConfig)}
    extra = dict(request.sampler or {})
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ApiError(400, f"sampler: unknown key(s) {unknown}; known: {sorted(known)}", "invalid_sampler")
    wrong = [f"{k}={v!r} is not {type_name(k)}" for k, v in extra.items() if not fits(v, k)]
    if wrong:
        raise ApiError(400, f"sampler: {'; '.join(wrong)}", "invalid_sampler")
    over = over_bounds(extra, max_ar_steps)
    if over:
        raise ApiError(400, "; ".join(over), "invalid_sampler")
    given = {
        "ar_temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "repetition_penalty": request.repetition_penalty,
        "seed": request.seed,
    }
    changes = {**extra, **{k: v for k, v in given.items() if v is not None}, "speed": request.speed}
    try:
        config = replace(defaults, **changes)
    except (ConfigError, TypeError) as error:
        raise ApiError(400, f"sampler: {str(error).replace(chr(10), ' ')}", "invalid_sampler") from None
    if config.beam_width > 1 or config.best_of > 1:
        raise ApiError(
            400,
            "sampler: beam_width > 1 and best_of > 1 choose at the end: no streaming or shared batch; use 1",
            "invalid_sampler",
        )
    if config.medusa:
        raise ApiError(
            400,
            "sampler: medusa=true decodes several frames a pass, and the server's batch takes one a step "
            "(rows join and leave it); use false",
            "invalid_sampler",
        )
    return config


def over_bounds(extra: dict[str, Any], max_ar_steps: int) -> list[str]:
    """What in a request's `sampler` asks more than the server gives: the step limits and the context
    window size the AR's cache (memory), and a long medusa_tree makes its check quadratic (CPU)."""
    bounds = {
        "max_ar_steps": max_ar_steps,
        "max_ar_context": max_ar_steps,  # a window longer than a sentence keeps it all: no window
        "max_ar_steps_per_phoneme": MAX_STEPS_PER_PHONEME,
    }
    over = [
        f"sampler.{key}: at most {bound:g} on this server"
        for key, bound in bounds.items()
        if isinstance(extra.get(key), int | float) and extra[key] > bound
    ]
    tree = extra.get("medusa_tree")
    if isinstance(tree, list) and len(tree) > MAX_CANDIDATES:  # each head adds at least one candidate
        over.append(f"sampler.medusa_tree: at most {MAX_CANDIDATES} widths on this server")
    return over


def kinds_of(key: str) -> tuple[type, ...]:
    return get_args(SAMPLER_TYPES[key]) or (SAMPLER_TYPES[key],)


def type_name(key: str) -> str:
    names = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        type(None): "null",
        list[int]: "a list of integers",
    }
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds_of(key))


def fits(value: Any, key: str) -> bool:
    """Whether `value` (from JSON) has the type of `SamplerConfig.<key>`: a wrong one would fail inside
    the engine's step, and with it every request sharing the batch. An int does for a float; NaN and
    infinity (which Python's JSON reads) do for none."""
    kinds = kinds_of(key)
    if isinstance(value, bool):  # before int: a JSON true is a bool, never a number
        return bool in kinds
    if value is None:
        return type(None) in kinds
    if isinstance(value, list):  # medusa_tree's widths
        return list[int] in kinds and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if isinstance(value, int):
        return (int in kinds and -(2**63) <= value < 2**63) or float in kinds
    return isinstance(value, float) and float in kinds and math.isfinite(value)


def streaming_wav_header(sample_rate: int) -> bytes:
    """A RIFF header whose sizes say "unknown" (0xFFFFFFFF), as streamed wav is written by ffmpeg and
    OpenAI; players read the data to its end."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", unknown)
    )


class BodyLimit:
    """Refuse a request body over its limit with 413 before the app reads it all (by Content-Length,
    and by counting when the body comes chunked)."""

    def __init__(self, app: ASGIApp, limit_for: Any, on_refuse: Any = None) -> None:
        self.app, self.limit_for, self.on_refuse = app, limit_for, on_refuse

    async def refuse(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_refuse is not None:
            self.on_refuse()
        await too_large(limit)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self.refuse(limit, scope, receive, send)
            return
        received, refused = 0, False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    refused = True
                    await self.refuse(limit, scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


def too_large(limit: int) -> JSONResponse:
    return error_response(
        413, f"request body over {limit} bytes; send a smaller file or text", "body_too_large"
    )


class RequestIds:
    """Give each request an id (`request.state.request_id`, which a speech request's job takes) and each
    answer, refusals and errors included, its `X-Request-Id` header: what a client quotes to find the
    server's log lines of its request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class HeadAsGet:
    """Answer HEAD as GET without the body (`curl -I /health`), as HTTP asks of every GET route: FastAPI
    routes only the methods they name. A route without GET answers HEAD with 405, as it does GET."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":  # Content-Length stays: the size GET would send
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def is_json(content_type: str) -> bool:
    """`application/json` or a `+json` type, parameters aside."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def not_sent_as_json(request: Request, error: RequestValidationError) -> bool:
    """Whether a JSON body was refused for its Content-Type: FastAPI reads the body as JSON only under a
    JSON type (or none: `strict_content_type=False`), and otherwise complains that the raw bytes are not
    an object, hiding the cause."""
    content_type = request.headers.get("content-type")
    whole_body = any(tuple(e.get("loc", ())) == ("body",) for e in error.errors())
    return whole_body and content_type is not None and not is_json(content_type)


def create_app(server: Server) -> FastAPI:
    """The FastAPI app over a started engine."""
    app = FastAPI(
        title="valle",
        summary="VALL-E text-to-speech, OpenAI-compatible",
        docs_url="/docs",
        # a body with no Content-Type is read as JSON (`requests.post(url, data=json.dumps(...))`, curl
        # with `-H 'content-type:'`), as OpenAI-compatible servers do; another type gets 415 (`on_invalid`)
        strict_content_type=False,
    )
    limits, rate = server.limits, server.synthesizer.codec.sample_rate
    body_limits = {"/v1/voices": limits.max_upload_bytes + FORM_BYTES}
    json_limit = max(JSON_BODY_BYTES, 6 * limits.max_text_chars)
    app.add_middleware(
        BodyLimit,
        limit_for=lambda path: body_limits.get(path, json_limit),
        on_refuse=lambda: server.engine.metrics.reject("body_too_large"),
    )
    app.add_middleware(HeadAsGet)
    # outside the rest, so refusals (413 and the others) carry the CORS headers too. Always there, so that
    # a preflight from an origin not listed (any, with no cors_origins) gets one answer: 400
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(server.cors_origins),
        allow_methods=["GET", "HEAD", "POST", "DELETE"],
        # any header: SDKs send their own (openai's JS client: x-stainless-*); the origins are the guard
        allow_headers=["*"],
        expose_headers=["X-Sample-Rate", "X-Request-Id", HIT_STEP_LIMIT],
    )
    app.add_middleware(RequestIds)  # outermost: every answer carries its id, CORS preflights included

    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, error: ApiError) -> JSONResponse:
        server.engine.metrics.reject(error.code)
        return error_response(error.status, error.message, error.code, error.kind)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if not_sent_as_json(request, error):
            server.engine.metrics.reject("unsupported_media_type")
            return error_response(
                415,
                "body: send the request as JSON with the header Content-Type: application/json "
                f"(this one came as {request.headers['content-type']})",
                "unsupported_media_type",
            )
        problems = []
        for e in error.errors():
            if e.get("type") == "json_invalid":  # its location is a character offset, not a field
                problems.append(f"body: not valid JSON ({e.get('ctx', {}).get('error', e.get('msg'))})")
                continue
            where = ".".join(str(part) for part in e.get("loc", ())[1:]) or "body"
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        server.engine.metrics.reject("invalid_request")
        return error_response(400, "; ".join(problems), "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        response = error_response(error.status_code, str(error.detail), "http_error")
        headers = method_not_allowed_headers(error.headers) if error.status_code == 405 else error.headers
        response.headers.update(headers or {})  # a 405's Allow
        return response

    def authorize(request: Request) -> None:
        if server.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, key = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip(), server.api_key):
            raise ApiError(
                401, "missing or wrong API key: send Authorization: Bearer <key>", "invalid_api_key"
            )

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": server.model_name,
            "sample_rate": rate,
            "running_rows": server.engine.running_rows,
            "queue_depth": len(server.engine.waiting),
        }

    @app.get("/metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        authorize(request)
        text = server.engine.metrics.render(server.engine.running_rows)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/v1/limits")
    async def get_limits(request: Request) -> dict:
        authorize(request)
        return {**asdict(limits), "sample_rate": rate}

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        authorize(request)
        config = server.synthesizer.model.config
        # what a request may ask of this model beyond OpenAI's fields (each other value is a 400)
        supports = {"speed": config.monotonic_alignment, "cfg_scale": config.text_dropout > 0}
        entry = {"id": server.model_name, "object": "model", "owned_by": "valle", "supports": supports}
        return {"object": "list", "data": [entry]}

    @app.get("/v1/voices")
    async def list_voices(request: Request) -> dict:
        authorize(request)
        voices = await off_loop(server.voices.list)
        return {"voices": [asdict(v) for v in voices]}

    @app.post("/v1/voices", status_code=201)
    async def add_voice(
        request: Request,
        file: UploadFile = File(...),
        name: str | None = Form(None),
        transcript: str | None = Form(None),
    ) -> dict:
        authorize(request)
        data = await file.read()
        if len(data) > limits.max_upload_bytes:
            raise ApiError(
                413, f"file: {len(data)} bytes; at most {limits.max_upload_bytes}", "upload_too_large"
            )
        if not data:
            raise ApiError(400, "file: the upload is empty; send a recording of the voice", "invalid_audio")
        try:
            voice = await off_loop(server.voices.add, data, file.filename or "upload", name, transcript)
        except VoiceError as error:
            raise ApiError(error.status, str(error), error.code) from None
        return asdict(voice)

    @app.delete("/v1/voices/{voice_id}")
    async def delete_voice(request: Request, voice_id: str) -> dict:
        authorize(request)
        try:
            await off_loop(server.voices.delete, voice_id)
        except VoiceError as error:
            raise ApiError(error.status, str(error), error.code) from None
        return {"id": voice_id, "deleted": True}

    @app.post("/v1/audio/speech")
    async def speech(request: Request, body: SpeechRequest) -> Response:
        authorize(request)
        chunks: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        job = await off_loop(make_job, server, body, loop, chunks, request.state.request_id)
        try:
            server.engine.submit(job)
        except QueueFull as error:
            raise ApiError(429, str(error), "queue_full", "rate_limit_exceeded") from None
        headers = {"X-Sample-Rate": str(rate)}  # X-Request-Id: RequestIds adds it, the job's id
        first = await next_chunk(request, job, chunks)
        if first is None:  # the client left before any audio
            return Response(status_code=204)
        if isinstance(first, BaseException):
            raise failure(job, voice_id(body), first)
        if body.stream_format == "sse":
            pieces = stream_body(request, job, chunks, first, body.response_format, rate)
            return StreamingResponse(sse_events(pieces, job), media_type="text/event-stream", headers=headers)
        if streams(body):
            return StreamingResponse(
                stream_body(request, job, chunks, first, body.response_format, rate),
                media_type=MEDIA_TYPES[body.response_format],
                headers=headers,
            )
        audio: list[torch.Tensor] = [first]
        while True:
            item = await next_chunk(request, job, chunks)
            if item is None:
                break
            if isinstance(item, BaseException):
                raise failure(job, voice_id(body), item)
            audio.append(item)
        data = await off_loop(lambda: encode_audio(torch.cat(audio), rate, body.response_format))
        headers[HIT_STEP_LIMIT] = "true" if job.hit_limit else "false"  # final once the job is done
        return Response(data, media_type=MEDIA_TYPES[body.response_format], headers=headers)

    return app


def voice_id(body: SpeechRequest) -> str:
    return body.voice if isinstance(body.voice, str) else body.voice.id


def failure(job: Job, voice: str, error: BaseException) -> ApiError:
    """The answer to a request the engine could not serve: 400 when its own text or voice could not be
    prepared (a ConfigError, e.g. a TextError: the engine logged it), 500 for anything else."""
    if isinstance(error, ConfigError):
        return ApiError(400, f"input with voice {voice!r}: {one_line(error)}", "invalid_input")
    log.error("request %s failed: %s", job.id, error)
    return ApiError(500, f"synthesis failed: {error}", "synthesis_failed", "server_error")


def make_job(
    server: Server,
    body: SpeechRequest,
    loop: asyncio.AbstractEventLoop,
    chunks: asyncio.Queue,
    request_id: str,
) -> Job:
    """Check a request and turn it into an engine job (of id `request_id`) whose chunks arrive on
    `chunks`, in `loop`: each an audio tensor, then None at the end or the exception that ended it.

    Raises:
        ApiError: empty or too long text, text espeak-ng cannot read, a language the model does not know,
            a bad voice, format or setting.
    """
    text, limits = body.input.strip(), server.limits
    if body.response_format not in FORMATS:
        raise ApiError(
            400,
            f"response_format={body.response_format!r}: valle writes {', '.join(FORMATS)}",
            "invalid_format",
        )
    if streams(body) and body.response_format not in STREAMABLE:
        raise ApiError(
            400,
            f"response_format={body.response_format} cannot stream; ask for {' or '.join(STREAMABLE)}, "
            "or leave out stream and stream_format",
            "invalid_format",
        )
    if not text:
        raise ApiError(400, "input: the text is empty; give the words to say", "empty_input")
    if len(text) > limits.max_text_chars:
        raise ApiError(
            400,
            f"input: {len(text)} characters; at most {limits.max_text_chars} per request",
            "input_too_long",
        )
    config = sampler_config(body, server.sampler, limits.max_ar_steps)
    if config.speed != 1.0 and not server.synthesizer.model.config.monotonic_alignment:
        raise ApiError(
            400, f"speed={config.speed}: this model cannot change its speed; use 1.0", "invalid_speed"
        )
    try:
        check_guidance(server.synthesizer.model, config.cfg_scale)
        check_durations(server.synthesizer.model, config)
    except ConfigError as error:
        raise ApiError(400, f"sampler: {error}", "invalid_sampler") from None
    try:
        prompt = server.voices.prompt(voice_id(body))
    except VoiceError as error:
        raise ApiError(error.status, str(error), error.code) from None
    language = body.language or server.language
    sentences = split_sentences(text)
    try:
        for sentence in sentences:
            server.synthesizer.text_ids(sentence, language)
    except TextError as error:
        raise ApiError(400, f"input: {error}", "invalid_input") from None
    except ConfigError as error:  # a language espeak-ng reads but the model was not trained on
        raise ApiError(400, f"language: {error}", "unsupported_language") from None
    return Job(
        sentences,
        prompt,
        language,
        config,
        stream=streams(body),
        on_chunk=lambda chunk: loop.call_soon_threadsafe(chunks.put_nowait, chunk),
        on_done=lambda error: loop.call_soon_threadsafe(chunks.put_nowait, error),
        id=request_id,
    )


async def next_chunk(
    request: Request, job: Job, chunks: asyncio.Queue
) -> torch.Tensor | BaseException | None:
    """The job's next chunk (None at the end); cancels the job when the client has gone."""
    while True:
        try:
            return await asyncio.wait_for(chunks.get(), timeout=0.5)
        except TimeoutError:
            if await request.is_disconnected():
                job.cancel()
                return None


def streams(body: SpeechRequest) -> bool:
    """valle's `stream: true` or OpenAI's `stream_format` ("audio" or "sse")."""
    return body.stream or body.stream_format is not None


async def sse_events(audio: AsyncGenerator[bytes, None], job: Job) -> AsyncIterator[bytes]:
    """OpenAI's server-sent events for speech: each piece of the audio stream as base64 in a
    `speech.audio.delta` event, then one `speech.audio.done`, which adds valle's `hit_step_limit` (whether
    a sentence reached its AR step limit: the streamed answer's headers went out before that was known).
    Closing this closes `audio` (and so cancels the job) when the client leaves."""
    try:
        async for piece in audio:
            delta = {"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode("ascii")}
            yield f"data: {json.dumps(delta)}\n\n".encode()
        done = {"type": "speech.audio.done", "hit_step_limit": job.hit_limit}
        yield f"data: {json.dumps(done)}\n\n".encode()
    finally:
        await audio.aclose()


async def stream_body(
    request: Request, job: Job, chunks: asyncio.Queue, first: torch.Tensor, response_format: str, rate: int
) -> AsyncGenerator[bytes, None]:
    """The streamed response: a wav header (for wav), then 16-bit PCM chunk by chunk. A client that
    disconnects closes this generator, which cancels the job and frees its row."""
    try:
        if response_format == "wav":
            yield streaming_wav_header(rate)
        yield pcm16(first)
        while True:
            item = await next_chunk(request, job, chunks)
            if item is None:
                return
            if isinstance(item, BaseException):
                log.error("request %s failed mid-stream: %s", job.id, item)
                return
            yield pcm16(item)
    finally:
        job.cancel()  # a no-op once the job is done; frees the row when the client left early
