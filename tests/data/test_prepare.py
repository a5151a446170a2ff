from __future__ import annotations

import json
import math
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import webdataset as wds

from tests.conftest import prepare_settings
from tests.data.test_readers import ljspeech_layout
from tests.helpers.codes import assert_codes_match_up_to_near_ties, codec_latents, quantizer_for
from valle.codecs import describe_codec
from valle.data.index import ShardIndex
from valle.data.prepare import PrepareResult, prepare, summarize
from valle.data.shards import decode_sample


def read_all(shards: Path) -> dict:
    index = ShardIndex.load(shards)
    samples = wds.WebDataset(index.shard_paths(), shardshuffle=False, empty_check=False)
    return {s.key: s for s in map(decode_sample, samples)}


def test_index_matches_the_audio(tiny_corpus, tiny_shards, tiny_codec):
    index = ShardIndex.load(tiny_shards)
    assert len(index.samples) == 15 and len(index.shards) > 1
    assert index.codec == tiny_codec.info
    samples = read_all(tiny_shards)
    assert sorted(samples) == sorted(row.key for row in index.samples)
    for row in index.samples:
        wav = tiny_corpus / row.group / row.speaker / (row.key.rsplit("/", 1)[1] + ".wav")
        info = sf.info(str(wav))
        seconds = info.frames / info.samplerate
        expected_frames = math.ceil(round(seconds * tiny_codec.sample_rate) / tiny_codec.hop_length)
        assert abs(row.frames - expected_frames) <= 1
        assert abs(row.duration - seconds) < 0.03
        sample = samples[row.key]
        assert sample.codes.dtype == np.int16 and sample.codes.shape == (tiny_codec.n_levels, row.frames)
        assert sample.text == wav.with_suffix(".txt").read_text().strip()
        assert len(sample.symbols) == row.n_phonemes
        assert all(s in index.symbols for s in sample.symbols)


def test_shard_codes_match_the_codec_encoding_of_the_file(tiny_corpus, tiny_shards, tiny_codec):
    row = ShardIndex.load(tiny_shards).samples[0]
    wav, rate = sf.read(
        str(tiny_corpus / row.group / row.speaker / (row.key.rsplit("/", 1)[1] + ".wav")), dtype="float32"
    )
    import torch

    direct = tiny_codec.encode(torch.from_numpy(wav), rate)
    stored = torch.from_numpy(read_all(tiny_shards)[row.key].codes.astype(np.int64))
    # prepare encodes batches of up to `batch_seconds`; a larger batch takes other float kernels, and
    # a frame lying almost exactly between two codebook entries can flip (tests/helpers/codes.py).
    latents = codec_latents(tiny_codec, torch.from_numpy(wav), rate)
    assert_codes_match_up_to_near_ties(quantizer_for(tiny_codec), direct, stored, latents)


def test_shards_keep_each_speakers_utterances_together(tiny_shards):
    rows = ShardIndex.load(tiny_shards).samples
    assert [r.key for r in rows] == sorted(r.key for r in rows)
    for shard in {r.shard for r in rows}:
        names = [
            m
            for m in tarfile.open(Path(tiny_shards) / shard).getnames()
            if m.endswith(".json") and not m.endswith(".phonemes.json")
        ]
        assert names == sorted(names)


def test_rerun_skips_finished_shards_and_redoes_only_missing_ones(shards_copy, tiny_corpus, tiny_codec):
    before = {p.name: p.stat().st_mtime_ns for p in shards_copy.glob("shard-*.tar")}
    again = prepare(prepare_settings(tiny_corpus, shards_copy), tiny_codec, tiny_codec.info)
    assert again.shards_written == 0 and again.shards_skipped_done == len(before)
    # An interrupted run: shard 1 never got its manifest, and a temporary file lies around.
    (shards_copy / "shard-000001.json").unlink()
    (shards_copy / ".shard-000001.tar.999.tmp").write_bytes(b"half a shard")
    resumed = prepare(prepare_settings(tiny_corpus, shards_copy), tiny_codec, tiny_codec.info)
    assert resumed.shards_written == 1
    after = {p.name: p.stat().st_mtime_ns for p in shards_copy.glob("shard-*.tar")}
    assert [n for n in before if before[n] != after[n]] == ["shard-000001.tar"]
    assert len(resumed.index.samples) == 15


def test_parts_split_the_shards_and_the_last_one_writes_the_index(tiny_corpus, tiny_codec, tmp_path):
    first = prepare(prepare_settings(tiny_corpus, tmp_path, part="0/2"), tiny_codec, tiny_codec.info)
    assert first.index is None and first.shards_pending > 0
    assert not (tmp_path / "index.json").exists()
    second = prepare(prepare_settings(tiny_corpus, tmp_path, part="1/2"), tiny_codec, tiny_codec.info)
    assert second.shards_pending == 0 and second.index is not None
    assert first.shards_written + second.shards_written == len(second.index.shards)
    assert len(second.index.samples) == 15


def test_a_changed_corpus_cannot_reuse_an_output_folder(shards_copy, tiny_corpus, tiny_codec, tmp_path):
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "c"))
    next(corpus.rglob("*.wav")).unlink()
    with pytest.raises(ValueError, match="prepared from another corpus"):
        prepare(prepare_settings(corpus, shards_copy), tiny_codec, tiny_codec.info)


def test_bad_inputs_are_skipped_and_listed(tiny_corpus, tiny_codec, tmp_path):
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "c"))
    speaker = next(p for p in (corpus / "builtin").iterdir())
    rate = 22050
    cases = {
        "silent": (np.zeros(rate * 2, dtype=np.float32), "Silence here."),
        "short": (np.random.default_rng(0).uniform(-0.5, 0.5, rate // 10).astype(np.float32), "Too short."),
        "long": (np.random.default_rng(0).uniform(-0.5, 0.5, rate * 40).astype(np.float32), "Too long."),
        "notext": (np.random.default_rng(0).uniform(-0.5, 0.5, rate).astype(np.float32), "..."),
    }
    for name, (wav, text) in cases.items():
        sf.write(str(speaker / f"{name}.wav"), wav, rate)
        (speaker / f"{name}.txt").write_text(text)
    (speaker / "garbage.wav").write_bytes(b"not audio at all")
    (speaker / "garbage.txt").write_text("Garbage in.")
    sf.write(str(speaker / "orphan.wav"), cases["notext"][0], rate)  # no transcript
    sf.write(str(speaker / "cut.wav"), cases["notext"][0], rate, subtype="PCM_16")
    whole = (speaker / "cut.wav").read_bytes()
    (speaker / "cut.wav").write_bytes(whole[: len(whole) // 2])  # a copy that stopped half-way
    (speaker / "cut.txt").write_text("Said in full, heard in half.")
    piped = bytearray(whole)  # what a writer to a pipe leaves: the data size unknown (0xFFFFFFFF)
    piped[40:44] = b"\xff\xff\xff\xff"
    (speaker / "piped.wav").write_bytes(bytes(piped))
    (speaker / "piped.txt").write_text("Kept, its length unknown to its writer.")

    result = prepare(prepare_settings(corpus, tmp_path / "out"), tiny_codec, tiny_codec.info)
    reasons = {Path(s["path"]).stem: s["reason"] for s in result.index.skipped}
    assert reasons == {
        "silent": "bad audio",
        "short": "too short",
        "long": "too long",
        "notext": "empty transcript",
        "garbage": "unreadable",
        "orphan": "missing transcript",
        "cut": "truncated",
    }
    assert len(result.index.samples) == 16  # the corpus's 15 and piped.wav
    summary = summarize(result)
    assert (
        "skipped: 7" in summary
        and "promises 1.00 s of audio, the file holds 0.50 s" in summary
        and "orphan.wav" in summary
        and "silent audio" in summary
    )


def test_a_long_skipped_list_says_how_many_more_and_where(tmp_path):
    skipped = [{"path": f"a{n}.wav", "reason": "too short", "detail": "0.10 s"} for n in range(25)]
    summary = summarize(PrepareResult(tmp_path, 0, 0, 0, skipped=skipped))
    assert "a19.wav" in summary and "a20.wav" not in summary
    assert "… and 5 more" in summary


def test_real_speech_in_ljspeech_layout(tiny_codec, tmp_path):
    corpus = ljspeech_layout(tmp_path / "LJSpeech")
    result = prepare(
        prepare_settings(corpus, tmp_path / "out", layout="ljspeech", max_shard_mb=64),
        tiny_codec,
        tiny_codec.info,
    )
    index = result.index
    assert len(index.shards) == 1 and len(index.samples) == 4
    durations = {row.key.rsplit("/", 1)[1]: row.duration for row in index.samples}
    assert durations["LJ049-0124"] == pytest.approx(3.44, abs=0.02)
    assert durations["LJ049-0110"] == pytest.approx(9.12, abs=0.02)
    assert 0.0 < index.hours() < 0.01


def test_unknown_language_stops_before_any_work(tiny_corpus, tiny_codec, tmp_path):
    with pytest.raises(ValueError, match="unknown language 'english'"):
        prepare(prepare_settings(tiny_corpus, tmp_path, language="english"), tiny_codec, tiny_codec.info)
    assert not list(tmp_path.glob("shard-*"))


# --- the codec a folder is prepared with (plan, manifests, index) ------------------------------------------


def test_plan_manifests_and_index_record_the_codec_with_its_weights(tiny_shards, tiny_codec):
    recorded = tiny_codec.info.to_dict()
    assert recorded["weights"] == "random:seed=0"
    assert json.loads((tiny_shards / "plan.json").read_text())["codec"] == recorded
    for manifest in tiny_shards.glob("shard-*.json"):
        assert json.loads(manifest.read_text())["codec"] == recorded
    assert ShardIndex.load(tiny_shards).codec.weights == "random:seed=0"


def test_resuming_with_other_codec_settings_or_weights_is_refused(
    shards_copy, tiny_corpus, tiny_codec, tmp_path
):
    index_before = (shards_copy / "index.json").read_bytes()
    (shards_copy / "shard-000001.json").unlink()  # an interrupted run, resumed with another codec
    other_weights = tmp_path / "encodec.th"
    torch.save(tiny_codec.model.state_dict(), other_weights)
    for info in (
        describe_codec("encodec", bandwidth_kbps=3, weights="random"),
        describe_codec("encodec", bandwidth_kbps=1.5, weights=str(other_weights)),
    ):
        with pytest.raises(ValueError) as error:
            prepare(prepare_settings(tiny_corpus, shards_copy), None, info)
        message = str(error.value)
        assert (
            "plan.json: prepared with codec encodec 1.5kbps (2 levels, 24000 Hz, weights random:seed=0) "
            f"but this run uses {info.summary()}; rerun with the codec settings" in message
        )
        assert "\n" not in message
    assert (shards_copy / "index.json").read_bytes() == index_before  # the index keeps its codec


def test_a_part_with_another_codec_is_refused_by_the_manifests(shards_copy, tiny_corpus):
    (shards_copy / "plan.json").unlink()  # even without the plan, each finished shard names its codec
    (shards_copy / "shard-000001.json").unlink()
    with pytest.raises(
        ValueError,
        match=r"shard-000000\.json: prepared with codec encodec 1\.5kbps .* but this "
        r"run uses encodec 1\.5kbps \(2 levels, 24000 Hz, weights pretrained\)",
    ):
        prepare(
            prepare_settings(tiny_corpus, shards_copy, part="1/2"),
            None,
            describe_codec("encodec", bandwidth_kbps=1.5, weights="pretrained"),
        )
    assert not (shards_copy / "plan.json").exists()  # a refused run leaves no plan that would refuse the next


def test_folders_from_before_codecs_were_recorded_still_resume(shards_copy, tiny_corpus, tiny_codec, caplog):
    for path in [shards_copy / "plan.json", *shards_copy.glob("shard-*.json")]:
        data = json.loads(path.read_text())
        data.pop("codec")
        path.write_text(json.dumps(data))
    result = prepare(prepare_settings(tiny_corpus, shards_copy), tiny_codec, tiny_codec.info)
    assert result.shards_written == 0 and len(result.index.samples) == 15
    assert "plan.json records no codec" in caplog.text


# --- symbols a fixed symbol map lacks ----------------------------------------------------------------------


def test_unknown_symbols_are_counted_per_shard_in_manifests_and_summary(tmp_path):
    from tests.data.test_seed_import import _artifact, _codes, _write_seed_file
    from valle.text.symbols import SymbolMap

    texts = {"a": "Hello there.", "b": "A second sentence.", "c": "Third."}
    for name, text in texts.items():
        _write_seed_file(
            tmp_path / "seed" / "g" / "s" / f"{name}.enc", _artifact(_codes(frames=60), text=text)
        )
    SymbolMap(languages=["en-us"], phonemes=["h"]).save(tmp_path / "symbols.json")  # knows almost nothing
    settings = prepare_settings(
        tmp_path / "seed",
        tmp_path / "out",
        layout="seed",
        max_shard_mb=0.006,
        symbols=str(tmp_path / "symbols.json"),
    )

    result = prepare(settings, None, describe_codec("encodec", weights="pretrained"))

    index = result.index
    assert len(index.shards) == 3  # one utterance each
    summary = summarize(result)
    for shard in index.shards:
        [row] = [r for r in index.samples if r.shard == shard["name"]]
        sample = read_all(tmp_path / "out")[row.key]
        expected = sum(symbol != "h" for symbol in sample.symbols)
        manifest = json.loads((tmp_path / "out" / shard["name"].replace(".tar", ".json")).read_text())
        assert sum(manifest["unknown_symbols"].values()) == expected > 0
        assert shard["unknown_symbols"] == manifest["unknown_symbols"]
        assert f"  {shard['name']}: {expected} (" in summary
    total = sum(sum(s["unknown_symbols"].values()) for s in index.shards)
    assert (
        f"unknown symbols (read as <unk> in training; prepare with a symbol map that has them, or without "
        f"symbols=): {total} in 3 shards" in summary
    )
