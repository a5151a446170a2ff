"""A real server for the serving tests: `python -m valle.serve` in a subprocess on a free local port, with
the tiny random model (`endless_export`) and two real recordings as built-in voices.

Its stop logit is out of reach, so every request runs to its step limit: requests pass a
small `max_ar_steps` (or `max_ar_steps_per_phoneme`) to stay fast, and the lengths are known.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import real_speech_dir

STARTUP_SECONDS = 120  # importing torch and encoding the built-in voices, on 2 busy cores
HOP = 320  # samples per frame of the tiny codec (EnCodec at 24 kHz, 75 Hz)
VOICE = "LJ049-0108"  # a built-in voice (a recording's stem)
SHORT = {"sampler": {"max_ar_steps": 40}}  # 40 frames: 12,800 samples
APP_ORIGIN = "http://localhost:3000"  # a web app on another origin that the shared server lets call it


@dataclass
class Server:
    """A running server: its base URL, the process and its log."""

    url: str
    process: subprocess.Popen
    log: Path

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)

    def speak(self, headers: dict | None = None, **fields) -> requests.Response:
        """POST /v1/audio/speech with a short default request, `fields` over it."""
        body = {"model": "valle", "input": "The quick brown fox.", "voice": VOICE, **SHORT, **fields}
        return requests.post(self.url + "/v1/audio/speech", json=body, headers=headers, timeout=120)

    def metric(self, name: str) -> float:
        """One sample of /metrics, e.g. `valle_requests_total{status="ok"}` (0 when absent)."""
        text = self.get("/metrics").text
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(ckpt: Path, folder: Path, *overrides: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`python -m valle.serve ckpt=... host=127.0.0.1 port=<free> overrides...`, up once /health answers;
    stopped on exit, when its log must hold no traceback. The log is `folder/server-<port>.log`, shown when
    the server fails to start or a request crashed in it."""
    port = free_port()
    log = folder / f"server-{port}.log"
    command = [sys.executable, "-m", "valle.serve", f"ckpt={ckpt}", "host=127.0.0.1", f"port={port}"]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, *overrides],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text(), f"a request crashed in the server:\n{log.read_text()}"


def wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n{server.log.read_text()}")
        try:
            if requests.get(server.url + "/health", timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not answer /health in {STARTUP_SECONDS} s:\n{server.log.read_text()}")


@pytest.fixture(scope="session")
def builtin_voices(tmp_path_factory) -> Path:
    """A folder of two real recordings (LJ Speech), each a built-in voice named by its stem."""
    folder = tmp_path_factory.mktemp("builtin-voices")
    for stem in (VOICE, "LJ049-0110"):
        shutil.copy(real_speech_dir() / f"{stem}.wav", folder / f"{stem}.wav")
    return folder


@pytest.fixture(scope="session")
def server(endless_export, builtin_voices, tmp_path_factory) -> Iterator[Server]:
    """One server shared by the tests that leave no lasting state: small limits, so each is cheap to hit."""
    folder = tmp_path_factory.mktemp("server")
    with serve(
        endless_export,
        folder,
        f"voices_dir={folder / 'voices'}",
        f"builtin_voices={builtin_voices}",
        "max_text_chars=200",
        "max_upload_bytes=600000",
        "max_upload_seconds=12",
        f"cors_origins=[{APP_ORIGIN!r}]",
    ) as running:
        yield running
