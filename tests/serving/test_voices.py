"""Voices: an upload is listed, speaks, outlives a restart and can be deleted; built-in ones cannot be;
no voice id reaches outside the voices folder."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from tests.conftest import real_speech_dir
from tests.serving.conftest import HOP, VOICE, Server, free_port, serve


def start(ckpt: Path, builtin_voices: Path, voices_dir: Path):
    return serve(ckpt, voices_dir.parent, f"voices_dir={voices_dir}", f"builtin_voices={builtin_voices}")


def voice_ids(server: Server) -> dict[str, bool]:
    """id → builtin, as GET /v1/voices lists them."""
    response = server.get("/v1/voices")
    assert response.ok, response.text
    return {voice["id"]: voice["builtin"] for voice in response.json()["voices"]}


def speaks(server: Server, voice: str) -> bool:
    response = server.speak(voice=voice, seed=0)
    assert response.status_code == 200, response.text
    audio, _ = sf.read(io.BytesIO(response.content))
    return len(audio) == 40 * HOP and bool(np.abs(audio).max() > 0)


def test_an_uploaded_voice_is_listed_speaks_survives_a_restart_and_is_deleted(
    endless_export, builtin_voices, tmp_path
):
    voices_dir = tmp_path / "voices"
    recording = (real_speech_dir() / "LJ049-0124.wav").read_bytes()
    with start(endless_export, builtin_voices, voices_dir) as server:
        response = requests.post(
            server.url + "/v1/voices",
            files={"file": ("my voice.wav", recording, "audio/wav")},
            data={"name": "Narrator", "transcript": ""},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        voice = response.json()
        assert voice["name"] == "Narrator" and voice["builtin"] is False and 0 < voice["seconds"] <= 3.0
        assert voice_ids(server) == {VOICE: True, "LJ049-0110": True, voice["id"]: False}
        assert speaks(server, voice["id"])

    with start(endless_export, builtin_voices, voices_dir) as server:  # the same folder, a new process
        assert voice_ids(server)[voice["id"]] is False
        assert speaks(server, voice["id"])
        response = requests.delete(f"{server.url}/v1/voices/{voice['id']}", timeout=30)
        assert response.status_code == 200 and response.json() == {"id": voice["id"], "deleted": True}
        assert voice["id"] not in voice_ids(server)
        assert server.speak(voice=voice["id"]).status_code == 400
        assert requests.delete(f"{server.url}/v1/voices/{voice['id']}", timeout=30).status_code == 404
    assert sorted(voices_dir.iterdir()) == []


def test_built_in_voices_are_listed_and_cannot_be_deleted(server: Server):
    assert voice_ids(server) == {VOICE: True, "LJ049-0110": True}
    response = requests.delete(f"{server.url}/v1/voices/{VOICE}", timeout=30)
    assert response.status_code == 403, response.text
    assert "built in" in response.json()["error"]["message"]
    assert speaks(server, VOICE)


@pytest.mark.parametrize("voice_id", ["..%2Fx", "%2E%2E%2Fx", "..", "..%2F..%2Fx", "%2Fx", "x%00"])
def test_a_voice_id_cannot_reach_outside_the_voices_folder(server: Server, voice_id: str):
    outside = Path(server.log).parent  # voices_dir's parent: a preset put here must stay out of reach
    (outside / "x.npz").write_bytes(b"not a voice")
    (outside / "x.json").write_text("{}")
    response = requests.delete(f"{server.url}/v1/voices/{voice_id}", timeout=30)
    assert 400 <= response.status_code < 500 and response.json()["error"]["message"]
    assert (outside / "x.npz").exists() and (outside / "x.json").exists()
    name = requests.utils.unquote(voice_id)
    response = server.speak(voice=name)
    assert response.status_code == 400 and "voice" in response.json()["error"]["message"]


def test_a_broken_built_in_voice_stops_the_start_with_one_line(endless_export, builtin_voices, tmp_path):
    voices = tmp_path / "builtin"
    shutil.copytree(builtin_voices, voices)
    (voices / "broken.wav").write_bytes(b"RIFF not really a wav")
    done = subprocess.run(
        [sys.executable, "-m", "valle.serve", f"ckpt={endless_export}", f"builtin_voices={voices}",
         f"voices_dir={tmp_path / 'uploads'}", f"port={free_port()}"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]  # (a codec library's deprecation warning may come first)
    assert last.startswith("error: builtin_voices=") and "broken.wav" in last
