"""Sequence backbones behind one protocol (`Backbone`), built by name.

`build_backbone("transformer", d_model=512, n_heads=8, n_layers=12)` takes exactly the keys of a
`configs/model/backbone/*.yaml` file plus the scale's sizes.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from valle.models.backbones.base import Backbone, BackboneOutput, ContextWindow, attention_mask

__all__ = ["BACKBONES", "Backbone", "BackboneOutput", "ContextWindow", "attention_mask", "build_backbone"]

# name → "module:Class", imported on demand so that a backbone's extra dependencies (torchscale for RetNet)
# load only when it is built. A new backbone is one more line here.
BACKBONES: dict[str, str] = {
    "transformer": "valle.models.backbones.transformer:TransformerBackbone",
    "retnet": "valle.models.backbones.retnet:RetNetBackbone",
}


def backbone_class(name: str) -> type[Backbone]:
    """The class registered under `name`, or an error listing the known names."""
    if name not in BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; set model.backbone.name to one of {', '.join(sorted(BACKBONES))}"
        )
    module, _, cls = BACKBONES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build a backbone by name.

    Args:
        name: a key of `BACKBONES`.
        **kwargs: that backbone's constructor arguments (d_model, n_heads, n_layers, ...).

    Raises:
        ValueError: unknown name, or a setting the backbone does not take (the message lists those it does).
    """
    cls = backbone_class(name)
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"backbone {name!r} has no setting {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
    return cls(**kwargs)
