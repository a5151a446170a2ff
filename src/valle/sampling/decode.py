"""Text and prompt → codes at every level: the AR, then the NAR.

The one decode that synthesis (`valle.sampling.synthesize.Synthesizer`) and the validation samples
(`valle.training.callbacks.SampleAudio`) share, so both hear what the same settings produce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from valle.codecs.base import Codec
from valle.models.recognizer import CodeRecognizer
from valle.models.valle import Valle
from valle.sampling.ar import ArResult, DecodeLimits, decode_ar, decode_ar_beam
from valle.sampling.best_of import check_best_of, keep_clearest
from valle.sampling.nar import decode_nar
from valle.sampling.pipeline import ArSampler, NarSampler, SamplerConfig, make_generator
from valle.utils.batch import Conditioning


@dataclass
class Decoded:
    codes: Tensor  # [B, L, T] codes of every level, 0 past each row's length
    lengths: Tensor  # [B] frames per row
    hit_limit: Tensor  # [B] bool: the row reached its step limit without a stop token
    # [B, L - 1, T, K] the NAR's distributions whose expected codewords the codec decodes
    # (`SamplerConfig.expected_codewords`), else None: decode `codes`
    expected: Tensor | None = None

    def audio(self, codec: Codec, row: int) -> Tensor:
        """Row `row`'s waveform: its codes, or with `expected` its expected codewords, through `codec`."""
        n = int(self.lengths[row])
        if n == 0:
            return torch.zeros(0)
        expected = None if self.expected is None else self.expected[row, :, :n]
        return codec.decode(self.codes[row, :, :n], expected).cpu()


def ar_limits(config: SamplerConfig, cond: Conditioning) -> DecodeLimits:
    """The AR's limits under `config`: `max_ar_steps`, or `max_ar_steps_per_phoneme` per text id of
    each row (`SamplerConfig.ar_step_limit`), and the `max_ar_context` window."""
    rows = config.ar_step_limit(cond.text_lengths)
    return DecodeLimits(int(rows.max()), rows, config.max_ar_context)


@torch.inference_mode()
def decode(
    model: Valle,
    cond: Conditioning,
    config: SamplerConfig,
    *,
    fast: bool = False,
    recognizer: CodeRecognizer | None = None,
    on_step: Callable[[int], None] | None = None,
    on_level: Callable[[int], None] | None = None,
) -> Decoded:
    """Decode every row of `cond`: level 0 by the AR (sampling, or beam search when
    `config.beam_width > 1`; with `config.best_of` N > 1, N candidates a row, of which `recognizer` keeps
    the clearest: `valle.sampling.best_of`), then levels 1..L-1 by the NAR.

    Args:
        model: the model, in eval mode, on `cond`'s device.
        cond: the text and prompt of each row.
        config: the sampler settings, step limits and seed (a seeded generator on `cond`'s device
            draws for the AR and then the NAR; None draws from torch's global one).
        fast: decode AR steps through the compiled static step (`decode_ar`'s `fast`; not with beams).
        recognizer: judges the candidates of `config.best_of` > 1 (required then).
        on_step, on_level: called after each AR step and each NAR level (progress bars).

    Raises:
        ConfigError: `config.best_of` > 1 without a recognizer.
    """
    check_best_of(config.best_of, recognizer)
    generator = make_generator(config.seed, cond.device)
    rows = cond.repeat_rows(config.best_of) if config.best_of > 1 else cond
    sampler, limits = ArSampler(config, model.config.stop_token), ar_limits(config, rows)
    ar: ArResult
    if config.beam_width > 1:
        ar = decode_ar_beam(model, rows, sampler, limits, on_step=on_step, generator=generator)
    else:
        ar = decode_ar(model, rows, sampler, limits, generator=generator, on_step=on_step, fast=fast)
    if config.best_of > 1:
        assert recognizer is not None  # check_best_of
        ar = keep_clearest(recognizer, rows, ar, config.best_of)
    codes, expected = decode_nar(
        model,
        cond,
        ar.codes,
        ar.lengths,
        NarSampler(config),
        generator=generator,
        on_level=on_level,
        frame_symbols=ar.frame_symbols,
    )
    return Decoded(codes, ar.lengths, ar.hit_limit, expected)
