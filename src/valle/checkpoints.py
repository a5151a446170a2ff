"""Reading what a checkpoint or an export describes (model, symbols, codec) without Lightning.

Both file kinds load with `torch.load(weights_only=True)`: they hold tensors and plain data only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from valle.codecs.base import CodecInfo
from valle.errors import ConfigError, MissingFileError
from valle.text.symbols import SymbolMap

EXPORT_FORMAT = "valle"


def load_file(path: str | Path) -> dict:
    """torch.load a checkpoint or export safely; a clear error when it is neither."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such checkpoint or export file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # pickle errors of many types: all mean "not our file"
        raise ConfigError(f"{path}: not a valle checkpoint or export ({error})") from error


def describe_file(data: dict, path: str | Path = "") -> dict:
    """{"model", "symbols", "codec", "stats", "codec_state"} of a loaded Lightning checkpoint or export."""
    if data.get("format") == EXPORT_FORMAT:
        return {
            "model": data["config"],
            "symbols": data["symbols"],
            "codec": data["codec"],
            "stats": data.get("stats", {}),
            "codec_state": data.get("codec_state"),
        }
    hparams = data.get("hyper_parameters")
    if not hparams or "model" not in hparams:
        raise ConfigError(f"{path}: not a valle checkpoint (no model hyper-parameters inside)")
    return {
        "model": hparams["model"],
        "symbols": hparams["symbols"],
        "codec": hparams["codec"],
        "stats": data.get("valle_stats", {}),
        "codec_state": data.get("codec_state"),
    }


def read_checkpoint_meta(path: str | Path) -> dict:
    return describe_file(load_file(path), path)


def model_state_dict(data: dict) -> dict[str, torch.Tensor]:
    """The `Valle` weights of a loaded checkpoint (the module's `model.` entries) or export."""
    if data.get("format") == EXPORT_FORMAT:
        return data["model"]
    return {k.removeprefix("model."): v for k, v in data["state_dict"].items() if k.startswith("model.")}


def check_compatible(found: dict, expected: Any, what: str) -> None:
    """Refuse weights made for another codec or symbol map, naming both sides.

    Args:
        found: `describe_file(...)` of the file.
        expected: mapping with "symbols" and "codec" (e.g. a module's hparams) of the current setup.
        what: the file, as named in messages.
    """
    mine, theirs = CodecInfo.from_dict(expected["codec"]), CodecInfo.from_dict(found["codec"])
    mine.check_compatible(theirs, what)
    old, new = SymbolMap.from_dict(found["symbols"]), SymbolMap.from_dict(expected["symbols"])
    if old.fingerprint() != new.fingerprint():
        missing = sorted(set(new.symbols) - set(old.symbols))[:10]
        raise ConfigError(
            f"{what} was trained with another symbol map ({len(old)} symbols, fingerprint "
            f"{old.fingerprint()}) than this data's ({len(new)} symbols, {new.fingerprint()}); "
            f"symbols it lacks: {' '.join(missing) or '-'}. Prepare the data with "
            "symbols=<the model's symbols.json> so ids match"
        )


class HasModel(Protocol):
    """What `load_model_weights` fills: a `ValleModule`, or anything with its `model` and `hparams`."""

    @property
    def model(self) -> nn.Module: ...

    @property
    def hparams(self) -> Any: ...


def load_model_weights(module: HasModel, path: str | Path) -> None:
    """Fine-tuning start: copy a checkpoint's or export's model weights into `module.model`."""
    data = load_file(path)
    check_compatible(describe_file(data, path), module.hparams, what=f"init_from={path}")
    state = _to_lora_names(model_state_dict(data), module.model.state_dict())
    try:
        missing, unexpected = module.model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # size mismatches
        raise ConfigError(
            f"init_from={path}: its model has other sizes than this configuration ({error}); "
            "use the same model/scale and backbone settings as the run that made it"
        ) from error
    base_missing = [k for k in missing if "lora_" not in k]  # fresh adapters are expected to be missing
    if base_missing or unexpected:
        raise ConfigError(
            f"init_from={path}: its model does not match this configuration (missing "
            f"{base_missing[:5]}, unexpected {unexpected[:5]}); use the same model/scale and "
            "backbone settings as the run that made it"
        )


def _to_lora_names(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename `x.weight` to `x.base.weight` where the target wraps layer x in a LoRA adapter."""
    renamed = {}
    for key, value in state.items():
        wrapped = key.rsplit(".", 1)[0] + ".base." + key.rsplit(".", 1)[1]
        renamed[wrapped if key not in target and wrapped in target else key] = value
    return renamed
