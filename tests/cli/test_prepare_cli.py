"""prepare.py through Hydra, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf.errors import ConfigKeyError, ValidationError

from valle.cli.prepare import check_found_audio, run, settings_from_config
from valle.data.prepare import PrepareResult
from valle.errors import ConfigError, user_message

ROOT = Path(__file__).resolve().parents[2]


def compose_prepare(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("prepare", overrides=list(overrides))


def test_prepare_py_writes_shards_and_prints_the_summary(tiny_corpus, tmp_path):
    out = tmp_path / "shards"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "prepare.py"),
            f"input={tiny_corpus}",
            f"output={out}",
            "codec.weights=random",
            "codec.bandwidth_kbps=1.5",
            "num_workers=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "utterances: 15, speakers: 3" in result.stdout
    index = json.loads((out / "index.json").read_text())
    assert index["codec"]["name"] == "encodec" and index["codec"]["n_levels"] == 2
    assert list(out.glob("logs/*/.hydra/config.yaml"))


def test_missing_arguments_and_typos_fail_at_composition():
    with pytest.raises(Exception, match="input"):
        settings_from_config(compose_prepare("output=/tmp/x"))
    with pytest.raises(ConfigKeyError):
        settings_from_config(compose_prepare("input=/a", "output=/b", "+num_wrokers=3"))
    with pytest.raises(ValidationError) as wrong_type:
        settings_from_config(compose_prepare("input=/a", "output=/b", "max_shard_mb=big"))
    assert (message := user_message(wrong_type.value)) and message.startswith("max_shard_mb: Value 'big'")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["num_workers=-1"], "num_workers=-1: give 0"),
        (["codec=mel", "codec.n_levels=abc"], "codec.n_levels=abc: give an integer"),
        pytest.param(
            ["device=cuda"],
            "device=cuda: no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_bad_values_stop_prepare_before_any_work(overrides, message, tmp_path):
    cfg = compose_prepare(f"input={tmp_path}", f"output={tmp_path}/o", "codec.weights=random", *overrides)
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not (tmp_path / "o").exists()


def test_a_layout_that_finds_no_utterance_is_an_error_naming_it(tmp_path):
    settings = settings_from_config(compose_prepare("layout=libritts", f"input={tmp_path}", "output=/o"))
    empty = PrepareResult(tmp_path, 0, 0, 0, index=SimpleNamespace(samples=[], skipped=[{}] * 3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"layout=libritts found no usable utterance .*3 skipped"):
        check_found_audio(settings, empty)


def test_part_override_parses(tmp_path):
    cfg = compose_prepare("input=/a", "output=/b", "part=2/4", "codec=dac")
    assert settings_from_config(cfg).part == "2/4" and cfg.codec.name == "dac"


def test_prepare_py_exits_non_zero_on_a_bad_layout(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "prepare.py"),
            f"input={tmp_path}",
            f"output={tmp_path}/o",
            "layout=vctk",
            "codec.weights=random",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "unknown layout 'vctk'" in result.stderr


def test_mel_codec_fits_its_codebooks_beside_the_shards_once(tiny_corpus, tmp_path):
    out = tmp_path / "shards"
    args = [
        sys.executable,
        str(ROOT / "prepare.py"),
        f"input={tiny_corpus}",
        f"output={out}",
        "codec=mel",
        "codec.codebook_size=64",
        "num_workers=0",
    ]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    codebooks = out / "codebooks.pt"
    index = json.loads((out / "index.json").read_text())
    assert codebooks.is_file() and index["codec"]["name"] == "mel" and index["codec"]["n_levels"] == 4
    stamp = codebooks.stat().st_mtime_ns
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and codebooks.stat().st_mtime_ns == stamp
    from valle.codecs import build_codec

    codec = build_codec("mel", codebook_size=64, weights=str(codebooks))  # what inference decodes with
    assert codec.info.codebook_size == 64
