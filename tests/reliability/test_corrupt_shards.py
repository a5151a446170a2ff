"""Damaged shards: training skips what it cannot read, names the shard, counts the skips, and stops
with an error when more than `data.max_skip_fraction` of the samples are lost."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.data.test_datamodule import datamodule, epoch_keys
from tests.training.conftest import cpu_trainer, tiny_module
from valle.data.index import ShardIndex
from valle.errors import UserError


def members(shard: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(shard) as tar:
        return tar.getmembers()


def flip(shard: Path, offset: int, n: int = 4) -> None:
    """Invert `n` bytes of `shard` from `offset` on."""
    data = bytearray(shard.read_bytes())
    data[offset : offset + n] = bytes(b ^ 0xFF for b in data[offset : offset + n])
    shard.write_bytes(bytes(data))


def cut_tar(shard: Path, key: str) -> None:
    """Cut the shard inside `key`'s codes (a copy interrupted mid-file)."""
    codes = next(m for m in members(shard) if m.name == f"{key}.codes.npy")
    shard.write_bytes(shard.read_bytes()[: codes.offset_data + 100])


def flip_codes(shard: Path, key: str) -> None:
    """Flip the high bytes of a few int16 codes of `key`: they leave the codebook's range."""
    codes = next(m for m in members(shard) if m.name == f"{key}.codes.npy")
    flip(shard, codes.offset_data + 128 + 1, n=1)  # past the 128-byte .npy header: one code's high byte


def flip_header(shard: Path, key: str) -> None:
    """Flip bytes in the tar header of `key`'s first member: the archive reads as ending there."""
    first = next(m for m in members(shard) if m.name.startswith(f"{key}."))
    flip(shard, first.offset + 10)


def drop_member(shard: Path, key: str) -> None:
    """Rewrite the shard without `key`'s codes."""
    buffer = io.BytesIO()
    with tarfile.open(shard) as source, tarfile.open(fileobj=buffer, mode="w") as target:
        for member in source.getmembers():
            if member.name != f"{key}.codes.npy":
                target.addfile(member, source.extractfile(member))
    shard.write_bytes(buffer.getvalue())


DAMAGE = {
    "cut tar": cut_tar,
    "flipped code bytes": flip_codes,
    "flipped header bytes": flip_header,
    "member missing": drop_member,
}


def damage(root: Path, how: str) -> tuple[str, set[str]]:
    """Damage the second sample of the second shard; returns the shard and the keys it can no longer give."""
    index = ShardIndex.load(root)
    shard = index.shards[1]["name"]
    keys = [row.key for row in index.samples if row.shard == shard]
    DAMAGE[how](root / shard, keys[1])
    lost = set(keys[1:]) if how in ("cut tar", "flipped header bytes") else {keys[1]}
    return shard, lost


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_training_skips_a_damaged_sample_names_its_shard_and_counts_it(how, shards_copy, caplog, tmp_path):
    shard, lost = damage(shards_copy, how)
    dm = datamodule(shards_copy, val_speakers=0, val_utterances=0, max_skip_fraction=0.5)
    keys = epoch_keys(dm.train_dataloader())
    everything = {row.key for row in dm.index.samples}
    assert sorted(keys) == sorted(everything - lost)
    assert shard in caplog.text and f"{len(lost)} of" in caplog.text
    trainer = cpu_trainer(tmp_path, max_epochs=1, max_steps=-1)
    trainer.fit(
        tiny_module(dm), dm
    )  # the model never sees the damaged sample (out-of-range codes would crash it)
    assert trainer.global_step > 0


def test_training_stops_when_more_than_the_allowed_fraction_is_unreadable(shards_copy):
    damage(shards_copy, "cut tar")
    dm = datamodule(shards_copy, val_speakers=0, val_utterances=0, max_skip_fraction=0.01)
    with pytest.raises(UserError, match="max_skip_fraction=0.01"):
        epoch_keys(dm.train_dataloader())
