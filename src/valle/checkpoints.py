"""Reading what a checkpoint or an export describes (its `ModelCard`) and its weights, without Lightning.

Both file kinds load with `torch.load(weights_only=True)`: they hold tensors and plain data only.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Protocol

import torch

from valle.card import ModelCard
from valle.errors import ConfigError, MissingFileError
from valle.models.valle import Valle

EXPORT_FORMAT = "valle"


def load_file(path: str | Path) -> dict:
    """torch.load a checkpoint or export safely; a clear error when it is neither."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such checkpoint or export file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # pickle errors of many types: all mean "not our file"
        reason = _why_torch_could_not_read(path, error)
        raise ConfigError(
            f"ckpt={path}: not a valle checkpoint or export (torch could not read it: {reason})"
        ) from error


def _why_torch_could_not_read(path: Path, error: Exception) -> str:
    """A short reason for a failed `torch.load`: torch's own messages run to paragraphs of advice
    (saving with `_use_new_zipfile_serialization`, loading with `weights_only=False`) that is no fix here."""
    if not zipfile.is_zipfile(path):
        return "not the zip archive torch.save writes, or one cut short"
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if refused:  # a pickled object: loading it would run code
        return f"it holds a Python object ({refused.group(1)}), which a weights-only load refuses"
    first_line = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().split("\n")[0]
    return first_line[:120] or type(error).__name__


def card_dict(data: dict, path: str | Path = "") -> dict:
    """The model card of a loaded Lightning checkpoint or export as plain data (`ModelCard.to_dict()`).

    An export holds the card at its top level. A checkpoint keeps its constructor part in
    `hyper_parameters["card"]` (those written before the card existed: `hyper_parameters` "model",
    "symbols" and "codec"; both are read) and the stats and codec weights at its top level.
    """
    if data.get("format") == EXPORT_FORMAT:
        return data
    hparams = data.get("hyper_parameters") or {}
    if "card" in hparams:
        described = hparams["card"]
    elif "model" in hparams:
        described = {"config": hparams["model"], "symbols": hparams["symbols"], "codec": hparams["codec"]}
    else:
        raise ConfigError(f"{path}: not a valle checkpoint (no model hyper-parameters inside)")
    return {**described, "stats": data.get("valle_stats"), "codec_state": data.get("codec_state")}


def card_of(data: dict, path: str | Path = "") -> ModelCard:
    """The model card of a loaded Lightning checkpoint or export."""
    return ModelCard.from_dict(card_dict(data, path))


def read_card(path: str | Path) -> ModelCard:
    """The model card of a checkpoint or export file."""
    return card_of(load_file(path), path)


def model_state_dict(data: dict) -> dict[str, torch.Tensor]:
    """The `Valle` weights of a loaded checkpoint (the module's `model.` entries) or export."""
    if data.get("format") == EXPORT_FORMAT:
        return data["model"]
    return {k.removeprefix("model."): v for k, v in data["state_dict"].items() if k.startswith("model.")}


def check_compatible(found: ModelCard, expected: ModelCard, what: str) -> None:
    """Refuse weights made for another codec or symbol map, naming both sides.

    Args:
        found: the card of the file.
        expected: the card of the current setup (e.g. a module's).
        what: the file, as named in messages.
    """
    expected.codec.check_compatible(found.codec, what)
    old, new = found.symbols, expected.symbols
    if old.fingerprint() != new.fingerprint():
        missing = sorted(set(new.symbols) - set(old.symbols))[:10]
        raise ConfigError(
            f"{what} was trained with another symbol map ({len(old)} symbols, fingerprint "
            f"{old.fingerprint()}) than this data's ({len(new)} symbols, {new.fingerprint()}); "
            f"symbols it lacks: {' '.join(missing) or '-'}. Prepare the data with "
            "symbols=<the model's symbols.json> so ids match"
        )


class HasModel(Protocol):
    """What `load_model_weights` fills: a `ValleModule`, or anything with its `model` and `card`."""

    @property
    def model(self) -> Valle: ...

    @property
    def card(self) -> ModelCard: ...


def load_model_weights(module: HasModel, path: str | Path) -> None:
    """Fine-tuning start: copy a checkpoint's or export's model weights into `module.model`."""
    data = load_file(path)
    check_compatible(card_of(data, path), module.card, what=f"init_from={path}")
    state = _to_lora_names(model_state_dict(data), module.model.state_dict())
    try:
        missing, unexpected = module.model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # size mismatches
        raise ConfigError(
            f"init_from={path}: its model has other sizes than this configuration ({error}); "
            "use the same model/scale and backbone settings as the run that made it"
        ) from error
    # fresh adapters and fresh Medusa heads (added to a model trained without them) are expected to be missing
    fresh_heads = [k for k in missing if k.startswith("ar.medusa.")]
    base_missing = [k for k in missing if "lora_" not in k and k not in fresh_heads]
    if base_missing or unexpected:
        raise ConfigError(
            f"init_from={path}: its model does not match this configuration (missing "
            f"{base_missing[:5]}, unexpected {unexpected[:5]}); use the same model/scale and "
            "backbone settings as the run that made it"
        )
    if fresh_heads:
        module.model.start_medusa()  # each new head starts as the loaded model's own head


def _to_lora_names(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename `x.weight` to `x.base.weight` where the target wraps layer x in a LoRA adapter."""
    renamed = {}
    for key, value in state.items():
        wrapped = key.rsplit(".", 1)[0] + ".base." + key.rsplit(".", 1)[1]
        renamed[wrapped if key not in target and wrapped in target else key] = value
    return renamed
