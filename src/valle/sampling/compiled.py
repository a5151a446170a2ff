"""The AR decode step as one static graph, compiled once and replayed: the optional fast path.

`decode_ar(..., fast=True)` swaps its per-step model call for `FastStep`: the same model computation
(the backbone's `static_step`, see `StaticStepping`, then the level-0 head) with fixed shapes and no host
sync, wrapped in `torch.compile` (on CUDA with `mode="reduce-overhead"`, i.e. CUDA graphs). Everything
else, the sampler pipeline included, is the eager loop's. The cache is the backbone's own preallocated
one, sized to the request and rounded up to `CAPACITY_STEP` positions so that requests of similar length
reuse one compiled graph; this module only asks it for its `static_view` and to `advance`.

When the fast path cannot run (a RetNet backbone, a `max_ar_context` window, int8 weights, a torch
without a working compiler), `fast_step` logs why and returns None, and decoding stays eager.

Measured (docs/benchmarks.md): on 2 CPU cores the compiled step gives the eager step's tokens, 2.1× faster
on `tiny` (per-op overhead fused away) and 1.03× on `small` (bound by reading the weights).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

import torch
from torch import Tensor

from valle.models.backbones import DecodeCache, StaticStepping
from valle.models.cache import StaticCache, StaticView
from valle.models.quantize import Int8Linear
from valle.models.valle import Valle

log = logging.getLogger(__name__)

CAPACITY_STEP = 64  # static caches are a multiple of this many positions: fewer distinct compiled graphs

StepFn = Callable[..., Tensor]


class FastStep:
    """`(codes [B], cache) → logits [B, V + 1]` through one static graph (see `bind`); advances the cache.

    Args:
        model: a Valle whose AR backbone has a static step (`StaticStepping`: the transformer), in eval mode.
        compile: wrap the step with `torch.compile`; False runs the very same static step eagerly.
        backend: torch.compile's backend.
    """

    def __init__(self, model: Valle, compile: bool = True, backend: str | Callable = "inductor") -> None:
        backbone = model.ar.backbone
        if not isinstance(backbone, StaticStepping):
            raise TypeError(
                f"the static decode step needs a backbone that has one (the transformer), not "
                f"{type(backbone).__name__}"
            )

        def step(codes: Tensor, view: StaticView) -> Tensor:
            hidden = backbone.static_step(model.ar_step_input(codes), view)
            return model.ar_logits(hidden[:, 0])

        self.eager: StepFn = step
        self.step: StepFn = step
        if compile:
            device = next(model.parameters()).device
            mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs on a GPU
            self.step = torch.compile(step, fullgraph=True, dynamic=False, mode=mode, backend=backend)
        self.compiled = compile

    def bind(self, cache: DecodeCache) -> Callable[[Tensor], Tensor]:
        """`codes [B] → logits` on this cache; its static view is made once, not every step.

        Raises:
            TypeError: the cache has no static view (it is not from a `StaticStepping` backbone).
        """
        if not isinstance(cache, StaticCache):
            raise TypeError(
                f"a static decode step needs a cache with a static view, not {type(cache).__name__}"
            )
        view = cache.static_view()
        return lambda codes: self(codes, cache, view)

    def __call__(self, codes: Tensor, cache: StaticCache, view: StaticView) -> Tensor:
        try:
            logits = self.step(codes, view)
        except Exception as error:  # noqa: BLE001 - compilation happens on the first call; nothing was written
            if not self.compiled:
                raise
            log.warning(
                "torch.compile of the AR decode step failed (%s: %s); decoding eagerly",
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
            )
            self.step, self.compiled = self.eager, False
            logits = self.step(codes, view)
        cache.advance(1)
        return logits


_steps: weakref.WeakKeyDictionary[Valle, FastStep] = weakref.WeakKeyDictionary()


def fast_step(
    model: Valle, max_context: int | None, guided: bool = False, speculative: bool = False
) -> FastStep | None:
    """The model's compiled step (built once per model), or None with a log line when it cannot apply
    (`guided`: classifier-free guidance, whose second pass it does not run; `speculative`: Medusa
    decoding, whose passes take several positions)."""
    if not isinstance(model.ar.backbone, StaticStepping):
        log.info(
            "fast decoding needs a backbone with a static step, the transformer backbone (this AR is %s); "
            "decoding eagerly",
            type(model.ar.backbone).__name__,
        )
        return None
    if max_context:
        log.info("fast decoding has no max_ar_context window; decoding eagerly")
        return None
    if guided:
        log.info("fast decoding does not run classifier-free guidance (sampler.cfg_scale); decoding eagerly")
        return None
    if speculative:
        log.info(
            "fast decoding steps one position; Medusa passes take several (sampler.medusa); decoding eagerly"
        )
        return None
    if model.config.segment_positions > 0:
        log.info(
            "fast decoding does not add per-step segment positions (model.segment_positions); "
            "decoding eagerly"
        )
        return None
    if model.config.monotonic_alignment:
        log.info(
            "fast decoding does not follow the text pointer (model.monotonic_alignment); decoding eagerly"
        )
        return None
    if any(isinstance(module, Int8Linear) for module in model.modules()):
        # dynamo cannot trace fbgemm's int8 kernel, and wrapping it as an opaque op made the step slower
        log.info("fast decoding does not compile int8 weights (quantize=int8); decoding eagerly")
        return None
    if model not in _steps:
        _steps[model] = FastStep(model)
    return _steps[model]


def static_capacity(needed: int) -> int:
    """`needed` cache positions rounded up to a multiple of `CAPACITY_STEP`."""
    return -(-needed // CAPACITY_STEP) * CAPACITY_STEP
