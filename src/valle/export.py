"""Checkpoint → one portable file, and back to a model without Lightning or Hydra (docs/design.md,
"Export format").

    python -m valle.export ckpt=runs/tiny_cpu/checkpoints/last.ckpt out=model.pt [dtype=fp16]

The file is `{"format": "valle", "version": 1, "model": state_dict, "dtype": name, **ModelCard.to_dict()}`
(the card: "config", "codec" (with the identity of the codec weights the training codes came from,
which inference builds by default), "symbols", "stats", "codec_state"), readable with
`torch.load(weights_only=True)`. LoRA adapters are merged into the weights; with the EMA callback,
the checkpoint's weights already are the averaged ones.
"""

from __future__ import annotations

from pathlib import Path

import torch

from valle.card import LoadedModel, ModelCard
from valle.checkpoints import EXPORT_FORMAT, card_of, load_file, model_state_dict
from valle.errors import ConfigError
from valle.models.lora import LoRAConfig, apply_lora, merge_lora
from valle.models.valle import Valle
from valle.utils.io import atomic_torch_save

EXPORT_VERSION = 1
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _merged_lora_state(data: dict, card: ModelCard) -> dict[str, torch.Tensor]:
    """A LoRA checkpoint holds adapters only: rebuild base + adapters, then fold them together."""
    hparams = data["hyper_parameters"]
    model = Valle(card.config)
    base = model_state_dict(load_file(hparams["init_from"]))
    # a base without Medusa heads is fine: heads added by the fine-tune are in the checkpoint, trained
    _, base_unexpected = model.load_state_dict(base, strict=False)
    apply_lora(model, LoRAConfig(**hparams["lora"]))
    missing, unexpected = model.load_state_dict(model_state_dict(data), strict=False)
    unexpected = [*base_unexpected, *unexpected]
    if unexpected or any("lora_" in k or k.startswith("ar.medusa.") for k in missing):
        raise ConfigError(
            f"the checkpoint's adapters do not fit lora={hparams['lora']} (missing "
            f"{[k for k in missing if 'lora_' in k][:3]}, unexpected {unexpected[:3]})"
        )
    return merge_lora(model).state_dict()


def export_checkpoint(ckpt: str | Path, out: str | Path, dtype: str = "fp32") -> Path:
    """Write the release file for a Lightning checkpoint (or re-save an export in another dtype).

    Raises:
        ValueError: unknown dtype, `out` an existing folder, or a file that is not a valle checkpoint.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r}: choose one of {sorted(DTYPES)}")
    if Path(out).is_dir():
        raise ConfigError(f"out={out} is a folder; give a file name such as {Path(out) / 'model.pt'}")
    data = load_file(ckpt)
    card = card_of(data, ckpt)
    lora = data.get("hyper_parameters", {}).get("lora")
    state = _merged_lora_state(data, card) if lora else model_state_dict(data)
    return save_export(state, card, out, dtype)


def save_export(
    state: dict[str, torch.Tensor], card: ModelCard, out: str | Path, dtype: str = "fp32"
) -> Path:
    """Write a release file: a model's weights (in `dtype`) and its card, what `load` reads.

    Raises:
        ConfigError: unknown dtype.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r}: choose one of {sorted(DTYPES)}")
    state = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "model": state,
        "dtype": dtype,
        **card.to_dict(),  # config, symbols, codec, stats, codec_state
    }
    out = Path(out)
    atomic_torch_save(payload, out)  # a full disk: a one-line error, and no half-written file
    return out


def load(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model of an export (or a Lightning checkpoint) with no Lightning or Hydra import.

    Returns:
        LoadedModel with the model in eval mode, in float32 on `map_location`.
    """
    data = load_file(path)
    card = card_of(data, path)
    if data.get("format") == EXPORT_FORMAT and data.get("version") != EXPORT_VERSION:
        raise ConfigError(
            f"{path}: export version {data.get('version')} is not supported "
            f"(this valle reads version {EXPORT_VERSION})"
        )
    model = Valle(card.config)
    state = (
        _merged_lora_state(data, card)
        if data.get("hyper_parameters", {}).get("lora")
        else model_state_dict(data)
    )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return LoadedModel(model.to(map_location).eval(), card)


if __name__ == "__main__":  # `python -m valle.export`: the command itself lives in valle.cli.export
    import sys

    from valle.cli.export import main
    from valle.errors import exit_on_user_error

    exit_on_user_error(main)(sys.argv[1:])
