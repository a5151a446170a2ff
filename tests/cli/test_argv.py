"""Sentences and paths as people type them reach the config verbatim (valle.cli.argv and the root shims)."""

from __future__ import annotations

import shutil

import pytest
import soundfile as sf
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.cli.conftest import ROOT, run_entry_point
from tests.conftest import real_speech_dir
from valle.cli.argv import INFER_VERBATIM_KEYS, PREPARE_VERBATIM_KEYS, TRAIN_VERBATIM_KEYS, verbatim_overrides

AWKWARD = [
    "Hello there, this is a test.",
    'He said "stop" and left.',
    "It's Tom's turn, isn't it?",
    "Note: colons, semi;colons.",
    "Call f(x) (twice).",
    "x = y == z",
    "[1, 2] and {a: b}",
    "It costs $5, or $HOME.",
    "${oc.env:HOME}",
    "${text} and ${hydra:runtime.cwd}",
    "\\${escaped} and \\\\${twice}",
    "Ünïcödé — 日本語, ça va? 🙂",
    "C:\\path\\to\\file.wav",
    "ends with a backslash \\",
    "'single' and \"double\" quotes",
    "# not a comment",
    "-leading dash",
    "+leading plus",
    "~leading tilde",
    "a,b,c",
    "null",
    "true",
    "3.5",
    "  spaced out  ",
    "epoch=3-step=100.ckpt",
    "100% @home | tab\there",
]


def compose_with(config: str, argv: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config, overrides=argv)


@pytest.mark.parametrize("value", AWKWARD)
def test_every_verbatim_key_composes_to_exactly_what_was_typed(value):
    infer = compose_with(
        "infer", verbatim_overrides([f"{k}={value}" for k in INFER_VERBATIM_KEYS], INFER_VERBATIM_KEYS)
    )
    prepare = compose_with(
        "prepare", verbatim_overrides([f"{k}={value}" for k in PREPARE_VERBATIM_KEYS], PREPARE_VERBATIM_KEYS)
    )
    train = compose_with(
        "train", verbatim_overrides([f"{k}={value}" for k in TRAIN_VERBATIM_KEYS], TRAIN_VERBATIM_KEYS)
    )
    for cfg, keys in (
        (infer, INFER_VERBATIM_KEYS),
        (prepare, PREPARE_VERBATIM_KEYS),
        (train, TRAIN_VERBATIM_KEYS),
    ):
        typed = {k: OmegaConf.select(cfg, k) for k in keys}  # resolved: no `${...}` in a value may resolve
        assert all(v == value for v in typed.values()), (value, typed)


def test_other_arguments_pass_unchanged():
    argv = [
        "-m",
        "sampler=greedy",
        "sampler.top_k=3",
        "hydra.run.dir=x",
        "--cfg",
        "job",
        "textual=a,b",
        "+text=hi, you",
        "codec.name=vocos",
    ]
    assert verbatim_overrides(argv, INFER_VERBATIM_KEYS) == [*argv[:7], "+text='hi, you'", "codec.name=vocos"]


def printed_config(*command: str, cwd) -> dict:
    """Run a root shim with `--cfg job --resolve`: Hydra parses the command line and prints the config."""
    result = run_entry_point(*command, "--cfg", "job", "--resolve", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml.safe_load(result.stdout)


def test_infer_py_and_prepare_py_take_awkward_values_verbatim(tmp_path):
    for start in range(0, len(AWKWARD), len(INFER_VERBATIM_KEYS)):
        values = dict(zip(INFER_VERBATIM_KEYS, AWKWARD[start:], strict=False))
        cfg = printed_config("infer.py", *(f"{k}={v}" for k, v in values.items()), cwd=tmp_path)
        assert {k: cfg[k] for k in values} == values
    cfg = printed_config("prepare.py", f"input={AWKWARD[0]}", f"output={AWKWARD[8]}", cwd=tmp_path)
    assert (cfg["input"], cfg["output"]) == (AWKWARD[0], AWKWARD[8])


def test_infer_py_speaks_an_awkward_sentence_into_an_awkward_path(random_export, tmp_path):
    folder = tmp_path / "it's (1), [x] = ${oc.env:HOME}"
    folder.mkdir()
    prompt = shutil.copy(real_speech_dir() / "LJ049-0124.wav", folder / "ref, take=2.wav")
    out = folder / 'out #1, "final".wav'
    result = run_entry_point(
        "infer.py",
        f"ckpt={random_export}",
        f"prompt={prompt}",
        f"out={out}",
        "text=Hello there, it's me: (really) ${oc.env:HOME}!",
        "sampler.max_ar_steps=8",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sf.info(str(out)).frames > 0 and str(out) in result.stdout
