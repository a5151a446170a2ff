"""Every command's settings pass one check: `typed`, a dataclass schema over a config node or `key=value`s.

train.py, infer.py and prepare.py get their config composed by Hydra; the small commands (demo, export,
voice, plot, evaluate) take a few `key=value` options in the same syntax without a config tree. Both end
in `typed`, so a typo is an error that names the key and a value of the wrong type is refused, the same
way everywhere. `parse_options` adds what a command line needs: values taken verbatim (a sentence or a
path is never parsed as a list or an interpolation), `--help`, a usage line drawn from the schema, and a
one-line error for the user instead of a traceback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from valle.cli.argv import escape_interpolation
from valle.errors import ConfigError

T = TypeVar("T")
REQUIRED: Any = MISSING  # a field default meaning "the user must give it"


def typed(schema: type[T], node: DictConfig | Mapping[str, Any] | None) -> T:
    """`node` validated against the dataclass `schema`, as an instance of it.

    A config node's interpolations resolve; a plain mapping holds final values, its strings taken
    literally (a path or a sentence with `${` in it stays as it is). Unknown keys raise omegaconf's
    ConfigKeyError, unconvertible values its ValidationError (strings such as "3" convert to an int
    field), a required field left out its MissingMandatoryValue: each names the key.
    """
    if node is not None and not isinstance(node, DictConfig):
        node = {str(k): escape_interpolation(v) if isinstance(v, str) else v for k, v in node.items()}
    try:
        value = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node or {}))
    except OmegaConfBaseException as error:  # name the key as typed: `data.max_tokens`, not `max_tokens`
        where = node._get_full_key(None) if isinstance(node, DictConfig) else ""
        if where and getattr(error, "full_key", None):
            error.full_key = f"{where}.{error.full_key}"
        raise
    assert isinstance(value, schema)  # a structured config becomes its dataclass
    return value


def choice(default: str, *choices: str) -> Any:
    """A string field limited to `choices` (`parse_options` refuses others, naming them)."""
    return dataclasses.field(default=default, metadata={"choices": (default, *choices)})


def option_name(field: dataclasses.Field) -> str:
    """The command-line key of a field: `codec_weights` is written `codec.weights`, as in Hydra's configs."""
    return str(field.metadata.get("key", field.name))


def usage(command: str, schema: type, positional: Sequence[str] = ()) -> str:
    """`python -m valle.X key=KEY [key=default] [key=a|b] ...`, from the schema's fields."""
    words = [f"python -m {command}"]
    for field in dataclasses.fields(schema):
        name, choices = option_name(field), field.metadata.get("choices")
        if field.default is MISSING:
            words.append(field.name.upper() if field.name in positional else f"{name}={field.name.upper()}")
        elif choices:
            words.append(f"[{name}={'|'.join(choices)}]")
        else:
            words.append(f"[{name}={'' if field.default is None else field.default}]")
    return " ".join(words)


def split_arguments(
    command: str, schema: type, argv: Sequence[str], positional: Sequence[str] = ()
) -> dict[str, str]:
    """`key=value` arguments (and bare ones, in the order of `positional`) → {field name: raw value}."""
    fields = {option_name(f): f.name for f in dataclasses.fields(schema)}
    values: dict[str, str] = {}
    bare = list(positional)
    for arg in argv:
        key, equals, value = arg.partition("=")
        if equals and key.lstrip("+") in fields:
            values[fields[key.lstrip("+")]] = value
        elif not equals and bare:
            values[bare.pop(0)] = arg
        else:
            what = f"unknown option {key}" if equals else f"unexpected argument {arg!r}"
            raise ConfigError(f"{what}; usage: {usage(command, schema, positional)}")
    return values


def parse_options(
    command: str, schema: type[T], argv: Sequence[str], positional: Sequence[str] = (), doc: str = ""
) -> T:
    """A command line of `key=value` options → an instance of the dataclass `schema`.

    Values are taken verbatim (no Hydra grammar, no `${...}`), then converted to the fields' types by
    `typed`. `-h`/`--help` prints the usage line and `doc` (the command's docstring), and exits.

    Raises:
        ConfigError: an unknown key, a value of the wrong type or outside its choices, a required key
            missing; the message names the key and shows the usage line.
    """
    if any(arg in ("-h", "--help") for arg in argv):
        print(f"usage: {usage(command, schema, positional)}\n\n{doc}".rstrip())
        raise SystemExit(0)
    assert dataclasses.is_dataclass(schema), f"{schema} must be a dataclass"
    raw = split_arguments(command, schema, argv, positional)
    names = {f.name: option_name(f) for f in dataclasses.fields(schema)}
    missing = [
        names[f.name] for f in dataclasses.fields(schema) if f.default is MISSING and f.name not in raw
    ]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required; usage: {usage(command, schema, positional)}")
    try:
        options = typed(schema, raw)
    except OmegaConfBaseException as error:
        key = names.get(str(getattr(error, "key", "")), str(getattr(error, "key", "")))
        reason = str(getattr(error, "msg", error)).splitlines()[0]
        raise ConfigError(f"{key}: {reason}; usage: {usage(command, schema, positional)}") from None
    for field in dataclasses.fields(schema):
        allowed = field.metadata.get("choices")
        if allowed and getattr(options, field.name) not in allowed:
            raise ConfigError(
                f"{names[field.name]}={getattr(options, field.name)}: choose one of {', '.join(allowed)}"
            )
    return options


def check_device(device: str, key: str = "device") -> None:
    """Refuse a device this machine does not have, before anything is loaded onto it (torch would
    fail later, deep inside the model's loading, with a traceback). `key` names the setting."""
    import torch

    try:
        # Lightning's accelerator=gpu is CUDA; the messages below keep the user's own spelling.
        chosen = torch.device("cuda" if device == "gpu" and key == "accelerator" else device)
    except RuntimeError as error:  # "gpu" as a device=, "cuda0"
        raise ConfigError(f"{key}={device}: not a device torch knows; use {key}=cpu or {key}=cuda") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{key}={device}: no CUDA device is available (torch.cuda.is_available() is False); use {key}=cpu"
        )
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"{key}={device}: no MPS device is available (torch.backends.mps.is_available() is False); "
            f"use {key}=cpu"
        )
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"{key}={device}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
        )
