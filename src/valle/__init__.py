"""valle: zero-shot text-to-speech with a neural-codec language model (VALL-E).

import valle
model = valle.load("model.pt")                                   # no Lightning or Hydra needed
[speech] = valle.synthesize(model, ["Hello there."], ["ref.wav"], top_p=0.9)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `import valle` stays light: torch loads on the first call
    from collections.abc import Sequence
    from pathlib import Path

    import torch

    from valle.card import LoadedModel
    from valle.sampling.prompt import Prompt
    from valle.sampling.synthesize import Synthesis

__version__ = "0.1.0"
__all__ = ["load", "synthesize"]


def load(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a model from an export or checkpoint without Lightning or Hydra (see `valle.export.load`)."""
    from valle.export import load as _load

    return _load(path, map_location)


def synthesize(
    model: LoadedModel,
    texts: Sequence[str],
    prompts: Sequence[str | Path | Prompt],
    *,
    language: str = "en-us",
    codec_weights: str | None = None,
    device: str = "cpu",
    recognizer: str | Path | None = None,
    **sampler: Any,
) -> list[Synthesis]:
    """Speak `texts` in the voices of `prompts` (see `valle.sampling.synthesize.synthesize`).

    Args:
        model: what `load` returns.
        texts: one sentence (or longer text) per output.
        prompts: one per text (or one for all): audio files, voice presets (.npz) or `Prompt`s.
        language: the phonemizer's language code.
        codec_weights: the codec weights to decode with; None: those the model was trained with.
        device: where to decode, e.g. "cpu" or "cuda".
        recognizer: a level-0 recognizer file (`python -m valle.recognizer`) to judge `best_of=N` draws.
        **sampler: `SamplerConfig` keys, e.g. `ar_temperature=0.8, top_p=0.9, seed=0, best_of=8`.

    Returns:
        One `Synthesis` (text, codes, wav, sample rate, hit_limit) per text.
    """
    from valle.sampling.synthesize import synthesize as _synthesize

    return _synthesize(
        model,
        texts,
        prompts,
        language=language,
        codec_weights=codec_weights,
        device=device,
        recognizer=recognizer,
        **sampler,
    )
