"""Two ranks (CPU, gloo) stream the same shards: each sample goes to exactly one rank."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from valle.data.datamodule import DataConfig, ValleDataModule


def _rank_main(rank: int, world_size: int, root: str, out: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        dm = ValleDataModule(DataConfig(root=root, num_workers=2, val_speakers=0, val_utterances=0))
        dm.setup()
        keys = [key for batch in dm.train_dataloader() for key in batch["keys"]]
        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, keys)
        if rank == 0:
            Path(out).write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_two_ranks_read_disjoint_shards(tiny_shards, tmp_path):
    out = tmp_path / "keys.json"
    port = 29500 + os.getpid() % 1000
    mp.start_processes(_rank_main, args=(2, str(tiny_shards), str(out), port), nprocs=2, start_method="fork")
    per_rank = json.loads(out.read_text())
    assert all(per_rank)
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(
        json.loads((Path(tiny_shards) / "index.json").read_text())["samples"][i]["key"] for i in range(15))
