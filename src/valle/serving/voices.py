"""The server's voices: built-in ones from a folder of recordings, and uploads kept as voice presets.

An uploaded voice is encoded once with the model's codec and stored as `{id}.npz` (the same preset
`python -m valle.voice make` writes) with `{id}.json` beside it (its name, transcript and length), both
written atomically, so the voices survive a restart and a crash never leaves half a voice. Ids are made
here and checked against one pattern, so no request can name a path outside the folder.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import tempfile
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from valle.audio import AUDIO_SUFFIXES, AudioError, read_audio
from valle.codecs.base import Codec
from valle.errors import ConfigError, one_line
from valle.sampling.prompt import Prompt, load_prompt, load_voice, save_voice
from valle.utils.io import atomic_write_json

log = logging.getLogger(__name__)
VOICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,95}$")
VOICE_ID_RULE = "a letter or digit, then up to 95 of letters, digits and _.+-"
PRESET_SUFFIX = ".npz"
# what may sit beside the recordings of a built-in folder without a warning: transcripts (not used)
TRANSCRIPT_SUFFIXES = (".txt", ".lab")


class VoiceError(Exception):
    """A voice request that cannot be met; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_voice") -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class Voice:
    id: str
    name: str
    builtin: bool
    transcript: str | None
    seconds: float


def builtin_voice_id(stem: str) -> str:
    """The voice id of a built-in file: its stem when that is a valid id, else the stem with its accents
    dropped and each run of other characters made one "-" ("my voice é" → "my-voice-e"); "" when nothing
    usable is left (e.g. a name of emoji only)."""
    if VOICE_ID.match(stem):
        return stem
    plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9_.+-]+", "-", plain)
    slug = re.sub(r"^[^A-Za-z0-9]+", "", slug)[:96].rstrip("-")
    return slug if VOICE_ID.match(slug) else ""


def builtin_files(folder: Path) -> dict[str, Path]:
    """The built-in voices of a folder: voice id → recording or preset (hidden files skipped).

    A file whose stem is no valid voice id gets one made from it (`builtin_voice_id`), logged; a file of
    which no id can be made is skipped with a warning, and so is any other file that is neither audio
    (`AUDIO_SUFFIXES`), a preset nor a transcript, and any subfolder.

    Raises:
        ConfigError: two files that would get one id (the message names both).
    """
    files: dict[str, Path] = {}
    for path in sorted(Path(folder).iterdir()):
        suffix = path.suffix.lower()
        if path.name.startswith(".") or (suffix in TRANSCRIPT_SUFFIXES and path.is_file()):
            continue
        if suffix not in {*AUDIO_SUFFIXES, PRESET_SUFFIX} or not path.is_file():
            log.warning(
                "builtin_voices: %s skipped: not a recording (%s) or a voice preset (%s)",
                path,
                ", ".join(AUDIO_SUFFIXES),
                PRESET_SUFFIX,
            )
            continue
        voice_id = builtin_voice_id(path.stem)
        if not voice_id:
            log.warning(
                "builtin_voices: %s skipped: no voice id (%s) can be made of its name", path, VOICE_ID_RULE
            )
            continue
        if voice_id in files:
            raise ConfigError(
                f"builtin_voices={folder}: {files[voice_id].name} and {path.name} would both be voice "
                f"{voice_id!r}; rename one"
            )
        if voice_id != path.stem:
            log.info("builtin_voices: %s is voice %r (an id is %s)", path.name, voice_id, VOICE_ID_RULE)
        files[voice_id] = path
    return files


class VoiceStore:
    """Voices by id: built-in (read-only) and uploaded (a folder of presets).

    Args:
        folder: where uploads are kept (created if missing).
        codec: the model's codec (uploads are encoded with it; presets must match it).
        builtin: a folder of recordings (`*.wav`, ...; each a cross-utterance prompt cropped to
            `prompt_seconds`) or voice presets (`.npz`, continued from their end when made with a
            transcript), each a voice named by its file stem (`builtin_files`); or None. Each is encoded
            here, once.
        prompt_seconds: an upload without transcript is cropped to this, as `infer.py` crops prompts.
        max_seconds: the longest upload accepted.
        check_transcript: raises a ConfigError (a TextError) for a transcript the model cannot read, as
            synthesis phonemizes it (`Synthesizer.text_ids` in the server's language); None: no check.

    Raises:
        ConfigError: a built-in voice that cannot be read (silent, unreadable, another codec's preset, a
            transcript of no words), or two built-in files that would get one id.
    """

    def __init__(
        self,
        folder: Path,
        codec: Codec,
        builtin: Path | None = None,
        prompt_seconds: float = 3.0,
        max_seconds: float = 30.0,
        check_transcript: Callable[[str], object] | None = None,
    ) -> None:
        self.folder, self.codec = Path(folder), codec
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prompt_seconds, self.max_seconds = prompt_seconds, max_seconds
        self.check_transcript = check_transcript or (lambda text: None)
        self.lock = threading.Lock()
        self.cache: dict[str, Prompt] = {}
        self.builtin: dict[str, Path] = builtin_files(builtin) if builtin is not None else {}
        for key, path in self.builtin.items():  # encoded now: a broken file stops the start, not a request
            try:
                prompt = self.cache[key] = self._load(key)
                if prompt.text:
                    self.check_transcript(prompt.text)
            except ConfigError as error:  # an AudioError or a TextError too
                raise ConfigError(f"builtin_voices={builtin}: {path.name}: {error}") from None

    def list(self) -> list[Voice]:
        voices = [self._builtin_voice(key) for key in self.builtin]
        for meta in sorted(self.folder.glob("*.json")):
            if meta.stem not in self.builtin and (self.folder / f"{meta.stem}.npz").is_file():
                voices.append(Voice(**json.loads(meta.read_text())))
        return voices

    def prompt(self, voice_id: str) -> Prompt:
        """The prompt of a voice.

        Raises:
            VoiceError: an id that is malformed or names no voice (400); a voice whose file cannot be
                read (500, the file named in the log).
        """
        with self.lock:
            if voice_id in self.cache:
                return self.cache[voice_id]
        if not VOICE_ID.match(voice_id):
            raise VoiceError(f"voice={voice_id!r} is not a voice id; GET /v1/voices lists them")
        stored = self.folder / f"{voice_id}.npz"
        if voice_id not in self.builtin and not stored.is_file():
            raise VoiceError(f"unknown voice {voice_id!r}; GET /v1/voices lists them", code="voice_not_found")
        try:
            prompt = self._load(voice_id)
        except ConfigError as error:  # a file on the server broke or was replaced: its fault
            log.error("voice %s cannot be read: %s", voice_id, one_line(error))
            raise VoiceError(
                f"voice {voice_id!r} cannot be read on this server (its log names the file); "
                f"upload the recording again as a new voice",
                status=500,
                code="voice_unreadable",
            ) from None
        with self.lock:
            self.cache[voice_id] = prompt
        return prompt

    def _load(self, voice_id: str) -> Prompt:
        """A known voice's prompt, read from its file.

        Raises:
            ConfigError: the file cannot be read as a prompt (an AudioError for a recording).
        """
        if voice_id in self.builtin:
            return load_prompt(self.builtin[voice_id], self.codec, self.prompt_seconds)
        return load_voice(self.folder / f"{voice_id}.npz", self.codec.info)

    def add(
        self, data: bytes, filename: str, name: str | None = None, transcript: str | None = None
    ) -> Voice:
        """Encode an uploaded recording and keep it as a new voice.

        Raises:
            VoiceError: a transcript the model cannot read; not audio, silent, too short or too long (400).
        """
        transcript = (transcript or "").strip() or None
        if transcript is not None:  # checked first: it is cheap, and encoding is not
            try:
                self.check_transcript(transcript)
            except ConfigError as error:
                raise VoiceError(
                    f"transcript: {one_line(error)}, or leave transcript out (it is optional)",
                    code="invalid_transcript",
                ) from None
        suffix = Path(filename or "upload.wav").suffix.lower() or ".wav"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                wav, rate = read_audio(path)
                seconds = wav.shape[-1] / rate
                if seconds > self.max_seconds:
                    raise VoiceError(
                        f"file={filename}: {seconds:.1f} s of audio; upload at most {self.max_seconds:g} s "
                        "(3 to 10 s of one speaker works best)",
                        code="upload_too_long",
                    )
                prompt = load_prompt(path, self.codec, self.prompt_seconds, transcript)
            except AudioError as error:
                raise VoiceError(
                    str(error).replace(str(path), filename or "upload"), code="invalid_audio"
                ) from None
        voice_id = f"voice-{secrets.token_hex(6)}"
        voice = Voice(
            voice_id,
            (name or Path(filename or "upload").stem)[:100],
            False,
            transcript,
            round(prompt.codes.shape[1] / self.codec.frame_rate, 2),
        )
        prompt.source = f"upload {filename}"
        save_voice(self.folder / f"{voice_id}.npz", prompt, self.codec.info)
        atomic_write_json(self.folder / f"{voice_id}.json", asdict(voice))
        return voice

    def delete(self, voice_id: str) -> None:
        """Remove an uploaded voice.

        Raises:
            VoiceError: a built-in voice (403) or no such voice (404).
        """
        if voice_id in self.builtin:
            raise VoiceError(f"voice {voice_id!r} is built in and cannot be deleted", 403, "voice_builtin")
        if not VOICE_ID.match(voice_id) or not (self.folder / f"{voice_id}.npz").is_file():
            raise VoiceError(f"unknown voice {voice_id!r}; GET /v1/voices lists them", 404, "voice_not_found")
        with self.lock:
            self.cache.pop(voice_id, None)
        (self.folder / f"{voice_id}.json").unlink(missing_ok=True)
        (self.folder / f"{voice_id}.npz").unlink(missing_ok=True)

    def _builtin_voice(self, key: str) -> Voice:
        prompt = self.prompt(key)  # listed as synthesis uses it: a preset's transcript, a recording's none
        seconds = round(prompt.codes.shape[1] / self.codec.frame_rate, 2)
        return Voice(key, self.builtin[key].stem, True, prompt.text, seconds)
