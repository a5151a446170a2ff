"""A server with an API key and no batching: every route but /health and the page wants the key, and a
full queue answers 429. And which web pages on other origins may call the API from a browser (CORS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.serving.conftest import APP_ORIGIN, VOICE, Server, serve

KEY = "secret"
SPEAK = {"input": "The quick brown fox.", "voice": VOICE, "sampler": {"max_ar_steps": 20}}
CALLS = [  # (method, path, request kwargs)
    ("POST", "/v1/audio/speech", {"json": SPEAK}),
    ("GET", "/v1/voices", {}),
    ("POST", "/v1/voices", {"files": {"file": ("x.wav", b"RIFF")}}),
    ("DELETE", f"/v1/voices/{VOICE}", {}),
    ("GET", "/v1/limits", {}),
    ("GET", "/v1/models", {}),
    ("GET", "/metrics", {}),
]


@pytest.fixture(scope="module")
def keyed(endless_export, builtin_voices, tmp_path_factory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("keyed")
    with serve(
        endless_export,
        folder,
        f"voices_dir={folder / 'voices'}",
        f"builtin_voices={builtin_voices}",
        "batching=false",
        "max_queue=1",
        env={"VALLE_API_KEY": KEY},
    ) as server:
        yield server


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("method", "path", "kwargs"), CALLS, ids=[f"{m} {p}" for m, p, _ in CALLS])
@pytest.mark.parametrize(
    "headers", [{}, bearer("wrong"), {"Authorization": KEY}], ids=["none", "wrong", "no-scheme"]
)
def test_a_request_without_the_right_key_gets_401(keyed: Server, method, path, kwargs, headers):
    response = requests.request(method, keyed.url + path, headers=headers, timeout=30, **kwargs)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and "Authorization: Bearer" in error["message"]


def test_the_key_opens_the_api(keyed: Server):
    for method, path in [
        ("GET", "/v1/voices"),
        ("GET", "/v1/limits"),
        ("GET", "/v1/models"),
        ("GET", "/metrics"),
    ]:
        assert requests.request(method, keyed.url + path, headers=bearer(KEY), timeout=30).ok, path
    response = requests.post(keyed.url + "/v1/audio/speech", json=SPEAK, headers=bearer(KEY), timeout=60)
    assert response.status_code == 200 and response.content[:4] == b"RIFF"
    response = requests.delete(f"{keyed.url}/v1/voices/{VOICE}", headers=bearer(KEY), timeout=30)
    assert response.status_code == 403  # past the key: the voice is built in


def test_health_and_the_page_need_no_key(keyed: Server):
    assert keyed.get("/health").json()["status"] == "ok"
    page = keyed.get("/")
    assert page.ok and "text/html" in page.headers["content-type"] and 'id="speak"' in page.text


def test_without_cors_origins_a_preflight_gets_400_and_no_origin_is_allowed(keyed: Server):
    refused = preflight(keyed, "http://localhost:3000")
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_a_full_queue_answers_429_and_the_waiting_request_still_completes(keyed: Server):
    """batching=false decodes one request at a time; max_queue=1 lets one more wait."""
    headers, url = bearer(KEY), keyed.url + "/v1/audio/speech"
    long = {**SPEAK, "stream": True, "response_format": "pcm", "sampler": {"max_ar_steps": 4000}}
    waiting: dict[str, requests.Response] = {}
    thread = threading.Thread(
        target=lambda: waiting.update(r=requests.post(url, json=SPEAK, headers=headers, timeout=120))
    )
    with requests.post(url, json=long, headers=headers, stream=True, timeout=60) as running:
        chunks = running.iter_content(chunk_size=None)  # one iterator: dropping one closes the connection
        assert running.status_code == 200 and next(chunks)
        thread.start()
        deadline = time.monotonic() + 20
        while keyed.get("/health").json()["queue_depth"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        health = keyed.get("/health").json()
        assert (health["running_rows"], health["queue_depth"]) == (1, 1)
        refused = requests.post(url, json=SPEAK, headers=headers, timeout=30)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "queue_full" and refused.headers["retry-after"]
    # the client left: its row frees, and the waiting request gets it
    thread.join(timeout=60)
    assert waiting["r"].status_code == 200 and waiting["r"].content[:4] == b"RIFF"


# what the official openai JS client sends
SDK_HEADERS = "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout"  # noqa: E501


def preflight(server: Server, origin: str) -> requests.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": SDK_HEADERS,
    }
    return requests.options(server.url + "/v1/audio/speech", headers=headers, timeout=30)


def test_a_web_app_on_an_allowed_origin_may_call_the_api_and_others_may_not(server: Server):
    allowed = preflight(server, APP_ORIGIN)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert allowed.headers["access-control-allow-headers"].lower() == SDK_HEADERS
    other = preflight(server, "http://elsewhere.example")
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers

    spoken = server.speak(headers={"Origin": APP_ORIGIN})
    assert spoken.ok and spoken.headers["access-control-allow-origin"] == APP_ORIGIN
    exposed = spoken.headers["access-control-expose-headers"].lower()
    assert {"x-sample-rate", "x-request-id", "x-hit-step-limit"} <= set(exposed.replace(" ", "").split(","))
    refused = server.speak(headers={"Origin": APP_ORIGIN}, voice="nobody")  # a refusal is readable too
    assert refused.json()["error"]["code"] == "voice_not_found"
    assert refused.headers["access-control-allow-origin"] == APP_ORIGIN
