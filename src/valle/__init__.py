"""valle: zero-shot text-to-speech with a neural-codec language model (VALL-E)."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load"]


def load(path, map_location="cpu"):
    """Rebuild a model from an export or checkpoint without Lightning or Hydra (see `valle.export.load`)."""
    from valle.export import load as _load

    return _load(path, map_location)
