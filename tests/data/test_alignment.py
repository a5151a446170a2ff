"""Forced alignments → frames per text id: festival's own timings through prepare, and TextGrids whose
words espeak-ng groups differently."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from valle.data.alignment import frame_symbols, symbol_durations
from valle.text.phonemize import phonemize
from valle.utils.textgrid import Interval, read_textgrid


def ids_of(symbols):
    return ["<bos>", "<lang>", *symbols, "<eos>"]


def test_pauses_go_to_punctuation_and_silences_to_the_markers():
    symbols = phonemize("Hello, world.")  # h ə l ˈoʊ , ␣ w ˈɜː l d .
    words = [
        Interval(0, 0.2, ""),
        Interval(0.2, 0.6, "hello"),
        Interval(0.6, 0.9, "sil"),
        Interval(0.9, 1.3, "world"),
    ]
    durations = symbol_durations(symbols, words, None, frames=75, frame_rate=50)
    assert durations is not None and durations.sum() == 75 and len(durations) == len(symbols) + 3
    said = dict(zip(ids_of(symbols), durations.tolist(), strict=True))
    assert said["<bos>"] == 10 and said["<lang>"] == 0  # 0.2 s of silence before the first word
    assert said[","] == 15 and said[" "] == 0  # the comma holds the 0.3 s pause
    assert said["<eos>"] == 75 - 65  # from the last word's end (1.3 s) to the last frame
    spans = np.cumsum(durations)
    hello_phones = [i + 2 for i, s in enumerate(symbols[:4])]
    assert spans[hello_phones[-1]] == 30 and spans[hello_phones[0] - 1] == 10  # "hello" is 0.2–0.6 s


def test_words_espeak_joins_are_paired_with_the_aligners_separate_words():
    symbols = phonemize("Sit in the car")
    groups = "".join(symbols).split(" ")
    assert len(groups) == 3, groups  # espeak-ng says "in the" as one word
    words = [
        Interval(0.0, 0.3, "sit"),
        Interval(0.3, 0.45, "in"),
        Interval(0.45, 0.6, "the"),
        Interval(0.6, 1.0, "car"),
    ]
    durations = symbol_durations(symbols, words, None, frames=50, frame_rate=50)
    assert durations is not None
    ends = np.cumsum(durations)
    last_of = [i + 2 for i, s in enumerate(symbols) if i + 1 == len(symbols) or symbols[i + 1] == " "]
    assert ends[last_of].tolist() == [15, 30, 50]  # sit | in the | car


def test_festival_corpus_writes_its_timings_and_speed_variants_scale_them(aligned_corpus):
    corpus, _, _ = aligned_corpus
    plain = sorted((corpus / "builtin" / "plain").glob("*.TextGrid"))
    slower = sorted((corpus / "builtin" / "slower").glob("*.TextGrid"))
    assert len(plain) == len(slower) == 3
    for a, b in zip(plain, slower, strict=True):
        words_a = [w for w in read_textgrid(a)["words"] if w.text]
        words_b = [w for w in read_textgrid(b)["words"] if w.text]
        text = a.with_suffix(".txt").read_text().lower()
        assert [w.text.lower() for w in words_a] == [w.text.lower() for w in words_b]
        assert all(w.text.lower() in text for w in words_a)
        assert words_b[-1].end == pytest.approx(words_a[-1].end / 0.9, rel=1e-3)


def test_prepare_stores_frames_per_text_id_that_follow_the_words(aligned_corpus, tiny_codec):
    corpus, output, index = aligned_corpus
    assert all(row.aligned for row in index.samples) and len(index.samples) == 6
    rate = tiny_codec.info.frame_rate
    for shard in index.shard_paths():
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name in [n for n in members if n.endswith(".durations.npy")]:
            key = name[: -len(".durations.npy")]
            durations = np.load(io.BytesIO(members[name]))
            codes = np.load(io.BytesIO(members[key + ".codes.npy"]))
            symbols = json.loads(members[key + ".phonemes.json"])["symbols"]
            assert durations.sum() == codes.shape[1] and len(durations) == len(symbols) + 3
            said = frame_symbols(durations)
            assert (np.diff(said) >= 0).all()  # read once, in order
            # the first phone starts where festival's first word does (within a frame)
            grid = corpus / "builtin" / key.split("/")[1] / (key.split("/")[2] + ".TextGrid")
            first_word = next(w for w in read_textgrid(grid)["words"] if w.text)
            assert abs(int(np.argmax(said >= 2)) - first_word.start * rate) <= 1.0


def test_audio_without_a_textgrid_is_prepared_unaligned(tiny_shards):
    from valle.data.index import ShardIndex

    index = ShardIndex.load(tiny_shards)
    assert not any(row.aligned for row in index.samples)


def _even_words(text: str, seconds: float) -> list[Interval]:
    words = text.split()
    return [
        Interval(i * seconds / len(words), (i + 1) * seconds / len(words), w) for i, w in enumerate(words)
    ]


# A TextGrid beside the audio is optional: one that cannot be used leaves its utterance unaligned (listed
# with the reason), never stops the run. Each case writes one TextGrid for one real recording.
TEXTGRID_CASES = {
    "Word": None,  # another aligner's tier name, read regardless of case
    "segments": "TextGrid without a words tier",
    "truncated": "unreadable TextGrid",
    "too long": "TextGrid not of this utterance",  # 20 s of words on a shorter file
    "other sentence": "TextGrid not of this utterance",
}


def test_unusable_textgrids_leave_their_utterance_unaligned_and_are_listed(tmp_path, tiny_codec):
    import shutil

    import soundfile as sf

    from tests.conftest import prepare_settings, real_speech_dir
    from valle.data.prepare import prepare, summarize
    from valle.utils.textgrid import write_textgrid

    folder = tmp_path / "corpus" / "lj" / "reader"
    folder.mkdir(parents=True)
    wav = sorted(real_speech_dir().glob("*.wav"))[0]
    text, seconds = wav.with_suffix(".txt").read_text().strip(), sf.info(wav).duration
    for n, case in enumerate(TEXTGRID_CASES):
        stem = f"u{n}"
        shutil.copy(wav, folder / f"{stem}.wav")
        (folder / f"{stem}.txt").write_text(text)
        words = _even_words("the cat sat on a mat" if case == "other sentence" else text, seconds)
        end = 20.0 if case == "too long" else seconds
        words = [Interval(w.start * end / seconds, w.end * end / seconds, w.text) for w in words]
        grid = folder / f"{stem}.TextGrid"
        tier = case if case in ("Word", "segments") else "words"
        write_textgrid(grid, {tier: words}, end=end)
        if case == "truncated":
            grid.write_text(grid.read_text()[:300])
    result = prepare(prepare_settings(tmp_path / "corpus", tmp_path / "shards"), tiny_codec, tiny_codec.info)
    assert result.index is not None
    aligned = {row.key.split("/")[-1] for row in result.index.samples if row.aligned}
    reasons = {Path(u["path"]).stem: u["reason"] for u in result.index.unaligned}
    assert aligned == {"u0"}
    assert reasons == {f"u{n}": r for n, r in enumerate(TEXTGRID_CASES.values()) if r}
    assert "kept unaligned: 4" in summarize(result)


def test_shard_durations_that_do_not_fit_the_sample_are_refused():
    import io

    from valle.data.shards import ShardSample, decode_sample
    from valle.errors import ConfigError

    sample = ShardSample(
        "g/s/1", np.zeros((2, 10), np.int16), ["a", "b"], "ab", {"speaker": "s"}, np.array([1, 2, 3, 4, 5])
    )
    raw = {}
    for name, value in sample.to_wds().items():
        if name.endswith(".npy") or name == "codes.npy" or name == "durations.npy":
            buffer = io.BytesIO()
            np.save(buffer, value)
            raw[name] = buffer.getvalue()
        elif name == "__key__":
            raw[name] = value
        else:
            raw[name] = (json.dumps(value) if not isinstance(value, str) else value).encode()
    with pytest.raises(
        ConfigError, match="durations.npy has 5 entries summing to 15, expected 5 summing to the 10"
    ):
        decode_sample(raw)
