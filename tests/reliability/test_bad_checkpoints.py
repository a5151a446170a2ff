"""Bad checkpoints and exports: a one-line error naming the file, and nothing in the file ever executed."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from tests.training.conftest import cpu_trainer, tiny_datamodule, tiny_module
from valle.card import ModelCard
from valle.checkpoints import load_model_weights, read_card
from valle.codecs import build_codec
from valle.errors import UserError
from valle.export import export_checkpoint, load
from valle.models.config import ValleConfig
from valle.training.module import ValleModule


@pytest.fixture(scope="module")
def checkpoint(tiny_shards, tmp_path_factory) -> Path:
    """A Lightning checkpoint of the tiny model after one step on the (EnCodec-coded) tiny shards."""
    folder = tmp_path_factory.mktemp("checkpoint")
    dm = tiny_datamodule(tiny_shards)
    trainer = cpu_trainer(folder, max_steps=1)
    trainer.fit(tiny_module(dm), dm)
    trainer.save_checkpoint(folder / "model.ckpt")
    return folder / "model.ckpt"


@pytest.fixture(scope="module")
def export(checkpoint) -> Path:
    return export_checkpoint(checkpoint, checkpoint.with_suffix(".pt"))


class WritesAFile:
    """Unpickling this runs `open(marker, "w")`: what a malicious checkpoint would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_from_another_codec_is_refused_naming_both(checkpoint, tiny_shards):
    mel = build_codec("mel", weights="random", codebook_size=64).info
    dm = tiny_datamodule(tiny_shards)
    config = ValleConfig.tiny().with_data(len(dm.symbols), mel.n_levels, mel.codebook_size)
    module = ValleModule(ModelCard(config, dm.symbols, mel))
    with pytest.raises(UserError, match=r"codec 'encodec'.*codec 'mel'") as error:
        load_model_weights(module, checkpoint)
    assert str(checkpoint) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("kind", ["checkpoint", "export"])
def test_a_truncated_file_is_refused_naming_it(kind, checkpoint, export, tmp_path):
    source = checkpoint if kind == "checkpoint" else export
    cut = tmp_path / source.name
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    # one short reason: torch's advice (mmap, _use_new_zipfile_serialization) is left out
    short = rf"ckpt={cut}: not a valle checkpoint or export \(torch could not read it: not the zip [^()]*\)$"
    with pytest.raises(UserError, match=short):
        load(cut)
    with pytest.raises(UserError, match=short):
        read_card(cut)


@pytest.mark.parametrize("container", ["torch.save", "plain pickle"])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(container, tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.ckpt"
    payload = {"state_dict": {}, "hyper_parameters": {"model": WritesAFile(marker)}}
    if container == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UserError, match=f"{path}: not a valle checkpoint or export"):
        load(path)
    assert not marker.exists()
    # The payload is live: an unsafe load runs it.
    if container == "plain pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_an_export_from_a_newer_format_version_is_refused(export, tmp_path):
    data = torch.load(export, weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**data, "version": data["version"] + 1}, newer)
    with pytest.raises(UserError, match=f"{newer}: export version {data['version'] + 1} is not supported"):
        load(newer)
    symbols = {**data["symbols"], "version": data["symbols"]["version"] + 1}
    torch.save({**data, "symbols": symbols}, newer)
    with pytest.raises(UserError, match="symbol map format version .* is not supported"):
        load(newer)
