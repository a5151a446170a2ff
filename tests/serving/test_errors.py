"""Every limit and bad input gets its 4xx, with a JSON error in OpenAI's shape that says what to fix.

The shared server runs with max_text_chars=200, max_upload_bytes=600000 and max_upload_seconds=12.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import requests
import soundfile as sf

from tests.conftest import real_speech_dir
from tests.serving.conftest import VOICE, Server
from valle.cli.serve import main
from valle.errors import exit_on_user_error


def assert_error(response: requests.Response, status: int, code: str, *words: str) -> str:
    """The response is `status` with an OpenAI-shaped error of `code` whose message names `words`."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["type"], error
    message = error["message"]
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"input": ""}, "empty_input", ["input", "empty"]),
        ({"input": " \n\t "}, "empty_input", ["input", "empty"]),
        ({"input": "fox " * 60}, "input_too_long", ["at most 200"]),
        ({"voice": "nobody"}, "voice_not_found", ["nobody", "/v1/voices"]),
        ({"voice": "../x"}, "invalid_voice", ["not a voice id"]),
        ({"response_format": "aac"}, "invalid_format", ["aac", "wav", "mp3", "opus"]),
        ({"response_format": "flac", "stream": True}, "invalid_format", ["flac cannot stream"]),
        ({"response_format": "mp3", "stream_format": "audio"}, "invalid_format", ["mp3 cannot stream"]),
        ({"stream_format": "video"}, "invalid_request", ["stream_format"]),
        ({"voice": {"name": VOICE}}, "invalid_request", ["voice"]),
        ({"speed": 1.5}, "invalid_speed", ["speed"]),
        ({"speed": 9}, "invalid_request", ["speed"]),
        ({"temperature": -1}, "invalid_request", ["temperature"]),
        ({"top_p": 0}, "invalid_request", ["top_p"]),
        ({"seed": -1}, "invalid_request", ["seed"]),
        ({"language": "xx-nowhere"}, "invalid_input", ["xx-nowhere"]),
        ({"language": "fr-fr"}, "unsupported_language", ["fr-fr", "en-us"]),
        ({"sampler": {"max_ar_stepz": 4}}, "invalid_sampler", ["max_ar_stepz"]),
        ({"sampler": {"max_ar_steps": 0}}, "invalid_sampler", ["max_ar_steps"]),
        ({"sampler": {"max_ar_steps": "many"}}, "invalid_sampler", ["max_ar_steps='many'", "an integer"]),
        ({"sampler": {"top_k": 2.5}}, "invalid_sampler", ["top_k=2.5", "an integer"]),
        ({"sampler": {"seed": "x", "top_p": True}}, "invalid_sampler", ["seed='x'", "top_p=True"]),
        ({"sampler": {"beam_width": 2}}, "invalid_sampler", ["beam_width"]),
        ({"sampler": {"best_of": 4}}, "invalid_sampler", ["best_of"]),
        ({"sampler": {"duration_temperature": 0.5}}, "invalid_sampler", ["duration_temperature=0.5"]),
        ({"sampler": {"duration_temperature": 5}}, "invalid_sampler", ["duration_temperature=5"]),
        ({"sampler": {"medusa": True}}, "invalid_sampler", ["medusa=true"]),
        (
            {"sampler": {"medusa_tree": [3, "x"]}},
            "invalid_sampler",
            ["medusa_tree=[3, 'x']", "a list of integers"],
        ),
        ({"sampler": {"medusa_tree": [3, 0]}}, "invalid_sampler", ["medusa_tree=[3, 0]", "widths >= 1"]),
        # classifier-free guidance on a model trained without text dropout (the served one)
        ({"sampler": {"cfg_scale": 2.0}}, "invalid_sampler", ["cfg_scale=2.0", "model.text_dropout"]),
        ({"voices": "x"}, "invalid_request", ["voices"]),
        # what would make the server allocate without bound: 4500 frames is a minute at 75 Hz (serve.yaml)
        (
            {"sampler": {"max_ar_steps": 1_000_000_000}},
            "invalid_sampler",
            ["sampler.max_ar_steps: at most 4500 on this server"],
        ),
        (
            {"sampler": {"max_ar_steps_per_phoneme": 1e9}},
            "invalid_sampler",
            ["sampler.max_ar_steps_per_phoneme: at most 100 on this server"],
        ),
        (
            {"sampler": {"max_ar_context": 10**12}},
            "invalid_sampler",
            ["sampler.max_ar_context: at most 4500"],
        ),
        ({"sampler": {"medusa_tree": [1] * 100_000}}, "invalid_sampler", ["sampler.medusa_tree: at most 64"]),
    ],
)
def test_a_bad_speech_request_is_refused_with_its_reason(server: Server, fields, code, words):
    assert_error(server.speak(**fields), 400, code, *words)


def test_a_request_without_text_or_voice_names_the_missing_fields(server: Server):
    response = requests.post(server.url + "/v1/audio/speech", json={"model": "valle"}, timeout=30)
    assert_error(response, 400, "invalid_request", "input", "voice")


def test_a_body_that_is_not_json_is_refused(server: Server):
    response = requests.post(
        server.url + "/v1/audio/speech",
        data=b"input=hello",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert_error(response, 400, "invalid_request", "body: not valid JSON")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"input": "hi", "voice": "x", "temperature": Infinity}', ["temperature"]),
        (b'{"input": "hi", "voice": "x", "sampler": {"ar_temperature": NaN}}', ["ar_temperature=nan"]),
    ],
)
def test_a_number_that_is_not_finite_is_refused(server: Server, body: bytes, words: list[str]):
    # Python's JSON reads NaN and Infinity; in a sampler they would make the logits NaN mid-step
    response = requests.post(
        server.url + "/v1/audio/speech", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 400 and all(w in response.json()["error"]["message"] for w in words)


def test_a_json_body_sent_without_a_content_type_is_read_as_json(server: Server):
    # requests.post(url, data=json.dumps(...)) and curl -H 'content-type:' send no Content-Type
    body = json.dumps({"input": "The quick brown fox.", "voice": VOICE, "sampler": {"max_ar_steps": 10}})
    response = requests.post(server.url + "/v1/audio/speech", data=body, timeout=60)
    assert "content-type" not in response.request.headers
    assert response.status_code == 200 and response.content[:4] == b"RIFF", response.text
    response = requests.post(server.url + "/v1/audio/speech", data="input=hello", timeout=30)
    assert_error(response, 400, "invalid_request", "body: not valid JSON")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_a_json_body_sent_under_another_content_type_is_refused_with_415(server: Server, content_type):
    # curl -d sends application/x-www-form-urlencoded unless told otherwise
    response = requests.post(
        server.url + "/v1/audio/speech",
        data=b'{"input": "hi", "voice": "x"}',
        headers={"Content-Type": content_type},
        timeout=30,
    )
    assert_error(
        response, 415, "unsupported_media_type", "JSON", "Content-Type: application/json", content_type
    )


def test_an_oversized_body_is_refused_before_it_is_read(server: Server):
    counted = server.metric('valle_rejected_total{code="body_too_large"}')
    body = b'{"input": "' + b"a" * (2 << 20) + b'", "voice": "x"}'
    response = requests.post(
        server.url + "/v1/audio/speech", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert_error(response, 413, "body_too_large", "bytes")
    assert server.metric('valle_rejected_total{code="body_too_large"}') == counted + 1


def test_an_oversized_chunked_body_is_refused(server: Server):
    def parts():  # no Content-Length: the server counts as the body comes
        yield b'{"input": "'
        for _ in range(40):
            yield b"a" * (64 << 10)
        yield b'", "voice": "x"}'

    response = requests.post(
        server.url + "/v1/audio/speech",
        data=parts(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert_error(response, 413, "body_too_large", "bytes")
    assert server.get("/health").ok  # and the server still serves


def upload(server: Server, data: bytes, filename: str = "voice.wav", **form) -> requests.Response:
    return requests.post(server.url + "/v1/voices", files={"file": (filename, data)}, data=form, timeout=60)


def tone(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 220 * t), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_a_garbage_upload_is_refused_as_unreadable_audio(server: Server):
    garbage = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    message = assert_error(upload(server, garbage, "garbage.wav"), 400, "invalid_audio", "garbage.wav")
    assert "/tmp" not in message  # the server's temporary path stays private


def test_an_empty_upload_is_refused(server: Server):
    assert_error(upload(server, b""), 400, "invalid_audio", "empty")


def test_an_upload_without_a_file_is_refused(server: Server):
    response = requests.post(server.url + "/v1/voices", data={"name": "x"}, timeout=30)
    assert_error(response, 400, "invalid_request", "file")


@pytest.mark.parametrize(
    ("size", "code"),
    [(600_001, "upload_too_large"), (3_000_000, "body_too_large")],  # the second is refused unread
)
def test_an_upload_over_the_byte_limit_is_refused(server: Server, size: int, code: str):
    data = (real_speech_dir() / "LJ049-0110.wav").read_bytes()
    data += b"\0" * (size - len(data))  # a valid wav with trailing bytes past max_upload_bytes
    assert_error(upload(server, data), 413, code, "bytes")


def test_an_upload_over_the_time_limit_is_refused(server: Server):
    assert_error(upload(server, tone(13.0)), 400, "upload_too_long", "13.0 s", "at most 12 s")


@pytest.mark.parametrize("transcript", ["🍕🍕", " ?! "])
def test_an_upload_whose_transcript_has_no_words_is_refused(server: Server, transcript: str):
    # synthesis would phonemize it before every sentence and fail there
    recording = (real_speech_dir() / "LJ049-0110.wav").read_bytes()
    response = upload(server, recording, transcript=transcript)
    assert_error(response, 400, "invalid_transcript", "transcript:", "nothing to phonemize")


def test_a_silent_upload_is_refused(server: Server):
    silence = io.BytesIO()
    sf.write(silence, np.zeros(16000), 8000, format="WAV")
    assert_error(upload(server, silence.getvalue(), "quiet.wav"), 400, "invalid_audio", "silent")


def test_no_refused_upload_leaves_a_voice_behind(server: Server):
    voices = server.get("/v1/voices").json()["voices"]
    assert all(voice["builtin"] for voice in voices), voices


@pytest.mark.parametrize("path", ["/health", "/", "/v1/voices"])
def test_head_answers_as_get_without_a_body(server: Server, path: str):
    head, get = requests.head(server.url + path, timeout=30), server.get(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/audio/speech", "POST"),
        ("HEAD", "/v1/audio/speech", "POST"),
        ("PUT", "/health", "GET, HEAD"),
    ],
)
def test_a_method_a_route_does_not_take_gets_405_with_allow(server: Server, method, path, allow):
    response = requests.request(method, server.url + path, timeout=30)
    assert response.status_code == 405 and response.headers["allow"] == allow
    if method != "HEAD":
        assert_error(response, 405, "http_error")


def test_unknown_paths_and_voices_answer_404_in_the_same_shape(server: Server):
    assert_error(server.get("/v1/nothing"), 404, "http_error")
    response = requests.delete(server.url + "/v1/voices/voice-000000000000", timeout=30)
    assert_error(response, 404, "voice_not_found", "voice-000000000000")


def test_the_limits_are_published(server: Server):
    health = [server.get("/health"), server.get("/health")]
    assert health[0].json()["sample_rate"] == 24000
    ids = {answer.headers["x-request-id"] for answer in health}  # every answer carries its own id
    assert len(ids) == 2 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids), ids
    limits = server.get("/v1/limits").json()
    assert limits == {
        "max_text_chars": 200,
        "max_upload_bytes": 600000,
        "max_upload_seconds": 12.0,
        "max_ar_steps": 4500,
        "sample_rate": 24000,
    }
    [model] = server.get("/v1/models").json()["data"]
    assert model["id"] == "model"
    # the served random model has neither durations to scale nor text dropout to guide by
    assert model["supports"] == {"speed": False, "cfg_scale": False}


def test_refusals_are_counted(server: Server):
    before = server.metric('valle_rejected_total{code="empty_input"}')
    server.speak(input="")
    assert server.metric('valle_rejected_total{code="empty_input"}') == before + 1
    assert VOICE in {v["id"] for v in server.get("/v1/voices").json()["voices"]}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("port=99999", "port=99999: choose a TCP port in 1-65535 (e.g. port=8000)"),
        ("port=http", "port: Value 'http' of type 'str' could not be converted to Integer"),
        ("max_rows=0", "max_rows=0: at least 1 (1 decodes one request at a time)"),
        ("max_sentence_seconds=0", "max_sentence_seconds=0.0: more than 0 (60 lets a sentence be a minute)"),
    ],
)
def test_a_bad_serve_option_stops_the_start_with_one_line(option: str, message: str, capsys):
    with pytest.raises(SystemExit) as exit_info:  # checked before the model loads: this one never is
        exit_on_user_error(main)(["ckpt=never-loaded.pt", option])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == f"error: {message}"
