from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.data.test_prepare import read_all
from valle.data.batching import batch_by_tokens, bucket_boundaries, padding_fraction, split_count
from valle.data.datamodule import DataConfig, ValleDataModule
from valle.data.index import ShardIndex
from valle.data.training_prompts import PromptConfig
from valle.text.symbols import SymbolMap


def datamodule(root: Path, **overrides) -> ValleDataModule:
    defaults = dict(
        root=str(root),
        num_workers=0,
        max_tokens=3000,
        val_speakers=1,
        val_utterances=2,
        shuffle_buffer=8,
        prompt=PromptConfig(min_seconds=0.5, max_seconds=1.0),
    )
    dm = ValleDataModule(DataConfig(**{**defaults, **overrides}))
    dm.setup()
    return dm


def epoch_keys(loader) -> list[str]:
    return [key for batch in loader for key in batch.keys]


def test_batches_are_padded_and_carry_prompts(tiny_shards):
    dm = datamodule(tiny_shards)
    batch = next(iter(dm.train_dataloader()))
    b, cond = batch.size, batch.cond
    levels = dm.codec_info.n_levels
    assert cond.text.shape[0] == b and batch.codes.shape[:2] == (b, levels)
    assert cond.prompt.shape[:2] == (b, levels)
    for i in range(b):
        n, t, p = (int(x[i]) for x in (cond.text_lengths, batch.code_lengths, cond.prompt_lengths))
        assert cond.text[i, 0] == dm.symbols.id("<bos>") and cond.text[i, n - 1] == dm.symbols.id("<eos>")
        assert (cond.text[i, n:] == dm.symbols.pad_id).all()
        assert (batch.codes[i, :, t:] == 0).all() and 0 < p <= round(1.0 * dm.codec_info.frame_rate)
    assert batch.n_padded_tokens >= batch.n_tokens > 0


def test_prompt_is_another_utterance_of_the_same_speaker(tiny_shards):
    dm = datamodule(tiny_shards)
    stored = read_all(tiny_shards)
    for batch in dm.train_dataloader():
        for i, (key, prompt_key) in enumerate(zip(batch.keys, batch.prompt_keys, strict=True)):
            assert prompt_key != key and prompt_key.rsplit("/", 1)[0] == key.rsplit("/", 1)[0]
            p = int(batch.cond.prompt_lengths[i])
            crop = batch.cond.prompt[i, :, :p].numpy()
            source = stored[prompt_key].codes.astype(np.int64)
            assert any((source[:, s : s + p] == crop).all() for s in range(source.shape[1] - p + 1))
            t = int(batch.code_lengths[i])
            np.testing.assert_array_equal(batch.codes[i, :, :t].numpy(), stored[key].codes)


def test_prefix_mode_splits_one_utterance_into_prompt_and_target(tiny_shards):
    dm = datamodule(tiny_shards, prompt=PromptConfig(mode="prefix", min_seconds=0.5, max_seconds=1.0))
    stored = read_all(tiny_shards)
    batch = next(iter(dm.train_dataloader()))
    for i, key in enumerate(batch.keys):
        p, t = int(batch.cond.prompt_lengths[i]), int(batch.code_lengths[i])
        joined = np.concatenate([batch.cond.prompt[i, :, :p].numpy(), batch.codes[i, :, :t].numpy()], axis=1)
        np.testing.assert_array_equal(joined, stored[key].codes)
        assert batch.prompt_keys[i] == key


def test_prefix_share_mixes_prefix_and_sibling_prompts(tiny_shards):
    prompt = PromptConfig(min_seconds=0.5, max_seconds=1.0, prefix_share=0.5)
    keys = [
        (k, p)
        for batch in datamodule(tiny_shards, prompt=prompt).train_dataloader()
        for k, p in zip(batch.keys, batch.prompt_keys, strict=True)
    ]
    own = sum(k == p for k, p in keys)
    assert 0 < own < len(keys)  # 12 samples at 0.5 each: both kinds (all-one-kind odds: 2 in 4096)
    with pytest.raises(ValueError, match="prefix_share"):
        PromptConfig(prefix_share=1.5)


def test_validation_split_is_disjoint_and_holds_out_a_whole_speaker(tiny_shards):
    dm = datamodule(tiny_shards)
    train = epoch_keys(dm.train_dataloader())
    val = epoch_keys(dm.val_dataloader())
    assert sorted(val) == sorted(dm.split.val_keys) and not set(train) & set(val)
    assert len(train) + len(val) == 15
    held_out = dm.split.val_speakers[0]
    assert not any(held_out in key for key in train)
    assert sum(held_out in key for key in val) == 5 and len(val) == 7


def test_each_epoch_reads_every_training_sample_once_and_reshuffles(tiny_shards):
    loader = datamodule(tiny_shards, num_workers=2).train_dataloader()
    first, second = epoch_keys(loader), epoch_keys(loader)
    assert Counter(first) == Counter(second) and max(Counter(first).values()) == 1
    assert len(first) == 15 - 7  # 5 utterances of the held-out speaker and 2 held-out ones
    assert first != second


def test_token_budget_holds_and_buckets_cut_padding(tiny_shards):
    dm = datamodule(tiny_shards, max_tokens=1200, val_speakers=0, val_utterances=0)
    batches = list(dm.train_dataloader())
    assert all(b.n_padded_tokens <= 1200 or len(b.keys) == 1 for b in batches)
    rng = random.Random(0)
    lengths = [rng.randint(50, 1000) for _ in range(2000)]

    def as_batches(bounds):
        return [
            SimpleNamespace(n_tokens=sum(b), n_padded_tokens=max(b) * len(b))  # what padding_fraction reads
            for b in batch_by_tokens(lengths, int, bounds, 4000, 64)
        ]

    bucketed = padding_fraction(as_batches(bucket_boundaries(lengths, 8)))
    single = padding_fraction(as_batches([]))
    assert bucketed < 0.1 < single


def test_fixed_length_resampled_epochs(tiny_shards):
    dm = datamodule(tiny_shards, batches_per_epoch=5, max_tokens=600)
    assert len(list(dm.train_dataloader())) == 5


def test_corrupt_shard_is_skipped_with_a_warning_and_counted(shards_copy, caplog):
    index = ShardIndex.load(shards_copy)
    victim = shards_copy / index.shards[1]["name"]
    victim.write_bytes(victim.read_bytes()[:700] + b"\x00garbage" * 50)
    dm = datamodule(shards_copy, val_speakers=0, val_utterances=0, max_skip_fraction=0.5)  # 4 of 15 lost
    keys = epoch_keys(dm.train_dataloader())
    lost = {r.key for r in index.samples if r.shard == victim.name}
    assert set(keys) <= {r.key for r in index.samples} - lost | {sorted(lost)[0]}
    assert len(keys) >= 15 - len(lost)
    assert dm.errors.count >= 1 and victim.name in caplog.text


def test_empty_index_and_too_many_validation_speakers_are_refused(shards_copy):
    with pytest.raises(ValueError, match="val_speakers=3 but the index has 3 speakers"):
        datamodule(shards_copy, val_speakers=3)
    index = ShardIndex.load(shards_copy)
    index.samples = []
    index.save(shards_copy)
    with pytest.raises(ValueError, match="lists no samples"):
        datamodule(shards_copy)
    with pytest.raises(FileNotFoundError, match="run `python prepare.py"):
        datamodule(shards_copy / "nowhere")


def test_shards_from_globs_brace_lists_and_pipes(tiny_shards):
    names = sorted(p.name for p in Path(tiny_shards).glob("shard-*.tar"))
    last = names[-1].removeprefix("shard-").removesuffix(".tar")
    sources = [
        f"{tiny_shards}/shard-*.tar",
        f"{tiny_shards}/shard-{{000000..{last}}}.tar",
        f"pipe:cat {tiny_shards}/shard-{{000000..{last}}}.tar",
    ]
    expected = {r.key for r in ShardIndex.load(tiny_shards).samples}
    for source in sources:
        dm = datamodule(tiny_shards, shards=source, val_speakers=0, val_utterances=0)
        assert set(epoch_keys(dm.train_dataloader())) == expected, source


def test_shards_override_that_matches_nothing_is_an_error(tiny_shards):
    dm = datamodule(tiny_shards, shards=f"{tiny_shards}/nothing-*.tar")
    with pytest.raises(ValueError, match="matches no shard"):
        dm.train_dataloader()


def test_validation_passes_give_every_utterance_the_same_prompt(tiny_shards):
    loader = datamodule(tiny_shards, num_workers=2).val_dataloader()  # fit keeps one loader for every pass
    first, second = list(loader), list(loader)
    assert [b.keys for b in first] == [b.keys for b in second]
    assert [b.prompt_keys for b in first] == [b.prompt_keys for b in second]
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.cond.prompt, b.cond.prompt) and torch.equal(a.codes, b.codes)


def drop_symbol(shards: Path) -> str:
    """Remove the most frequent phoneme from the index's symbol map (as a fixed `symbols=` map lacking it
    would); returns it."""
    counts = Counter(x for s in read_all(shards).values() for x in s.symbols if x != " ")
    symbol = counts.most_common(1)[0][0]
    index = ShardIndex.load(shards)
    index.symbols = SymbolMap(
        languages=index.symbols.languages, phonemes=[p for p in index.symbols.phonemes if p != symbol]
    )
    index.save(shards)
    return symbol


def test_batches_count_the_symbols_read_as_unk(shards_copy):
    symbol = drop_symbol(shards_copy)
    occurrences = sum(s.symbols.count(symbol) for s in read_all(shards_copy).values())
    dm = datamodule(shards_copy, val_speakers=0, val_utterances=0, num_workers=2)
    batches = list(dm.train_dataloader())
    assert sum(b.unknown_symbols.get(symbol, 0) for b in batches) == occurrences > 0
    assert all(set(b.unknown_symbols) == {symbol} for b in batches if b.unknown_symbols)


def test_speakers_with_a_single_utterance_are_counted_in_a_warning(shards_copy, caplog):
    index = ShardIndex.load(shards_copy)
    index.samples[0].speaker = "solo"  # the index now lists a speaker with one utterance
    index.save(shards_copy)
    with caplog.at_level("WARNING"):
        datamodule(shards_copy, val_speakers=0, val_utterances=0)
    assert "1 of 4 training speakers have a single utterance" in caplog.text
    caplog.clear()
    datamodule(shards_copy, val_speakers=0, val_utterances=0, prompt=PromptConfig(mode="prefix"))
    assert "single utterance" not in caplog.text  # prefix prompts are what prefix mode asks for


def test_split_count_is_proportional_and_sums_to_the_total():
    assert split_count(10, [3, 1, 1]) == [6, 2, 2]
    assert split_count(5, [1, 1]) in ([3, 2], [2, 3]) and sum(split_count(7, [5, 0, 2])) == 7
    assert split_count(4, [0, 0]) == [4, 0] and split_count(0, [2, 3]) == [0, 0]
