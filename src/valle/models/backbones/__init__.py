"""Sequence backbones behind one protocol (`Backbone`), built by name.

`build_backbone("transformer", d_model=512, n_heads=8, n_layers=12)` takes exactly the keys of a
`configs/model/backbone/*.yaml` file plus the scale's sizes.
"""

from __future__ import annotations

from typing import Any

from valle.models.backbones.base import Backbone, BackboneOutput, StaticStepping, TreeStepping, attention_mask
from valle.models.cache import ContextWindow, DecodeCache
from valle.utils.registry import check_settings, lookup

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneOutput",
    "ContextWindow",
    "DecodeCache",
    "StaticStepping",
    "TreeStepping",
    "attention_mask",
    "build_backbone",
]

# name → "module:Class", imported on demand so that a backbone's extra dependencies (torchscale for RetNet)
# load only when it is built. A new backbone is one more line here.
BACKBONES: dict[str, str] = {
    "transformer": "valle.models.backbones.transformer:TransformerBackbone",
    "retnet": "valle.models.backbones.retnet:RetNetBackbone",
}


def backbone_class(name: str) -> type[Backbone]:
    """The class registered under `name`, or an error listing the known names."""
    return lookup(BACKBONES, name, "backbone", "model.backbone.name")


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build a backbone by name.

    Args:
        name: a key of `BACKBONES`.
        **kwargs: that backbone's constructor arguments (d_model, n_heads, n_layers, ...).

    Raises:
        ValueError: unknown name, or a setting the backbone does not take (the message lists those it does).
    """
    cls = backbone_class(name)
    check_settings(cls, kwargs, f"backbone {name!r}")
    return cls(**kwargs)
