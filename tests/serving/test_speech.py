"""POST /v1/audio/speech against a real server: formats, streaming, batching and clients that leave."""

from __future__ import annotations

import io
import struct
import threading
import time
from collections.abc import Iterator

import numpy as np
import requests
import soundfile as sf
import torch

from tests.serving.conftest import HOP, VOICE, Server
from valle.sampling.prompt import Prompt, save_voice

SENTENCE = "The quick brown fox jumps over the lazy dog, twice!"
THREE_SENTENCES = " ".join([SENTENCE] * 3)  # decoded one after the other, each to max_ar_steps


def wav_samples(data: bytes) -> np.ndarray:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 24000
    return audio


def test_a_request_returns_a_wav_of_the_requested_length(server: Server):
    hits = server.metric("valle_step_limit_hits_total")
    response = server.speak(seed=1)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["x-sample-rate"] == "24000"
    audio = wav_samples(response.content)
    assert audio.ndim == 1 and len(audio) == 40 * HOP  # a random model runs to max_ar_steps
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    # so the audio may be cut short: said in a header, a counter and a warning naming the request
    assert response.headers["x-hit-step-limit"] == "true"
    assert server.metric("valle_step_limit_hits_total") == hits + 1
    request_id = response.headers["x-request-id"]
    assert any(
        line.startswith("WARNING") and request_id in line and "step limit" in line
        for line in server.log.read_text().splitlines()
    ), f"no warning names request {request_id}"


def test_every_format_decodes_to_the_length_of_the_wav(server: Server):
    wav = wav_samples(server.speak(seed=3).content)
    answers = {f: server.speak(seed=3, response_format=f) for f in ("flac", "pcm", "mp3", "opus")}
    assert {f: a.headers["content-type"] for f, a in answers.items()} == {
        "flac": "audio/flac",
        "pcm": "audio/pcm",
        "mp3": "audio/mpeg",
        "opus": "audio/ogg",
    }
    assert len(wav_samples(answers["flac"].content)) == len(wav)
    assert len(np.frombuffer(answers["pcm"].content, "<i2")) == len(wav)
    for lossy in ("mp3", "opus"):  # within one mp3 frame: encoders may pad
        assert abs(len(wav_samples(answers[lossy].content)) - len(wav)) <= 1152, lossy
    assert sf.info(io.BytesIO(answers["opus"].content)).subtype == "OPUS"
    assert len(answers["mp3"].content) < len(wav) * 2 / 4  # compressed: under a quarter of 16-bit PCM


def read_stream(chunks: Iterator[bytes]) -> tuple[list[bytes], list[float]]:
    """The rest of a body's chunks as they arrive, and when each came."""
    out, times = [], []
    for chunk in chunks:
        out.append(chunk)
        times.append(time.monotonic())
    return out, times


def test_streamed_audio_arrives_while_the_row_still_decodes(server: Server):
    body = {"input": SENTENCE, "voice": VOICE, "stream": True, "response_format": "pcm", "seed": 2}
    body["sampler"] = {"max_ar_steps": 300}
    with requests.post(server.url + "/v1/audio/speech", json=body, stream=True, timeout=120) as response:
        assert response.status_code == 200, response.text
        assert response.headers.get("transfer-encoding") == "chunked"
        chunks = response.iter_content(chunk_size=None)
        first = next(chunks)
        first_at = time.monotonic()
        running = server.get("/health").json()["running_rows"]
        rest, times = read_stream(chunks)
    assert running == 1, "the first chunk should come while the request is still decoding"
    assert len(first) > 0 and len(rest) >= 1 and first_at < times[-1]
    assert (len(first) + sum(map(len, rest))) // 2 == 300 * HOP


def test_a_streamed_and_a_whole_request_with_one_seed_have_the_same_length(server: Server):
    whole = wav_samples(server.speak(seed=5, input=THREE_SENTENCES).content)
    pcm = server.speak(seed=5, input=THREE_SENTENCES, stream=True, response_format="pcm").content
    assert len(pcm) // 2 == len(whole) == 3 * 40 * HOP
    # a streamed wav: a header whose sizes say "unknown", then the same 16-bit samples
    streamed_wav = server.speak(seed=5, input=THREE_SENTENCES, stream=True).content
    assert streamed_wav[:4] == b"RIFF" and streamed_wav[36:40] == b"data"
    assert struct.unpack("<I", streamed_wav[40:44])[0] == 0xFFFFFFFF
    assert (len(streamed_wav) - 44) // 2 == len(whole)


def test_eight_concurrent_requests_share_steps_and_each_gets_its_own_length(server: Server):
    texts = [" ".join(["The quick brown fox"] + ["jumps"] * i) + "." for i in range(8)]
    per_phoneme = {"sampler": {"max_ar_steps_per_phoneme": 3}}  # one setting for all: one batch
    alone = [
        len(wav_samples(server.speak(input=text, seed=i, **per_phoneme).content))
        for i, text in enumerate(texts)
    ]
    assert len(set(alone)) == 8, "each text should have its own step limit"
    frames, steps = server.metric("valle_ar_frames_total"), server.metric("valle_ar_steps_total")
    start, responses = threading.Barrier(8), [requests.Response()] * 8

    def ask(i: int) -> None:
        start.wait()
        responses[i] = server.speak(input=texts[i], seed=i, **per_phoneme)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [r.status_code for r in responses] == [200] * 8, [r.text[:200] for r in responses]
    assert [len(wav_samples(r.content)) for r in responses] == alone
    frames = server.metric("valle_ar_frames_total") - frames
    steps = server.metric("valle_ar_steps_total") - steps
    assert frames > steps, f"{frames} frames in {steps} steps: no step decoded two rows"
    assert server.metric("valle_batch_rows_max") > 1


def test_a_request_whose_voice_fails_to_prefill_fails_alone(server: Server, tiny_codec):
    # a preset whose transcript holds bytes that are not UTF-8: the request's own check reads the input
    # only, so the engine meets the transcript when it prefills, maybe beside the other request
    broken = "voice-unreadable-transcript"
    codes = torch.randint(0, tiny_codec.codebook_size, (tiny_codec.n_levels, 150))
    preset = Prompt(codes, "\udcff", "a test's broken preset")
    save_voice(server.log.parent / "voices" / f"{broken}.npz", preset, tiny_codec.info)
    start, answers = threading.Barrier(2), {}

    def ask(voice: str) -> None:
        start.wait()
        answers[voice] = server.speak(voice=voice, seed=0)

    threads = [threading.Thread(target=ask, args=(voice,)) for voice in (broken, VOICE)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        requests.delete(f"{server.url}/v1/voices/{broken}", timeout=30)
    assert answers[broken].status_code == 400, answers[broken].text
    error = answers[broken].json()["error"]
    assert error["code"] == "invalid_input" and broken in error["message"] and "UTF-8" in error["message"]
    assert answers[VOICE].status_code == 200, answers[VOICE].text
    assert len(wav_samples(answers[VOICE].content)) == 40 * HOP


def test_a_stored_voice_whose_file_broke_is_a_500_that_says_so(server: Server):
    broken = "voice-overwritten-file"
    (server.log.parent / "voices" / f"{broken}.npz").write_bytes(b"not a voice preset")
    try:
        answer = server.speak(voice=broken, seed=0)
    finally:
        requests.delete(f"{server.url}/v1/voices/{broken}", timeout=30)
    assert answer.status_code == 500, answer.text
    error = answer.json()["error"]
    assert error["code"] == "voice_unreadable" and broken in error["message"]
    assert f"voice {broken} cannot be read" in server.log.read_text()  # the file, for whoever runs it


def test_a_client_that_leaves_mid_stream_frees_its_row(server: Server):
    cancelled = server.metric('valle_requests_total{status="cancelled"}')
    body = {"input": SENTENCE, "voice": VOICE, "stream": True, "response_format": "pcm"}
    body["sampler"] = {"max_ar_steps": 4000}  # about a minute of audio: far longer than this test
    session = requests.Session()
    response = session.post(server.url + "/v1/audio/speech", json=body, stream=True, timeout=60)
    chunks = response.iter_content(chunk_size=None)  # one iterator: dropping one closes the connection
    assert response.status_code == 200 and next(chunks)
    time.sleep(1.0)  # the server's disconnect checks come every half second: this is not one
    assert server.get("/health").json()["running_rows"] == 1
    response.close()
    session.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.metric("valle_running_rows") == 0 and (
            server.metric('valle_requests_total{status="cancelled"}') == cancelled + 1
        ):
            break
        time.sleep(0.2)
    assert server.metric("valle_running_rows") == 0, "the row still decodes after its client left"
    assert server.metric('valle_requests_total{status="cancelled"}') == cancelled + 1
