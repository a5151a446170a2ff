"""A static-shape AR decode step for the transformer backbone, optionally wrapped with `torch.compile`.

The eager loop (`valle.sampling.ar.decode_ar`) reserves cache slots with a host sync
(`KVCache.reserve` reads `used.max()`) and rebuilds Python-side state every step. Here the cache is
the same preallocated `KVCache`, filled by the same prefill, but a step takes the slot and position
of every row as tensors, so one step is a fixed graph with no host sync inside: it can be compiled
once and replayed. Greedy decoding only (argmax), which is what makes "compiled == eager" checkable.
The eager path runs the very same step function uncompiled.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

import torch
from torch import Tensor

from valle.models.backbones.base import attention_mask
from valle.models.backbones.transformer import TransformerBackbone
from valle.models.valle import Valle
from valle.sampling.ar import ArResult, _start

log = logging.getLogger(__name__)

StepFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def make_step(model: Valle) -> StepFn:
    """The one-token step: (codes [B], keys, values, positions [B, S], slot [B], position [B]) → logits.

    keys/values [L, B, H, S, Dh] and positions are updated in place at `slot`; slot and position are
    not (the caller advances them), so the function is free of Python-side state.
    """
    backbone = model.ar.backbone
    if not isinstance(backbone, TransformerBackbone):
        raise TypeError(f"the static decode step needs the transformer backbone, not {type(backbone).__name__}")

    def step(codes: Tensor, keys: Tensor, values: Tensor, positions: Tensor, slot: Tensor,
             position: Tensor) -> Tensor:
        x = model.ar_step_input(codes)
        slots = slot[:, None]
        positions.scatter_(1, slots, position[:, None])
        mask = attention_mask(position[:, None], positions, True)
        h, rope = backbone._inputs(x, position[:, None])
        for i, block in enumerate(backbone.blocks):
            h = block(h, rope, mask, (keys[i], values[i], slots))
        return model.ar_logits(backbone.norm(h)[:, 0])

    return step


def compile_step(step: StepFn) -> StepFn | None:
    """`torch.compile(step)`, or None (with a log line) when this torch or machine cannot compile it."""
    try:
        return torch.compile(step, dynamic=False, fullgraph=True)
    except Exception as error:  # noqa: BLE001 - any backend failure means: use the eager step
        log.warning("torch.compile of the AR decode step failed (%s); decoding eagerly", error)
        return None


class GreedyDecoder:
    """Greedy AR decoding with the static step, compiled (default) or eager; reusable across calls.

    Args:
        model: a Valle whose AR backbone is the transformer, in eval mode.
        compile: wrap the step with `torch.compile`; falls back to eager (logged) when compilation fails.
    """

    def __init__(self, model: Valle, compile: bool = True) -> None:
        self.model = model
        self.eager = make_step(model)
        self.step = (compile_step(self.eager) if compile else None) or self.eager
        self.compiled = self.step is not self.eager

    @torch.inference_mode()
    def __call__(self, text: Tensor, text_lengths: Tensor, prompt: Tensor, prompt_lengths: Tensor,
                 max_steps: int, allow_stop: bool = True) -> ArResult:
        """Level-0 codes for a batch, as `decode_ar` with an argmax sampler would give them.

        allow_stop=False masks the stop logit, so every row runs exactly `max_steps` (benchmarks).
        """
        model, stop = self.model, self.model.config.stop_token
        batch, device = text.shape[0], text.device
        cache, logits = _start(model, text, text_lengths, prompt, prompt_lengths, max_steps, None)
        slot, position = cache.used.clone(), cache.next_position.clone()
        history = torch.full((batch, max_steps), -1, dtype=torch.long, device=device)
        lengths = torch.full((batch,), max_steps, dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        for step in range(max_steps):
            codes = (logits if allow_stop else logits[:, :-1]).argmax(dim=-1)
            codes = torch.where(finished, stop, codes)
            lengths = torch.where(~finished & (codes == stop), step, lengths)
            finished = finished | (codes == stop)
            history[:, step] = torch.where(finished, -1, codes)
            if allow_stop and bool(finished.all()):
                break
            if step + 1 == max_steps:
                break  # the last code needs no forward
            logits = self._step(codes, cache.keys, cache.values, cache.positions, slot, position)
            slot, position = slot + 1, position + 1
        width = int(lengths.max()) if batch else 0
        return ArResult(history[:, :width].clamp(min=0), lengths, ~finished)

    def _step(self, *args: Tensor) -> Tensor:
        """The step; a compiled step that fails (compilation is lazy: on its first call) falls back to eager."""
        if not self.compiled:
            return self.eager(*args)
        try:
            return self.step(*args)
        except Exception as error:  # noqa: BLE001 - compilation runs here; nothing was written yet
            log.warning("torch.compile of the AR decode step failed (%s); decoding eagerly", error)
            self.step, self.compiled = self.eager, False
            return self.eager(*args)


_decoders: weakref.WeakKeyDictionary[Valle, dict[bool, GreedyDecoder]] = weakref.WeakKeyDictionary()


def decode_ar_compiled(model: Valle, text: Tensor, text_lengths: Tensor, prompt: Tensor, prompt_lengths: Tensor,
                       max_steps: int, allow_stop: bool = True, compile: bool = True) -> ArResult:
    """One-off greedy decoding with the static step (the compiled step is cached on the model)."""
    decoders = _decoders.setdefault(model, {})
    if compile not in decoders:
        decoders[compile] = GreedyDecoder(model, compile)
    decoder = decoders[compile]
    return decoder(text, text_lengths, prompt, prompt_lengths, max_steps, allow_stop)
