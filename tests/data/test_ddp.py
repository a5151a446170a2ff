"""Two ranks (CPU, gloo) stream the same shards: each sample goes to exactly one rank."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from valle.data.datamodule import DataConfig, ValleDataModule, make_split
from valle.data.index import ShardIndex


@contextmanager
def process_group(rank: int, world_size: int, port: int) -> Iterator[None]:
    """This process as rank `rank` of a gloo group on localhost, torn down on the way out."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def write_gathered(value: object, world_size: int, rank: int, out: str) -> None:
    """Every rank's `value`, gathered; rank 0 writes the list as JSON to `out`."""
    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, value)
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))


def _rank_main(rank: int, world_size: int, root: str, out: str, port: int) -> None:
    with process_group(rank, world_size, port):
        dm = ValleDataModule(DataConfig(root=root, num_workers=2, val_speakers=0, val_utterances=0))
        dm.setup()
        write_gathered([key for batch in dm.train_dataloader() for key in batch.keys], world_size, rank, out)


def test_two_ranks_read_disjoint_shards(tiny_shards, tmp_path):
    out = tmp_path / "keys.json"
    port = 29500 + os.getpid() % 1000
    mp.start_processes(_rank_main, args=(2, str(tiny_shards), str(out), port), nprocs=2, start_method="fork")
    per_rank = json.loads(out.read_text())
    assert all(per_rank)
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(
        json.loads((Path(tiny_shards) / "index.json").read_text())["samples"][i]["key"] for i in range(15)
    )


def _count_main(rank: int, world_size: int, root: str, out: str, port: int) -> None:
    with process_group(rank, world_size, port):
        # three of the four shards: 2 ranks cannot split them evenly
        dm = ValleDataModule(
            DataConfig(
                root=root,
                shards=f"{root}/shard-00000[0-2].tar",
                num_workers=2,
                max_tokens=1200,
                val_speakers=1,
                val_utterances=2,
            )
        )
        dm.setup()
        train, val = dm.train_dataloader(), dm.val_dataloader()
        epochs = [
            {
                "train": [b.keys for b in train],
                "val": [b.keys for b in val if not b.repeat],
                "val_batches": sum(1 for _ in val),
            }
            for _ in range(2)
        ]
        write_gathered(epochs, world_size, rank, out)


def test_ranks_yield_equal_batch_counts_when_the_shards_do_not_divide_evenly(tiny_shards, tmp_path):
    out = tmp_path / "counts.json"
    port = 29500 + (os.getpid() + 500) % 1000
    mp.start_processes(_count_main, args=(2, str(tiny_shards), str(out), port), nprocs=2, start_method="fork")
    ranks = json.loads(out.read_text())
    index = json.loads((Path(tiny_shards) / "index.json").read_text())
    in_shards = {s["key"] for s in index["samples"] if s["shard"] != "shard-000003.tar"}
    split = make_split(ShardIndex.load(tiny_shards), val_speakers=1, val_utterances=2, seed=0)
    for epoch in range(2):
        train = [ranks[r][epoch]["train"] for r in (0, 1)]
        assert len(train[0]) == len(train[1]) > 0  # the same number of batches on both ranks
        keys = [{k for batch in rank for k in batch} for rank in train]
        assert not keys[0] & keys[1] and keys[0] | keys[1] <= in_shards
        assert ranks[0][epoch]["val_batches"] == ranks[1][epoch]["val_batches"] > 0
        val = [k for r in (0, 1) for batch in ranks[r][epoch]["val"] for k in batch]
        assert sorted(val) == sorted(split.val_keys & in_shards)  # each validation sample once, by one rank
