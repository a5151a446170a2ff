from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import real_speech_dir
from valle.data.readers import read_corpus
from valle.errors import ConfigError


def ljspeech_layout(root: Path) -> Path:
    """The real-speech fixtures arranged as LJSpeech: metadata.csv + wavs/."""
    source = real_speech_dir()
    (root / "wavs").mkdir(parents=True)
    lines = []
    for wav in sorted(source.glob("*.wav")):
        shutil.copy(wav, root / "wavs" / wav.name)
        text = wav.with_suffix(".txt").read_text(encoding="utf-8").strip()
        lines.append(f"{wav.stem}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_folder_layout_reads_group_speaker_and_transcript(tiny_corpus):
    utterances, missing = read_corpus("folder", tiny_corpus, "en-us")
    assert not missing and len(utterances) == 15
    first = utterances[0]
    assert first.key == f"{first.group}/{first.speaker}/{first.audio_path.stem}"
    assert first.group == "builtin" and first.speaker.startswith("espeak-")
    assert first.text == first.audio_path.with_suffix(".txt").read_text().strip()
    assert [u.key for u in utterances] == sorted(u.key for u in utterances)


def test_ljspeech_layout_reads_metadata_csv(tmp_path):
    utterances, missing = read_corpus("ljspeech", ljspeech_layout(tmp_path / "LJSpeech"), "en-us")
    assert len(utterances) == 4 and not missing
    assert {u.speaker for u in utterances} == {"LJSpeech"}
    assert all(u.audio_path.is_file() for u in utterances)
    assert utterances[0].text == (real_speech_dir() / "LJ049-0108.txt").read_text().strip()


# (metadata line, the text read): LJSpeech's own unquoted fields with stray quotes, and Excel's quoted ones
METADATA_STYLES = [
    ('He said "yes|He said "yes', 'He said "yes'),
    ('"one | two ""three"""|"one | two ""three"""', 'one | two "three"'),
]


@pytest.mark.parametrize("line, text", METADATA_STYLES, ids=["ljspeech", "excel"])
def test_ljspeech_metadata_bad_rows_and_unlisted_wavs_are_reported(tmp_path, line, text):
    root = ljspeech_layout(tmp_path / "LJSpeech")
    lines = (root / "metadata.csv").read_text().splitlines()
    lines[0] = "LJ049-0108|" + line
    lines[1] = lines[1] + "|a fourth field"
    lines[2] = lines[2].split("|")[0] + "|only one text"  # two fields: text, no normalized text (allowed)
    lines.append("GONE-0001|a row without its wav|a row without its wav")
    (root / "metadata.csv").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8-sig")
    utterances, missing = read_corpus("ljspeech", root, "en-us")
    assert [u.audio_path.stem for u in utterances] == ["LJ049-0108", "LJ049-0124", "LJ049-0185"]
    assert utterances[0].text == text and utterances[1].text == "only one text"
    assert {m.audio_path.stem: m.reason for m in missing} == {
        "LJ049-0110": "bad metadata row",
        "GONE-0001": "missing audio",
    }
    shutil.copy(root / "wavs" / "LJ049-0110.wav", root / "wavs" / "EXTRA-0001.wav")
    _, missing = read_corpus("ljspeech", root, "en-us")
    assert {m.audio_path.stem: m.reason for m in missing}["EXTRA-0001"] == "missing transcript"


def test_files_saved_by_windows_editors_read_the_same(tmp_path):
    """A byte-order mark and CRLF line ends (Notepad, Excel's "CSV UTF-8") in metadata.csv and in a
    folder corpus's transcripts, and upper-case audio suffixes."""
    plain = read_corpus("ljspeech", ljspeech_layout(tmp_path / "plain"), "en-us")[0]
    root = ljspeech_layout(tmp_path / "windows")
    metadata = root / "metadata.csv"
    metadata.write_bytes(b"\xef\xbb\xbf" + metadata.read_bytes().replace(b"\n", b"\r\n"))
    windows = read_corpus("ljspeech", root, "en-us")[0]
    assert [(u.key.split("/")[-1], u.text) for u in windows] == [
        (u.key.split("/")[-1], u.text) for u in plain
    ]

    speaker = tmp_path / "folder" / "group" / "speaker"
    speaker.mkdir(parents=True)
    wav = sorted(real_speech_dir().glob("*.wav"))[0]
    shutil.copy(wav, speaker / "one.WAV")
    (speaker / "one.txt").write_bytes(
        b"\xef\xbb\xbf" + wav.with_suffix(".txt").read_bytes().strip() + b"\r\n"
    )
    [utterance], missing = read_corpus("folder", tmp_path / "folder", "en-us")
    assert not missing and utterance.text == wav.with_suffix(".txt").read_text(encoding="utf-8").strip()


def test_libritts_layout_prefers_normalized_text(tmp_path):
    source = real_speech_dir() / "LJ049-0124.wav"
    chapter = tmp_path / "train-clean-100" / "84" / "121123"
    chapter.mkdir(parents=True)
    shutil.copy(source, chapter / "84_121123_000007_000001.wav")
    (chapter / "84_121123_000007_000001.normalized.txt").write_text("Normalized text.")
    (chapter / "84_121123_000007_000001.original.txt").write_text("Original TEXT.")
    utterances, _ = read_corpus("libritts", tmp_path, "en-us")
    assert [(u.key, u.speaker, u.text) for u in utterances] == [
        ("train-clean-100/84/84_121123_000007_000001", "84", "Normalized text.")
    ]


def test_audio_without_transcript_is_reported_not_fatal(tmp_path, tiny_corpus):
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "c"))
    victim = sorted(corpus.rglob("*.txt"))[0]
    victim.unlink()
    utterances, missing = read_corpus("folder", corpus, "en-us")
    assert len(utterances) == 14
    assert [m.audio_path for m in missing] == [victim.with_suffix(".wav")]


def test_bad_layout_and_missing_folder_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown layout 'vctk'; choose one of"):
        read_corpus("vctk", tmp_path, "en-us")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_corpus("folder", tmp_path / "nope", "en-us")
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        read_corpus("ljspeech", tmp_path, "en-us")


def test_a_textgrid_beside_the_audio_is_its_alignment(tmp_path):
    from valle.utils.textgrid import Interval, write_textgrid

    root = ljspeech_layout(tmp_path / "LJSpeech")
    first = sorted((root / "wavs").glob("*.wav"))[0]
    write_textgrid(first.with_suffix(".TextGrid"), {"words": [Interval(0.1, 0.5, "the")]}, end=1.0)
    utterances, _ = read_corpus("ljspeech", root, "en-us")
    aligned = {u.audio_path.stem: u.alignment for u in utterances}
    assert aligned.pop(first.stem) == first.with_suffix(".TextGrid")
    assert set(aligned.values()) == {None}


def test_two_files_under_one_key_are_named_and_a_speaker_name_in_two_groups_is_flagged(tmp_path, caplog):
    wavs = sorted(real_speech_dir().glob("*.wav"))[:2]
    for group, wav in zip(("male", "female"), wavs, strict=True):  # two people, one folder name
        folder = tmp_path / group / "spk1"
        folder.mkdir(parents=True)
        shutil.copy(wav, folder / wav.name)
        shutil.copy(wav.with_suffix(".txt"), folder / wav.with_suffix(".txt").name)
    with caplog.at_level("WARNING"):
        utterances, _ = read_corpus("folder", tmp_path, "en-us")
    assert {u.speaker for u in utterances} == {"spk1"}
    assert "speaker 'spk1' is in 2 groups (female, male)" in caplog.text
    twin = tmp_path / "male" / "spk1" / wavs[0].name
    shutil.copy(twin, twin.with_suffix(".WAV"))  # the same id twice in one folder
    with pytest.raises(ConfigError, match=rf"names 2 utterances \(.*{wavs[0].stem}\.WAV, .*{wavs[0].name}\)"):
        read_corpus("folder", tmp_path, "en-us")
