"""Shared fixtures: a small multi-speaker corpus spoken by espeak-ng, and shards prepared from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from valle.card import ModelCard
from valle.codecs import build_codec
from valle.corpus import Voice, build_corpus, espeak_voices
from valle.data.index import ShardIndex
from valle.data.prepare import PrepareSettings, prepare
from valle.export import save_export
from valle.models.config import ValleConfig
from valle.models.quantize import FBGEMM_CPUS
from valle.models.valle import Valle
from valle.text import SymbolMap, phonemize

REAL_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real-speech"
TINY_VOICES = ["en-us+m3", "en-us+f2", "en-gb+m1"]

# quantize="int8" refuses a CPU whose kernels fbgemm cannot run on (no AVX2, or ATEN_CPU_CAPABILITY=default);
# tests of int8 numerics skip there, and tests/models/test_quantize.py checks the refusal itself.
needs_int8_kernels = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in FBGEMM_CPUS,
    reason=(
        f"int8 needs fbgemm's AVX2 kernels; torch runs {torch.backends.cpu.get_cpu_capability()} ones here"
    ),
)


def real_speech_dir() -> Path:
    """The four LJ Speech recordings beside the repository (../shared/fixtures/real-speech)."""
    if not REAL_SPEECH.is_dir():
        pytest.skip(f"{REAL_SPEECH} is missing")
    return REAL_SPEECH


@pytest.fixture(scope="session")
def tiny_codec():
    """EnCodec's real architecture at random init, 1.5 kbps (2 levels) to keep shards small."""
    return build_codec("encodec", bandwidth_kbps=1.5, weights="random").eval()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """3 espeak-ng voices × 5 sentences in the `{group}/{speaker}/{id}.wav` + `.txt` layout."""
    return build_corpus(tmp_path_factory.mktemp("corpus"), espeak_voices(TINY_VOICES), n_sentences=5)


def prepare_settings(input_dir: Path, output: Path, **overrides) -> PrepareSettings:
    defaults = dict(
        layout="folder",
        input=str(input_dir),
        output=str(output),
        num_workers=0,
        batch_seconds=20.0,
        max_shard_mb=0.02,
    )
    return PrepareSettings(**{**defaults, **overrides})


@pytest.fixture(scope="session")
def tiny_shards(tiny_corpus, tiny_codec, tmp_path_factory) -> Path:
    """Shards (about four utterances each) prepared from `tiny_corpus`."""
    output = tmp_path_factory.mktemp("shards")
    prepare(prepare_settings(tiny_corpus, output), tiny_codec, tiny_codec.info)
    return output


@pytest.fixture(scope="session")
def aligned_corpus(tmp_path_factory, tiny_codec) -> tuple[Path, Path, ShardIndex]:
    """(corpus, shards, index): a festival voice at two speeds × 3 sentences, with festival's own timings
    as TextGrids beside the wavs, prepared into aligned shards."""
    voices = [
        Voice("plain", "kal_diphone", "festival"),
        Voice("slower", "kal_diphone", "festival", speed=0.9),
    ]
    corpus = build_corpus(tmp_path_factory.mktemp("aligned-corpus"), voices, n_sentences=3, spread=0)
    output = tmp_path_factory.mktemp("aligned-shards")
    index = prepare(prepare_settings(corpus, output), tiny_codec, tiny_codec.info).index
    assert index is not None
    return corpus, output, index


@pytest.fixture
def shards_copy(tiny_shards, tmp_path) -> Path:
    """A private copy of `tiny_shards` that a test may damage."""
    return Path(shutil.copytree(tiny_shards, tmp_path / "shards"))


RANDOM_MODEL_TEXT = "The quick brown fox jumps over the lazy dog, twice!"  # the random models' symbols


def save_random_model(path: Path, codec, texts: dict[str, str], *, stops: bool = True) -> Path:
    """A tiny random-weight model as an export file, whose symbols are those of `texts` ({language: text}).

    `stops=False` puts the stop logit out of reach: every output then runs to its step limit. Where a
    random model may stop is a draw among near-equal probabilities, which float rounding of a batched
    step can move; a length that must not depend on the batch needs the limit.
    """
    symbols = SymbolMap.build([phonemize(text, language) for language, text in texts.items()], list(texts))
    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny().with_data(len(symbols), codec.n_levels, codec.codebook_size))
    if not stops:
        with torch.no_grad():
            model.ar.heads.bias[0, -1] = -1e4
    return save_export(model.state_dict(), ModelCard(model.config, symbols, codec.info, {}), path)


@pytest.fixture(scope="session")
def random_export(tiny_codec, tmp_path_factory) -> Path:
    """A tiny random-weight model as an export file: for runs that need a model, not a good one."""
    path = tmp_path_factory.mktemp("export") / "model.pt"
    return save_random_model(path, tiny_codec, {"en-us": RANDOM_MODEL_TEXT})


@pytest.fixture(scope="session")
def endless_export(tiny_codec, tmp_path_factory) -> Path:
    """`random_export` that never says its stop token: every output is exactly its step limit long."""
    path = tmp_path_factory.mktemp("endless") / "model.pt"
    return save_random_model(path, tiny_codec, {"en-us": RANDOM_MODEL_TEXT}, stops=False)
