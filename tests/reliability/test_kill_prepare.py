"""kill -9 during prepare at 5 seeded random moments, then the same command again.

The rerun must produce shards, manifests, index and symbol map byte-identical to an uninterrupted
run's, and at no moment may the folder list a shard that is not complete.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import prepare_settings
from tests.reliability.children import kill_9_at, run_to_end, start
from tests.reliability.conftest import TRIALS, finished_files, prepare_cfg
from valle.data.prepare import prepare


def samples_in(shard: Path) -> int:
    """Samples in a tar shard; raises on a cut or damaged tar."""
    with tarfile.open(shard) as tar:
        return len({name.split(".", 1)[0] for name in tar.getnames()})


def assert_only_complete_shards_are_listed(folder: Path) -> None:
    """Every shard a manifest or the index lists is a complete tar with the listed samples."""
    listed = {}
    for manifest in folder.glob("shard-*.json"):
        data = json.loads(manifest.read_text(encoding="utf-8"))
        listed[data["name"]] = len(data["rows"])
    if (folder / "index.json").is_file():
        for shard in json.loads((folder / "index.json").read_text(encoding="utf-8"))["shards"]:
            listed[shard["name"]] = shard["samples"]
    for name, n in listed.items():
        assert samples_in(folder / name) == n, f"{name} is listed but incomplete"


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_then_rerun_gives_the_uninterrupted_runs_bytes(trial, prepared_once, tiny_corpus, tmp_path):
    files, points = prepared_once
    cfg = prepare_cfg(tiny_corpus, tmp_path)
    assert kill_9_at(start("prepare", cfg), tmp_path, points[trial]), f"prepare ended before {points[trial]}"
    assert_only_complete_shards_are_listed(tmp_path)
    done = len(list(tmp_path.glob("shard-*.json")))
    print(f"trial {trial}: killed at {points[trial]} with {done} shards done")

    run_to_end("prepare", cfg)
    again = finished_files(tmp_path)
    assert sorted(again) == sorted(files)
    assert [name for name in files if again[name] != files[name]] == []
    assert not list(tmp_path.glob(".*.tmp")), "the rerun left the killed run's temporary files"


def test_a_rerun_deletes_the_temporary_files_a_kill_left(shards_copy, tiny_corpus, tiny_codec):
    (shards_copy / "shard-000001.json").unlink()  # killed while writing shard 1, or the index
    stale = [
        shards_copy / f".{name}.99999.tmp" for name in ("shard-000001.tar", "index.json", "symbols.json")
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    prepare(prepare_settings(tiny_corpus, shards_copy), tiny_codec, tiny_codec.info)
    assert [path.name for path in stale if path.exists()] == []
