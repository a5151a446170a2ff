"""The model card: everything a model file says about its model but the weights, in one shape.

A checkpoint, an export, `ValleModule` and `valle.load` all carry one `ModelCard`; sampling reads a model's
symbols, codec and stats from it, and builds the model's codec through it (`build_codec`), so the codec
weights a model carries (`codec_state`) travel inside the card rather than beside it.

On disk (docs/design.md, "Export format"): an export holds `ModelCard.to_dict()` at its top level; a
Lightning checkpoint holds `to_dict(with_state=False)` under `hyper_parameters["card"]` and the stats and
codec weights at its top level (`valle_stats`, `codec_state`), as `valle.checkpoints.card_of` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from valle.codecs import codec_for
from valle.codecs.base import Codec, CodecInfo
from valle.models.config import ValleConfig
from valle.models.valle import Valle
from valle.text.symbols import SymbolMap


@dataclass
class ModelCard:
    """What a model is, apart from its weights.

    Attributes:
        config: the model's configuration, with the data's sizes filled in.
        symbols: the symbol map its text ids come from.
        codec: the codec its codes come from, with the identity of the weights that made them.
        stats: training counters: `steps`, `samples`, `tokens`, `longest_seconds`, `train_seconds`
            (empty for a model that was never trained).
        codec_state: codec weights the model carries (the mel codec's codebooks, see
            `valle.codecs.carried_state`), else None.
    """

    config: ValleConfig
    symbols: SymbolMap
    codec: CodecInfo
    stats: dict = field(default_factory=dict)
    codec_state: dict | None = None

    def to_dict(self, with_state: bool = True) -> dict:
        """Plain data, loadable with `torch.load(weights_only=True)`.

        Args:
            with_state: False leaves out `stats` and `codec_state`, as a checkpoint's hyper-parameters
                do: `hparams.yaml` holds no tensors, and the stats change every step.
        """
        described: dict[str, dict | None] = {
            "config": self.config.to_dict(),
            "symbols": self.symbols.to_dict(),
            "codec": self.codec.to_dict(),
        }
        if with_state:
            described |= {"stats": dict(self.stats), "codec_state": self.codec_state}
        return described

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        """The inverse of `to_dict` (with or without the state); other keys are ignored."""
        return cls(
            ValleConfig.from_dict(data["config"]),
            SymbolMap.from_dict(data["symbols"]),
            CodecInfo.from_dict(data["codec"]),
            dict(data.get("stats") or {}),
            data.get("codec_state"),
        )

    def build_codec(self, weights: str | None = None, name: str | None = None) -> Codec:
        """The codec this model's codes came from, e.g. to decode its output (see `valle.codecs.codec_for`).

        Args:
            weights: None: the weights the model was trained with (for the mel codec, the codebooks the
                card carries); else "pretrained", "random" or a local file, refused when not the model's.
            name: decode with another codec of the same codes ("vocos" for EnCodec codes).
        """
        return codec_for(self.codec, weights, name, self.codec_state)


@dataclass
class LoadedModel:
    """What `valle.load` returns: the model in eval mode and its card."""

    model: Valle
    card: ModelCard

    def __getattr__(self, name: str) -> Any:
        """The card's fields, as `LoadedModel` had them before the card: `valle.load(path).stats`."""
        if name in ModelCard.__dataclass_fields__:
            return getattr(self.card, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
