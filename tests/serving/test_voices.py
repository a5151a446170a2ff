"""Voices: an upload is listed, speaks, outlives a restart and can be deleted; built-in ones cannot be;
no voice id reaches outside the voices folder."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
import torch

from tests.conftest import RANDOM_MODEL_TEXT, real_speech_dir
from tests.serving.conftest import HOP, VOICE, Server, free_port, serve
from valle.errors import ConfigError
from valle.sampling.prompt import Prompt, save_voice
from valle.serving.voices import builtin_files


def start(ckpt: Path, builtin_voices: Path, voices_dir: Path):
    return serve(ckpt, voices_dir.parent, f"voices_dir={voices_dir}", f"builtin_voices={builtin_voices}")


def voice_ids(server: Server) -> dict[str, bool]:
    """id → builtin, as GET /v1/voices lists them."""
    response = server.get("/v1/voices")
    assert response.ok, response.text
    return {voice["id"]: voice["builtin"] for voice in response.json()["voices"]}


def builtin_voices_as_people_name_them(folder: Path, codec) -> Path:
    """A recording with a transcript beside it (not used: a built-in recording is a cross-utterance
    prompt), a recording whose name is no voice id, one named by an emoji (no id can be made of it), and a
    preset made with its transcript (continued from its end)."""
    folder.mkdir()
    shutil.copy(real_speech_dir() / f"{VOICE}.wav", folder / f"{VOICE}.wav")
    (folder / f"{VOICE}.txt").write_text("Words the server does not use.")
    shutil.copy(real_speech_dir() / "LJ049-0110.wav", folder / "my voice é.wav")
    shutil.copy(real_speech_dir() / "LJ049-0110.wav", folder / "🍕.wav")
    codes = torch.randint(0, codec.codebook_size, (codec.n_levels, 75))
    save_voice(folder / "narrator.npz", Prompt(codes, RANDOM_MODEL_TEXT, "a test preset"), codec.info)
    return folder


def speaks(server: Server, voice: str) -> bool:
    response = server.speak(voice=voice, seed=0)
    assert response.status_code == 200, response.text
    audio, _ = sf.read(io.BytesIO(response.content))
    return len(audio) == 40 * HOP and bool(np.abs(audio).max() > 0)


def test_an_uploaded_voice_is_listed_speaks_survives_a_restart_and_is_deleted(
    endless_export, tiny_codec, tmp_path
):
    voices_dir = tmp_path / "voices"
    builtin_voices = builtin_voices_as_people_name_them(tmp_path / "builtin", tiny_codec)
    recording = (real_speech_dir() / "LJ049-0124.wav").read_bytes()
    with start(endless_export, builtin_voices, voices_dir) as server:
        # each built-in voice listed with the transcript synthesis uses; a name that is no id gets one
        listed = {v["id"]: (v["name"], v["transcript"]) for v in server.get("/v1/voices").json()["voices"]}
        assert listed == {
            VOICE: (VOICE, None),
            "my-voice-e": ("my voice é", None),
            "narrator": ("narrator", RANDOM_MODEL_TEXT),
        }
        log = server.log.read_text().splitlines()
        assert any(line.startswith("WARNING") and "skipped" in line for line in log), "no word of 🍕.wav"
        response = requests.post(
            server.url + "/v1/voices",
            files={"file": ("my voice.wav", recording, "audio/wav")},
            data={"name": "Narrator", "transcript": ""},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        voice = response.json()
        assert voice["name"] == "Narrator" and voice["builtin"] is False and 0 < voice["seconds"] <= 3.0
        assert voice_ids(server) == {VOICE: True, "my-voice-e": True, "narrator": True, voice["id"]: False}
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


def test_built_in_file_names_that_are_no_voice_ids_get_one_and_a_clash_is_an_error(tmp_path, caplog):
    names = ("a b.wav", "Zoë's take 2.flac", "ok-1.npz", "🍕.wav", ".hidden.wav", "a b.txt", "take.AIFF")
    for name in (*names, "other.w64", "notes.md", "raw.pcm"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "more.wav").mkdir()
    with caplog.at_level(logging.WARNING, "valle.serving.voices"):
        files = builtin_files(tmp_path)
    assert {key: path.name for key, path in files.items()} == {
        "a-b": "a b.wav",
        "Zoe-s-take-2": "Zoë's take 2.flac",
        "ok-1": "ok-1.npz",
        "take": "take.AIFF",
        "other": "other.w64",
    }
    assert "🍕.wav skipped" in caplog.text and "letter or digit" in caplog.text
    # each other file is named in a warning (a transcript and a hidden file are not)
    skipped = [r.getMessage() for r in caplog.records if "not a recording" in r.getMessage()]
    assert [Path(m.split(" skipped")[0]).name for m in skipped] == ["more.wav", "notes.md", "raw.pcm"]
    assert ".caf" in skipped[0]
    (tmp_path / "a-b.mp3").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"a b\.wav and a-b\.mp3 would both be voice 'a-b'; rename one"):
        builtin_files(tmp_path)


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
