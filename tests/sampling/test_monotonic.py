"""Decoding with monotonic alignment: a text pointer that starts where the row starts, moves on only as
the AR's advance head says, never backwards and never past `<eos>`, and reaches the NAR."""

from __future__ import annotations

import pytest
import torch

from valle.errors import ConfigError
from valle.models.config import ValleConfig
from valle.models.said import runs
from valle.models.sequence import ADVANCE_CLASSES
from valle.models.valle import Valle
from valle.sampling.ar import DecodeLimits, decode_ar, decode_ar_beam
from valle.sampling.decode import decode
from valle.sampling.pipeline import ArSampler, SamplerConfig
from valle.utils.batch import Conditioning

TEXT_LENGTHS = (9, 6)


def aligned_model(frames_per_symbol: int | None = None, said_context: bool = False) -> Valle:
    """A tiny model with monotonic alignment; `frames_per_symbol` pins its pointer heads to give every
    symbol that many frames and then move on by one."""
    torch.manual_seed(0)
    config = ValleConfig.tiny(monotonic_alignment=True, said_context=said_context)
    model = Valle(config.with_data(20, 3, 32)).eval()
    assert model.ar.advance is not None
    if frames_per_symbol is not None:
        with torch.no_grad():
            model.ar.advance.weight.zero_()
            model.ar.advance.bias.fill_(-10.0)
            model.ar.advance.bias[1] = 10.0  # move on by one symbol
            model.ar.advance.bias[ADVANCE_CLASSES + frames_per_symbol - 1] = 10.0  # after this many frames
    return model


def conditioning(starts=(0, 3)) -> Conditioning:
    g = torch.Generator().manual_seed(1)
    text = [torch.randint(1, 20, (n,), generator=g) for n in TEXT_LENGTHS]
    prompts = [torch.randint(0, 32, (3, n), generator=g) for n in (12, 7)]
    return Conditioning.pad(text, prompts, 0, torch.tensor([False, True]), torch.tensor(starts))


def never_stops(model: Valle) -> ArSampler:
    with torch.no_grad():  # the stop logit out of reach, so every row runs to the step limit
        model.ar.heads.bias[0, -1] = -1e4
    return ArSampler(SamplerConfig(ar_temperature=0.0), model.config.stop_token)


@pytest.mark.parametrize("frames_per_symbol", [1, 3])
def test_the_pointer_reads_each_symbol_for_its_drawn_frames_and_stops_after_eos(frames_per_symbol):
    model = aligned_model(frames_per_symbol)
    result = decode_ar(model, conditioning(), never_stops(model), DecodeLimits(max_steps=40))
    assert result.frame_symbols is not None and result.frame_symbols.shape == result.codes.shape
    for row, (start, n) in enumerate(zip((0, 3), TEXT_LENGTHS, strict=True)):
        expected = torch.arange(start, n).repeat_interleave(frames_per_symbol)
        assert int(result.lengths[row]) == len(expected)  # `<eos>`'s frames over: the stop, not the limit
        assert torch.equal(result.frame_symbols[row, : len(expected)], expected)
    assert not result.hit_limit.any()


def test_beams_carry_their_pointers():
    model = aligned_model(frames_per_symbol=2)
    sampler = ArSampler(SamplerConfig(ar_temperature=0.0, beam_width=2), model.config.stop_token)
    never_stops(model)
    result = decode_ar_beam(model, conditioning(), sampler, DecodeLimits(max_steps=12))
    assert result.frame_symbols is not None
    for row, (start, n) in enumerate(zip((0, 3), TEXT_LENGTHS, strict=True)):
        frames = int(result.lengths[row])
        expected = torch.clamp(torch.arange(start, start + 6).repeat_interleave(2), max=n - 1)[:frames]
        assert torch.equal(result.frame_symbols[row, :frames], expected)


def test_the_pointer_tells_each_frame_its_symbols_context_as_training_tells_it():
    model = aligned_model(said_context=True)  # random heads: every symbol a drawn length, jumps too
    cond, fed = conditioning(), []
    step_input = model.ar_step_input

    def recording(codes, step=0, said=None, text_shown=True):
        fed.append(said.clone())
        return step_input(codes, step, said, text_shown)

    model.ar_step_input = recording  # type: ignore[method-assign]
    result = decode_ar(model, cond, never_stops(model), DecodeLimits(max_steps=600))
    assert result.frame_symbols is not None and not result.hit_limit.any()
    into, left = runs(result.frame_symbols, result.lengths)
    last = (cond.text_lengths - 1)[:, None]
    trained = model.ar.embeddings.said_code(cond.text, result.frame_symbols, last, into, left)
    told = torch.stack(fed, dim=1)  # [B, steps]: step t feeds frame t + 1
    for row, n in enumerate(result.lengths.tolist()):
        assert torch.equal(told[row, : n - 1], trained[row, 1:n])
    assert int(into.max()) > 3 and int(left.max()) > 3  # symbols of several frames: the countdown is tested


def likeliest_three_frames() -> Valle:
    """A tiny aligned model whose frames-left head likes 3 frames a symbol best, 1 and 2 nearly as well."""
    model = aligned_model(frames_per_symbol=3)
    assert model.ar.advance is not None
    with torch.no_grad():
        model.ar.advance.bias[ADVANCE_CLASSES : ADVANCE_CLASSES + 3] = torch.tensor([1.5, 1.5, 2.0])
    return model


def symbol_lengths(frame_symbols: torch.Tensor, frames: int) -> list[int]:
    """The frames each symbol of one row's first `frames` lasted (the last, cut by the limit, left out)."""
    return torch.unique_consecutive(frame_symbols[:frames], return_counts=True)[1][:-1].tolist()


def test_duration_temperature_zero_gives_every_symbol_its_likeliest_length_whatever_the_seed():
    model = likeliest_three_frames()
    never_stops(model)  # each row ends when its `<eos>`'s frames are over, on any CPU
    lengths = {}
    for temperature in (0.0, 1.0):
        for seed in (0, 1):
            sampler = ArSampler(
                SamplerConfig(ar_temperature=0.0, duration_temperature=temperature), model.config.stop_token
            )
            generator = torch.Generator().manual_seed(seed)
            result = decode_ar(
                model, conditioning(), sampler, DecodeLimits(max_steps=40), generator=generator
            )
            assert result.frame_symbols is not None
            lengths[temperature, seed] = symbol_lengths(result.frame_symbols[0], int(result.lengths[0]))
    assert lengths[0.0, 0] == lengths[0.0, 1] == [3] * len(lengths[0.0, 0]) and len(lengths[0.0, 0]) >= 5
    assert {1, 2} & set(lengths[1.0, 0] + lengths[1.0, 1])  # the model's own draw: other lengths too


@pytest.mark.parametrize("key", ["speed", "duration_temperature"])
def test_duration_settings_are_refused_by_a_model_without_durations(key):
    config = ValleConfig.tiny()
    model = Valle(config.with_data(20, 3, 32)).eval()
    sampler = ArSampler(SamplerConfig(ar_temperature=0.0, **{key: 0.5}), model.config.stop_token)
    with pytest.raises(ConfigError, match=rf"{key}=0.5: this model has no monotonic alignment"):
        decode_ar(model, conditioning(), sampler, DecodeLimits(max_steps=4))


def test_a_duration_temperature_out_of_range_is_refused_with_its_range():
    with pytest.raises(ConfigError, match=r"duration_temperature=3 must lie in \[0, 2\]"):
        SamplerConfig(duration_temperature=3)


def test_said_context_without_monotonic_alignment_is_refused_naming_both_keys():
    with pytest.raises(ConfigError, match=r"model.said_context=true needs model.monotonic_alignment=true"):
        ValleConfig.tiny(said_context=True)


def test_a_trained_style_random_head_only_moves_forward_and_the_nar_hears_the_pointer():
    model = aligned_model()
    cond = conditioning()
    sampler, limits = never_stops(model), DecodeLimits(max_steps=10)
    result = decode_ar(model, cond, sampler, limits)
    assert result.frame_symbols is not None
    assert (result.frame_symbols.diff(dim=1) >= 0).all()
    assert (result.frame_symbols.max(dim=1).values < torch.tensor(TEXT_LENGTHS)).all()
    # the NAR reads which symbol each frame says: other frame symbols, other level-1 logits
    level0 = result.codes[:, None].expand(-1, 3, -1).clone()
    said = model.nar_logits(cond, level0, result.lengths, 1, result.frame_symbols)
    other = model.nar_logits(cond, level0, result.lengths, 1, torch.zeros_like(result.frame_symbols))
    assert not torch.allclose(said, other)


def test_decode_passes_the_pointer_to_the_nar_and_the_fast_path_declines():
    model = aligned_model(frames_per_symbol=1)
    cond = conditioning()
    config = SamplerConfig(ar_temperature=0.0, max_ar_steps=8)
    plain, fast = decode(model, cond, config), decode(model, cond, config, fast=True)
    assert torch.equal(plain.codes, fast.codes)  # the compiled step cannot follow the pointer: eager
    with pytest.raises(ValueError, match="needs the text id each step says"):
        model.ar_step_input(torch.zeros(2, dtype=torch.long))
