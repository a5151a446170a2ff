"""kill -9 during prepare at 5 seeded random moments, then the same command again.

The rerun must produce shards, manifests, index and symbol map byte-identical to an uninterrupted
run's, and at no moment may the folder list a shard that is not complete.
"""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

import pytest

from tests.cli.test_prepare_cli import compose_prepare
from tests.reliability.children import kill_9_at, kill_points, run_to_end, start, warm_up

TRIALS = 5


def prepare_cfg(corpus: Path, output: Path):
    """The offline mel codec, its codebooks fitted on the corpus (part of the run), one utterance per shard."""
    return compose_prepare(f"input={corpus}", f"output={output}", "codec=mel", "codec.codebook_size=64",
                           "num_workers=0", "max_shard_mb=0.01")


def finished_files(folder: Path) -> dict[str, bytes]:
    """What a finished run leaves for training to read: every file but temporaries."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}


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


@pytest.fixture(scope="module")
def straight(tiny_corpus, tmp_path_factory) -> tuple[dict[str, bytes], list]:
    """The uninterrupted run: its files, and kill points drawn over its timeline (up to the index)."""
    output = tmp_path_factory.mktemp("straight")
    warm_up()
    started = time.time()
    run_to_end("prepare", prepare_cfg(tiny_corpus, output))
    files = finished_files(output)
    assert "index.json" in files and len([n for n in files if n.endswith(".tar")]) > 5
    return files, kill_points(output, started, TRIALS, seed="prepare", last="index.json")


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_then_rerun_gives_the_uninterrupted_runs_bytes(trial, straight, tiny_corpus, tmp_path):
    files, points = straight
    cfg = prepare_cfg(tiny_corpus, tmp_path)
    assert kill_9_at(start("prepare", cfg), tmp_path, points[trial]), f"prepare ended before {points[trial]}"
    assert_only_complete_shards_are_listed(tmp_path)
    print(f"trial {trial}: killed at {points[trial]} with {len(list(tmp_path.glob('shard-*.json')))} shards done "
          f"and {len(list(tmp_path.glob('.*.tmp')))} temporary files left")

    run_to_end("prepare", cfg)
    again = finished_files(tmp_path)
    assert sorted(again) == sorted(files)
    assert [name for name in files if again[name] != files[name]] == []
