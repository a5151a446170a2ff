"""valle: zero-shot text-to-speech with a neural-codec language model (VALL-E).

import valle
model = valle.load("model.pt")                                   # no Lightning or Hydra needed
[speech] = valle.synthesize(model, ["Hello there."], ["ref.wav"], top_p=0.9)
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "synthesize"]


def load(path, map_location="cpu"):
    """Rebuild a model from an export or checkpoint without Lightning or Hydra (see `valle.export.load`)."""
    from valle.export import load as _load

    return _load(path, map_location)


def synthesize(model, texts, prompts, **settings):
    """Speak `texts` in the voices of `prompts` (see `valle.sampling.synthesize.synthesize`)."""
    from valle.sampling.synthesize import synthesize as _synthesize

    return _synthesize(model, texts, prompts, **settings)
