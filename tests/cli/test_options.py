"""The small commands' `key=value` options: one parser, one typed check, one-line errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from valle.cli.demo import DemoOptions
from valle.cli.evaluate import EvaluateOptions
from valle.cli.export import ExportOptions
from valle.cli.options import REQUIRED, choice, parse_options, typed, usage
from valle.cli.voice import VoiceOptions
from valle.errors import ConfigError


@dataclass
class Options:
    ckpt: str = REQUIRED
    steps: int = 3
    seconds: float | None = None
    dtype: str = choice("fp32", "fp16")
    codec_weights: str | None = dataclasses.field(default=None, metadata={"key": "codec.weights"})


def test_values_are_typed_and_taken_verbatim():
    sentence = "Hi, it's me: [a] {b} ${oops} 'quoted' = x"
    argv = [f"ckpt={sentence}", "steps=7", "seconds=2.5", "codec.weights=random"]
    options = parse_options("t", Options, argv)
    assert options == Options(ckpt=sentence, steps=7, seconds=2.5, codec_weights="random")
    assert parse_options("t", Options, ["ckpt=a=b.ckpt"]).ckpt == "a=b.ckpt"  # a Lightning checkpoint name


@pytest.mark.parametrize(
    "argv, message",
    [
        (["steps=2"], r"^ckpt required; usage: python -m t ckpt=CKPT \[steps=3\]"),
        (["ckpt=x", "step=2"], "^unknown option step; usage: "),
        (["ckpt=x", "stray"], "^unexpected argument 'stray'; usage: "),
        (["ckpt=x", "steps=2.5"], "^steps: Value '2.5' of type 'str' could not be converted to Integer"),
        (["ckpt=x", "dtype=fp8"], "^dtype=fp8: choose one of fp32, fp16$"),
        (["ckpt=x", "codec_weights=random"], "^unknown option codec_weights"),  # written codec.weights
    ],
)
def test_mistakes_are_one_line_errors_naming_the_key(argv, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_options("t", Options, argv)
    assert "\n" not in str(error.value)


def test_bare_arguments_fill_the_positional_fields_in_order():
    assert parse_options("t", Options, ["model.ckpt"], positional=("ckpt",)).ckpt == "model.ckpt"
    assert parse_options("t", Options, ["ckpt=model.ckpt"], positional=("ckpt",)).ckpt == "model.ckpt"


def test_help_prints_the_usage_and_the_doc_and_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_options("t", Options, ["--help"], doc="What t does.")
    assert stop.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage: python -m t ckpt=CKPT") and printed.rstrip().endswith("What t does.")


def test_typed_resolves_a_config_node_but_takes_a_mapping_literally():
    from omegaconf import OmegaConf

    assert typed(Options, {"ckpt": "${name}.ckpt"}).ckpt == "${name}.ckpt"
    resolved = OmegaConf.merge(OmegaConf.create({"ckpt": "${steps}.ckpt", "steps": 4}))
    assert typed(Options, resolved).ckpt == "4.ckpt"


@pytest.mark.parametrize("schema", [DemoOptions, EvaluateOptions, ExportOptions, VoiceOptions])
def test_every_command_usage_names_each_option(schema):
    line = usage("valle.x", schema)
    for field in dataclasses.fields(schema):
        assert f"{field.metadata.get('key', field.name)}=" in line
