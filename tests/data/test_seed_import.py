"""The seed's .enc/.dac pickles and HDF5 files → Utterance records, codes untouched."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from valle.data import seed_import
from valle.data.readers import MissingTranscript, read_corpus
from valle.data.records import Utterance
from valle.data.seed_import import read_seed, seed_codec_hint, split_phoneme_string


def _codes(levels: int = 8, frames: int = 50, seed: int = 0) -> np.ndarray:
    # As the seed writes them: uint16 [1, levels, frames], values below the codebook size.
    return np.random.default_rng(seed).integers(0, 1024, size=(1, levels, frames)).astype(np.uint16)


def _write_seed_file(path: Path, artifact: object) -> Path:
    # Through an open handle, as the seed does: np.save on a str path would append ".npy".
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.save(handle, artifact, allow_pickle=True)
    return path


def _artifact(codes: np.ndarray | None = None, **metadata: object) -> dict:
    return {"codes": _codes() if codes is None else codes, "metadata": metadata}


def _write_h5(path: Path, entries: dict[str, tuple[np.ndarray, dict]]) -> Path:
    # Written as the seed's create_dataset_hdf5 does: audio [T, L] int16 (lzf), text ids, attrs, symmap.
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for name, (audio, attrs) in entries.items():
            group = handle.create_group(name)
            group.create_dataset("audio", data=audio.astype(np.int16), compression="lzf")
            group.create_dataset("text", data=np.array([1, 5, 7, 2], dtype=np.uint8), compression="lzf")
            for attr, value in attrs.items():
                group.attrs[attr] = value
        handle.create_dataset("symmap", data=json.dumps({"<s>": 1, "</s>": 2, "a": 5}))
    return path


def _read(root: Path, language: str = "en-us") -> list[Utterance | MissingTranscript]:
    return list(read_seed(root, language))


def test_enc_with_full_metadata_imports_codes_text_and_duration(tmp_path):
    codes = _codes(frames=150)  # 2 s at 75 Hz, as original_length says
    path = _write_seed_file(
        tmp_path / "LibriTTS" / "1034" / "1034_121119_000001.enc",
        {
            "codes": codes,
            "metadata": {
                "original_length": 48_000,
                "sample_rate": 24_000,
                "text": " Hello there. ",
                "phonemes": "həlˈoʊ ðˈɛɹ.",
                "language": "en",
            },
        },
    )

    [utterance] = _read(tmp_path)

    assert isinstance(utterance, Utterance)
    assert utterance.key == "LibriTTS/1034/1034_121119_000001"
    assert (utterance.group, utterance.speaker) == ("LibriTTS", "1034")
    assert utterance.text == "Hello there."
    assert utterance.phonemes is None  # valle re-phonemizes the text with its own front end
    assert utterance.language == "en-us"  # the file's bare "en" agrees with, and yields to, "en-us"
    assert utterance.audio_path is None
    assert utterance.duration == pytest.approx(2.0)
    assert utterance.extra == {
        "source": str(path),
        "codec_hint": "encodec",
        "sample_rate": 24_000,
        "original_length": 48_000,
    }
    assert utterance.codes.dtype == np.int16
    np.testing.assert_array_equal(utterance.codes, codes[0])


def test_a_file_language_that_differs_from_the_argument_wins(tmp_path):
    _write_seed_file(tmp_path / "g/s/a.enc", _artifact(text="Hallo.", language="de"))

    [utterance] = _read(tmp_path, "en-us")

    assert utterance.language == "de"
    assert utterance.duration == pytest.approx(50 / 75)  # no sample count: frames at EnCodec's 75 Hz


def test_dac_file_keeps_its_dac_fields_as_json(tmp_path):
    # The fields DAC's own DACFile.save writes, plus the seed's text, phonemes and language.
    _write_seed_file(
        tmp_path / "g/s/a.dac",
        _artifact(
            _codes(levels=9, frames=86),
            original_length=44_100,
            sample_rate=44_100,
            input_db=np.array([-23.5], np.float32),
            chunk_length=86,
            channels=1,
            padding=True,
            dac_version="1.0.0",
            text="One second.",
            phonemes="wˈʌn sˈɛkənd.",
            language="en",
        ),
    )

    [utterance] = _read(tmp_path)

    assert utterance.extra["codec_hint"] == "dac"
    dac_fields = {
        "input_db": [-23.5],
        "chunk_length": 86,
        "channels": 1,
        "padding": True,
        "dac_version": "1.0.0",
    }
    assert {k: utterance.extra[k] for k in dac_fields} == dac_fields
    assert utterance.duration == pytest.approx(86 * 512 / 44_100)  # from the codes
    assert utterance.codes.shape == (9, 86)
    json.dumps(utterance.extra)  # it goes into the shard's json as it is


def test_dac_file_without_sample_count_uses_dac_frame_rate(tmp_path):
    _write_seed_file(tmp_path / "g/s/a.dac", _artifact(_codes(levels=9, frames=100), text="Hi."))

    [utterance] = _read(tmp_path)

    assert utterance.duration == pytest.approx(100 * 512 / 44_100)
    assert utterance.extra["sample_rate"] == 44_100


def test_old_files_without_metadata_take_the_transcript_beside_them(tmp_path):
    speaker = tmp_path / "old" / "spk"
    _write_seed_file(speaker / "a.enc", _codes(frames=75))  # the oldest: only the array
    (speaker / "a.txt").write_text("Plain transcript.\n", encoding="utf-8")
    _write_seed_file(speaker / "b.enc", {"codes": _codes(frames=30)})  # a dict without metadata
    (speaker / "b.normalized.txt").write_text("Normalized transcript.", encoding="utf-8")
    _write_seed_file(speaker / "c.enc", _codes(frames=30))  # with the seed's old separate metadata file
    (speaker / "c.json").write_text(json.dumps({"text": "From JSON.", "phonemes": "fɹʌm"}), encoding="utf-8")

    first, second, third = _read(tmp_path)

    assert (first.key, first.text, first.duration) == ("old/spk/a", "Plain transcript.", pytest.approx(1.0))
    assert (second.key, second.text) == ("old/spk/b", "Normalized transcript.")
    assert (third.key, third.text) == ("old/spk/c", "From JSON.")
    assert first.phonemes is None and "text_from" not in first.extra


def test_a_file_without_any_transcript_is_reported_missing(tmp_path):
    path = _write_seed_file(tmp_path / "g/s/lonely.enc", _artifact(sample_rate=24_000))

    [item] = _read(tmp_path)

    assert isinstance(item, MissingTranscript)
    assert item.audio_path == path
    assert "lonely.txt" in str(item)


def test_hdf5_skips_noise_keeps_the_split_and_transposes_codes(tmp_path):
    train_codes = _codes(frames=150, seed=1)[0]
    valid_codes = _codes(frames=75, seed=2)[0]
    _write_h5(
        tmp_path / "dataset.h5",
        {
            "training/LibriTTS/1034/u1": (
                train_codes.T,
                {"text": "Train me.", "phonemes": "tɹˈeɪn mˌiː.", "language": "en", "duration": 2.0},
            ),
            "validation/LibriTTS/1034/u2": (valid_codes.T, {"text": "Check me.", "duration": 1.0}),
            "noise/Noise/rain/n1": (_codes(seed=3)[0].T, {"duration": 0.66}),
        },
    )

    utterances = _read(tmp_path)

    assert [u.key for u in utterances] == ["LibriTTS/1034/u1", "LibriTTS/1034/u2"]
    train, valid = utterances
    assert [train.extra["split"], valid.extra["split"]] == ["training", "validation"]
    assert train.extra["source"] == f"{tmp_path / 'dataset.h5'}:/training/LibriTTS/1034/u1"
    assert (train.text, train.language, train.duration) == ("Train me.", "en-us", 2.0)
    assert train.codes.dtype == np.int16
    np.testing.assert_array_equal(train.codes, train_codes)  # [T, L] on disk → [L, T]
    np.testing.assert_array_equal(valid.codes, valid_codes)
    assert seed_codec_hint(utterances) == "encodec"  # guessed from 75 frames per second


def test_hdf5_codec_is_guessed_from_the_frame_rate(tmp_path):
    _write_h5(
        tmp_path / "dac.hdf5",
        {
            "training/g/s/a": (_codes(frames=172)[0].T, {"text": "Two seconds.", "duration": 2.0}),
            "training/g/s/b": (_codes(frames=86)[0].T, {"text": "No duration."}),
        },
    )

    first, second = _read(tmp_path)

    assert (first.extra["codec_hint"], first.extra["sample_rate"]) == ("dac", 44_100)
    assert second.extra["codec_hint"] is None and "sample_rate" not in second.extra


def test_hdf5_group_without_text_or_phonemes_is_reported_missing(tmp_path):
    _write_h5(tmp_path / "d.h5", {"training/g/s/a": (_codes()[0].T, {"duration": 0.66})})

    [item] = _read(tmp_path)

    assert isinstance(item, MissingTranscript)
    assert "training/g/s/a" in str(item)


def test_phonemes_only_metadata_gives_symbols_with_combining_marks_kept(tmp_path):
    _write_seed_file(tmp_path / "g/s/a.enc", _artifact(phonemes="ðə  kæ̃t"))
    _write_seed_file(tmp_path / "g/s/b.enc", _artifact(phonemes=["h", "ˈɛ", "l"]))

    first, second = _read(tmp_path)

    assert first.phonemes == ["ð", "ə", " ", "k", "æ̃", "t"]
    assert (first.text, first.extra["text_from"]) == ("", "phonemes")
    assert second.phonemes == ["h", "ˈɛ", "l"]  # a list is already symbols


def test_split_phoneme_string_keeps_ties_and_drops_language_flags():
    expected = ["t͡ʃ", "ˈ", "i", "ː", "z", " ", "b", "ɹ", "ˈ", "ɛ", "d"]
    assert split_phoneme_string("t͡ʃˈiːz (en)bɹˈɛd(de) ") == expected
    assert split_phoneme_string("n̩ a") == ["n̩", " ", "a"]


def test_codes_round_trip_exactly_through_both_layouts(tmp_path):
    codes = np.array([[0, 1023, 512], [7, 8, 9]], dtype=np.uint16)  # extremes of a 1024-entry codebook
    _write_seed_file(tmp_path / "files" / "g" / "s" / "a.enc", {"codes": codes, "metadata": {"text": "x"}})
    _write_h5(tmp_path / "h5" / "d.h5", {"training/g/s/a": (codes.T, {"text": "x"})})

    [from_file] = _read(tmp_path / "files")
    [from_h5] = _read(tmp_path / "h5")

    for utterance in (from_file, from_h5):
        assert utterance.codes.dtype == np.int16
        np.testing.assert_array_equal(utterance.codes, codes.astype(np.int16))


def test_files_with_different_level_counts_are_an_error_naming_both(tmp_path):
    _write_seed_file(tmp_path / "g" / "s" / "a.enc", {"codes": _codes(levels=4), "metadata": {"text": "a"}})
    _write_seed_file(tmp_path / "g" / "s" / "b.enc", {"codes": _codes(levels=8), "metadata": {"text": "b"}})

    with pytest.raises(ValueError, match=r"b\.enc has 8 levels but .*a\.enc has 4; import one codec setting"):
        _read(tmp_path)


def test_empty_and_unreadable_files_are_skipped_with_a_warning(tmp_path, caplog):
    _write_seed_file(tmp_path / "g/s/empty.enc", _artifact(np.zeros((1, 8, 0), np.uint16), text="e"))
    (tmp_path / "g" / "s" / "junk.enc").write_bytes(b"not numpy")
    _write_seed_file(tmp_path / "g/s/wide.enc", _artifact(np.full((1, 8, 3), 40_000, np.uint16), text="w"))
    _write_seed_file(tmp_path / "g" / "s" / "ok.enc", {"codes": _codes(), "metadata": {"text": "fine"}})

    with caplog.at_level(logging.WARNING, logger="valle.data.seed_import"):
        utterances = _read(tmp_path)

    assert [u.key for u in utterances] == ["g/s/ok"]
    assert "empty.enc: skipped, codes are empty" in caplog.text
    assert "junk.enc: skipped, not a NumPy file" in caplog.text
    assert "wide.enc: skipped, code values span 40000..40000, outside int16" in caplog.text


def test_unpickling_warns_once_that_untrusted_pickles_are_unsafe(tmp_path, caplog):
    seed_import._warn_pickles_unsafe.cache_clear()
    _write_seed_file(tmp_path / "g" / "s" / "a.enc", {"codes": _codes(), "metadata": {"text": "a"}})

    with caplog.at_level(logging.WARNING, logger="valle.data.seed_import"):
        _read(tmp_path)
        _read(tmp_path)

    assert sum("arbitrary code" in r.getMessage() for r in caplog.records) == 1


def test_mixing_enc_and_dac_is_an_error(tmp_path):
    _write_seed_file(tmp_path / "g" / "s" / "a.enc", {"codes": _codes(), "metadata": {"text": "a"}})
    _write_seed_file(tmp_path / "g" / "s" / "b.dac", {"codes": _codes(), "metadata": {"text": "b"}})

    with pytest.raises(ValueError, match="mixes EnCodec and DAC codes"):
        _read(tmp_path)


def test_seed_codec_hint_names_the_codec_and_rejects_a_mix():
    def utterance(hint: str | None, key: str) -> Utterance:
        return Utterance(
            key=key,
            speaker="s",
            group="g",
            text="t",
            language="en-us",
            extra={"codec_hint": hint, "source": f"/data/{key}"},
        )

    assert seed_codec_hint([utterance("dac", "a"), utterance(None, "b")]) == "dac"
    assert seed_codec_hint([utterance(None, "a")]) is None
    with pytest.raises(ValueError, match=r"mix codecs: dac \(e\.g\. /data/a\), encodec \(e\.g\. /data/b\)"):
        seed_codec_hint([utterance("dac", "a"), utterance("encodec", "b")])


def test_a_folder_without_seed_files_or_with_both_layouts_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no seed files found"):
        _read(tmp_path)
    _write_seed_file(tmp_path / "data" / "g" / "s" / "a.enc", {"codes": _codes(), "metadata": {"text": "a"}})
    _write_h5(tmp_path / "dataset.h5", {"training/g/s/a": (_codes()[0].T, {"text": "a"})})
    with pytest.raises(ValueError, match="both per-utterance files"):
        _read(tmp_path)


def test_read_corpus_seed_layout_end_to_end(tmp_path):
    _write_seed_file(tmp_path / "g" / "s2" / "b.enc", {"codes": _codes(), "metadata": {"text": "Second."}})
    _write_seed_file(tmp_path / "g" / "s1" / "a.enc", {"codes": _codes(), "metadata": {"text": "First."}})
    _write_seed_file(tmp_path / "g" / "s1" / "c.enc", {"codes": _codes(), "metadata": {}})

    utterances, missing = read_corpus("seed", tmp_path, "en-us")

    assert [u.key for u in utterances] == ["g/s1/a", "g/s2/b"]
    assert [u.text for u in utterances] == ["First.", "Second."]
    assert [m.audio_path.name for m in missing] == ["c.enc"]
    assert seed_codec_hint(utterances) == "encodec"


def test_prepare_imports_seed_files_into_shards_without_a_codec_model(tmp_path):
    from valle.codecs import describe_codec
    from valle.data.prepare import PrepareSettings, prepare
    from valle.data.shards import decode_sample

    originals = {}
    for speaker in ("s1", "s2"):
        for n in range(3):
            codes = _codes(seed=len(originals))
            originals[f"g/{speaker}/u{n}"] = codes[0].astype(np.int16)
            _write_seed_file(
                tmp_path / "seed" / "g" / speaker / f"u{n}.enc",
                _artifact(
                    codes,
                    text=f"Utterance number {n}.",
                    language="en",
                    original_length=24000,
                    sample_rate=24000,
                ),
            )
    info = describe_codec("encodec", bandwidth_kbps=6, weights="pretrained")  # nothing is downloaded
    settings = PrepareSettings(
        layout="seed",
        input=str(tmp_path / "seed"),
        output=str(tmp_path / "out"),
        language="en-us",
        num_workers=0,
    )
    index = prepare(settings, None, info).index
    assert sorted(r.key for r in index.samples) == sorted(originals)
    import webdataset as wds

    for sample in map(decode_sample, wds.WebDataset(index.shard_paths(), shardshuffle=False)):
        np.testing.assert_array_equal(sample.codes, originals[sample.key])
        assert sample.symbols[-1] == "." and sample.meta["codec_hint"] == "encodec"
    with pytest.raises(ValueError, match="hold encodec codes but codec=dac"):
        prepare(
            PrepareSettings(**{**vars(settings), "output": str(tmp_path / "o2")}),
            None,
            describe_codec("dac", n_levels=8),
        )
    with pytest.raises(ValueError, match=r"have \[8\] levels but codec 'encodec' is configured with 2"):
        prepare(
            PrepareSettings(**{**vars(settings), "output": str(tmp_path / "o3")}),
            None,
            describe_codec("encodec", bandwidth_kbps=1.5),
        )


def test_durations_come_from_the_codes_whatever_original_length_says(tmp_path):
    """The seed writes original_length in samples, in seconds (frames / 75), wrongly, or not at all."""
    from valle.codecs import describe_codec
    from valle.data.prepare import PrepareSettings, prepare, summarize

    frames = 150  # 2 s at EnCodec's 75 Hz
    lengths = {"samples": 48_000, "seconds": frames / 75, "bogus": 7, "missing": None}
    for name, length in lengths.items():
        metadata = {"text": f"The {name} case.", "sample_rate": 24_000, "language": "en"}
        if length is not None:
            metadata["original_length"] = length
        _write_seed_file(
            tmp_path / "seed" / "g" / "s" / f"{name}.enc", _artifact(_codes(frames=frames), **metadata)
        )
    settings = PrepareSettings(
        layout="seed", input=str(tmp_path / "seed"), output=str(tmp_path / "out"), num_workers=0
    )

    result = prepare(settings, None, describe_codec("encodec", weights="pretrained"))

    assert sorted(row.key for row in result.index.samples) == [f"g/s/{name}" for name in sorted(lengths)]
    assert {row.duration for row in result.index.samples} == {2.0}
    assert [note["key"] for note in result.length_notes] == ["g/s/bogus"]
    summary = summarize(result)
    assert "stored lengths that disagree with the codes (durations taken from the codes): 1" in summary
    assert "bogus.enc: original_length=7" in summary and "codes' 2.00 s" in summary


def test_length_disagreement_reads_samples_at_either_rate_or_seconds():
    from valle.data.seed_import import length_disagreement

    def check(**extra):
        return length_disagreement(extra, 2.0, 24_000)

    assert check(original_length=32_000, sample_rate=16_000) is None  # samples of a 16 kHz input file
    assert check(original_length=48_000, sample_rate=16_000) is None  # samples at the codec's rate
    assert check(original_length=2.0, sample_rate=24_000) is None  # seconds
    assert check(stored_duration=2.01) is None and check() is None
    assert "disagrees with the codes' 2.00 s" in check(original_length=30_000, sample_rate=24_000)
    assert "is not a length" in check(original_length="2 s")
    assert "is not a length" in check(original_length=float("nan"))
