"""OpenAI's own Python client against a real valle server: whole files, streamed audio, server-sent
events and custom-voice objects, as users' existing OpenAI code calls it."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import soundfile as sf
import torch
from openai import OpenAI

from tests.serving.conftest import HOP, VOICE, Server
from valle.audio import encode_audio

LENGTH = {"sampler": {"max_ar_steps": 40}, "seed": 3}  # a random model runs to max_ar_steps: 40 frames


def client(server: Server) -> OpenAI:
    # the client always sends a bearer token; a server without a key ignores it
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def samples(data: bytes) -> np.ndarray:
    return sf.read(io.BytesIO(data), dtype="float32")[0]


def test_the_openai_client_gets_a_whole_wav_and_an_mp3(server: Server):
    speech = client(server).audio.speech
    wav = speech.create(
        model="tts-1", voice=VOICE, input="Hello there.", response_format="wav", extra_body=LENGTH
    )
    assert len(samples(wav.content)) == 40 * HOP
    mp3 = speech.create(
        model="tts-1", voice=VOICE, input="Hello there.", response_format="mp3", extra_body=LENGTH
    )
    assert abs(len(samples(mp3.content)) - 40 * HOP) <= 1152


def test_a_custom_voice_object_is_the_same_voice_as_its_id(server: Server):
    speech = client(server).audio.speech
    by_id = speech.create(
        model="valle", voice=VOICE, input="Hello.", response_format="pcm", extra_body=LENGTH
    )
    by_object = speech.create(
        model="valle", voice={"id": VOICE}, input="Hello.", response_format="pcm", extra_body=LENGTH
    )
    assert by_object.content == by_id.content  # one seed, one voice: the same samples


def test_the_openai_client_streams_audio_and_server_sent_events(server: Server):
    def stream(stream_format: str) -> tuple[str, list[bytes]]:
        with client(server).audio.speech.with_streaming_response.create(
            model="valle",
            voice=VOICE,
            input="Hello there.",
            response_format="pcm",
            stream_format=stream_format,
            extra_body=LENGTH,
        ) as response:
            return response.headers["content-type"], list(
                response.iter_lines() if stream_format == "sse" else response.iter_bytes()
            )

    kind, pieces = stream("audio")
    streamed = b"".join(pieces)
    assert kind == "audio/pcm" and len(streamed) // 2 == 40 * HOP

    kind, lines = stream("sse")
    events = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    assert kind.startswith("text/event-stream")
    assert [e["type"] for e in events] == ["speech.audio.delta"] * (len(events) - 1) + ["speech.audio.done"]
    assert events[-1]["hit_step_limit"] is True  # 40 frames, cut at max_ar_steps: headers went out too early
    assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == streamed


def test_opus_at_a_rate_opus_lacks_is_resampled_up():
    tone = torch.sin(torch.arange(22050) / 10) * 0.3  # 1 s at 22050 Hz, which Opus cannot carry
    info = sf.info(io.BytesIO(encode_audio(tone, 22050, "opus")))
    assert (info.samplerate, info.subtype) == (24000, "OPUS") and abs(info.duration - 1.0) < 0.03
