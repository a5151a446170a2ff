from __future__ import annotations

import subprocess

import soundfile as sf

from valle.corpus import Voice, build_corpus, espeak_voices, festival_batch, festival_voices
from valle.data.readers import read_corpus


def seconds(path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


def test_festival_variants_are_distinct_speakers_with_shifted_speech(tmp_path):
    voices = [
        Voice("plain", "kal_diphone", "festival"),
        Voice("faster", "kal_diphone", "festival", speed=1.2),
        Voice("higher", "kal_diphone", "festival", pitch_cents=300),
    ]
    root = build_corpus(tmp_path, voices, n_sentences=1, spread=0)  # all three read the same sentence
    plain, faster, higher = (next((root / "builtin" / v.speaker).glob("*.wav")) for v in voices)
    assert seconds(faster) < 0.9 * seconds(plain)  # sox speed shortens (and raises pitch and formants)
    assert abs(seconds(higher) - seconds(plain)) < 0.05  # sox pitch keeps the duration
    assert len(festival_voices()) == 15 and len({v.speaker for v in festival_voices()}) == 15


def test_festival_batches_speak_exactly_what_text2wave_speaks(tmp_path):
    """The corpus is spoken many sentences per festival process; each wav is text2wave's, quotes and all."""
    texts = ['She said "wait here" and left.', "A back\\slash is not a word."]
    festival_batch("kal_diphone", [(text, tmp_path / f"batch{i}.wav") for i, text in enumerate(texts)])
    for i, text in enumerate(texts):
        single = tmp_path / f"single{i}.wav"
        subprocess.run(
            ["text2wave", "-eval", "(voice_kal_diphone)", "-o", str(single)],
            input=text.encode(),
            check=True,
            capture_output=True,
        )
        assert (tmp_path / f"batch{i}.wav").read_bytes() == single.read_bytes()


def test_festival_corpus_rebuilds_byte_identical(tmp_path):
    voices = [
        Voice("plain", "kal_diphone", "festival"),
        Voice("lower", "kal_diphone", "festival", pitch_cents=-250),
        Voice("slower", "kal_diphone", "festival", speed=0.94),
    ]
    first = build_corpus(tmp_path / "a", voices, n_sentences=2, spread=0)
    second = build_corpus(tmp_path / "b", voices, n_sentences=2, spread=0)
    files = sorted(p.relative_to(first) for p in first.rglob("*.wav"))
    assert len(files) == 6 and files == sorted(p.relative_to(second) for p in second.rglob("*.wav"))
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)  # sox dither repeats
    assert not [p for p in first.iterdir() if p.name.startswith(".")]  # no batch leftovers


def test_build_corpus_is_deterministic_and_resumable(tmp_path):
    voices = espeak_voices(["en-us+m3", "en-gb+f4"])
    first = build_corpus(tmp_path / "a", voices, n_sentences=3)
    second = build_corpus(tmp_path / "b", voices, n_sentences=3)
    files = sorted(p.relative_to(first) for p in first.rglob("*.wav"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.wav")) and len(files) == 6
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    victim = first / files[0]
    victim.unlink()
    build_corpus(tmp_path / "a", voices, n_sentences=3)  # an interrupted build finishes
    assert victim.is_file()
    utterances, missing = read_corpus("folder", first, "en-us")
    assert len(utterances) == 6 and not missing


def test_sentence_set_is_large_varied_and_deterministic():
    from valle.corpus.sentences import SENTENCES, all_sentences
    from valle.text import phonemize_batch

    sentences = all_sentences(400)
    assert len(set(sentences)) == 400 and sentences == SENTENCES[:400]
    assert sentences == all_sentences(400)
    phones = {p for symbols in phonemize_batch(sentences) for p in symbols}
    assert len(phones) > 60  # a wide phoneme inventory (stressed variants included)
