"""Streaming synthesis: chunks come while the AR decodes, join to the whole utterance without clicks,
and say the level-0 codes of the same seed not streamed."""

from __future__ import annotations

import copy

import pytest
import torch

from valle.card import LoadedModel, ModelCard
from valle.errors import ConfigError
from valle.models.config import ValleConfig
from valle.models.valle import Valle
from valle.sampling import stream
from valle.sampling.nar import decode_nar
from valle.sampling.pipeline import NarSampler, SamplerConfig
from valle.sampling.prompt import Prompt
from valle.sampling.stream import StreamDecoder, StreamSettings, nar_levels
from valle.sampling.synthesize import Synthesizer
from valle.text import SymbolMap, phonemize

TEXT = "The lazy dog sleeps."
SETTINGS = StreamSettings(
    chunk_frames=10, first_chunk_frames=5, lookahead_frames=2, context_frames=8, crossfade_frames=2
)


@pytest.fixture(scope="module")
def synthesizer(tiny_codec):
    symbols = SymbolMap.build([phonemize("The quick brown fox jumps over the lazy dog, twice!")], ["en-us"])
    torch.manual_seed(0)
    config = ValleConfig.tiny(monotonic_alignment=True)
    model = Valle(config.with_data(len(symbols), tiny_codec.n_levels, tiny_codec.codebook_size))
    card = ModelCard(model.config, symbols, tiny_codec.info, {})
    return Synthesizer(LoadedModel(model.eval(), card), tiny_codec)


@pytest.fixture(scope="module")
def prompt():
    return Prompt(torch.randint(0, 1024, (2, 40), generator=torch.Generator().manual_seed(3)))


def test_a_stream_says_the_level0_codes_of_the_same_seed_not_streamed(synthesizer, prompt):
    config = SamplerConfig(ar_temperature=0.9, top_p=0.9, max_ar_steps=45, seed=5)
    stream = synthesizer.stream(TEXT, prompt, config=config, settings=SETTINGS)
    chunks = list(stream)
    [whole] = synthesizer.synthesize([TEXT], [prompt], config=config)
    [codes] = stream.codes
    assert torch.equal(codes[0], whole.codes[0])
    frames, hop = codes.shape[1], synthesizer.codec.hop_length
    assert frames > SETTINGS.first_chunk_frames + SETTINGS.chunk_frames  # several chunks were due
    assert len(chunks) >= 3 and sum(c.numel() for c in chunks) == frames * hop == whole.wav.numel()
    # the first chunk is out after `first_chunk_frames` (+ lookahead) frames, not at the end
    assert chunks[0].numel() <= (SETTINGS.first_chunk_frames + SETTINGS.lookahead_frames) * hop


@pytest.mark.parametrize("expected_codewords", [0.0, 0.3])
def test_joined_chunks_are_the_whole_decode_without_clicks(synthesizer, prompt, expected_codewords):
    config = SamplerConfig(ar_temperature=0.9, max_ar_steps=60, seed=1, expected_codewords=expected_codewords)
    stream = synthesizer.stream(TEXT, prompt, config=config, settings=SETTINGS)
    chunks = list(stream)
    joined = torch.cat(chunks)
    [expected] = stream.expected
    assert (expected is None) == (expected_codewords == 0)
    whole = synthesizer.codec.decode(stream.codes[0], expected)  # the same codes decoded in one go
    assert joined.shape == whole.shape
    # with decoder context and a crossfade, the stream follows the one-go decode closely ...
    error = (joined - whole).pow(2).mean() / whole.pow(2).mean()
    assert float(error) < 0.1
    # ... and no chunk boundary jumps more than the signal itself does anywhere
    steps = (whole[1:] - whole[:-1]).abs()
    boundaries = torch.tensor([c.numel() for c in chunks[:-1]]).cumsum(0)
    jumps = (joined[boundaries] - joined[boundaries - 1]).abs()
    assert float(jumps.max()) <= float(steps.max())


def test_the_nar_keeps_the_levels_of_frames_already_played(synthesizer):
    """A chunk's NAR pass runs over every frame so far: the frames already emitted keep their levels,
    and the later levels hear those (not a fresh draw), so what was played is what the stream's codes say."""
    model = synthesizer.model
    g = torch.Generator().manual_seed(0)
    cond = synthesizer.conditioning([TEXT], [Prompt(torch.randint(0, 1024, (2, 30), generator=g))], "en-us")
    level0 = torch.randint(0, 1024, (1, 24), generator=g)
    symbols = torch.arange(24)[None] // 8 + 2
    fixed = torch.randint(0, 1024, (1, 2, 10), generator=g)
    fixed[:, 0] = level0[:, :10]
    sampler = NarSampler(SamplerConfig(nar_temperature=1.0))
    codes, _ = decode_nar(
        model, cond, level0, torch.tensor([24]), sampler, generator=g, frame_symbols=symbols, fixed=fixed
    )
    assert torch.equal(codes[:, :, :10], fixed) and torch.equal(codes[:, 0], level0)
    free, _ = decode_nar(model, cond, level0, torch.tensor([24]), sampler, generator=g, frame_symbols=symbols)
    assert not torch.equal(free[:, 1, :10], fixed[:, 1])  # a random code per frame: the pass kept them


def test_beam_search_and_empty_text_are_refused_before_any_audio(synthesizer, prompt):
    with pytest.raises(ConfigError, match="beam"):
        synthesizer.stream(TEXT, prompt, config=SamplerConfig(beam_width=2))
    with pytest.raises(Exception, match="empty text"):
        synthesizer.stream("  ", prompt)


def test_stream_settings_follow_the_codec_frame_rate():
    settings = StreamSettings.for_codec(75.0, chunk_seconds=0.4, first_chunk_seconds=0.2)
    assert (settings.chunk_frames, settings.first_chunk_frames) == (30, 15)
    assert settings.crossfade_frames <= settings.context_frames
    with pytest.raises(ValueError, match="crossfade"):
        StreamSettings(context_frames=1, crossfade_frames=2)


def test_chunks_grow_so_a_long_sentence_costs_a_few_nar_passes():
    settings = StreamSettings(chunk_frames=10, first_chunk_frames=5, growth=2.0, max_chunk_frames=30)
    assert [settings.due(k) for k in range(5)] == [5, 10, 20, 30, 30]
    with pytest.raises(ValueError, match="growth"):
        StreamSettings(growth=0.5)


@pytest.mark.parametrize("expected_codewords", [0.0, 0.3])
def test_rows_due_at_one_step_share_one_nar_pass_with_the_levels_of_each_alone(
    synthesizer, expected_codewords
):
    """The server runs one NAR pass for every row whose chunk fell due at a step (`emit_chunks`); each
    row gets the levels its own pass would give, its emitted frames kept, and (`expected_codewords`) the
    distributions its own pass would give. In float64, so that padding the rows together cannot flip an
    argmax at a float32 near-tie."""
    config = SamplerConfig(expected_codewords=expected_codewords)
    model = copy.deepcopy(synthesizer.model).double()
    g = torch.Generator().manual_seed(4)
    decoders = []
    for frames, text in ((30, "The lazy dog."), (17, "A quick brown fox jumps."), (24, "Twice!")):
        prompt = Prompt(
            torch.randint(0, 1024, (2, int(torch.randint(10, 40, (1,), generator=g))), generator=g)
        )
        cond = synthesizer.conditioning([text], [prompt], "en-us")
        decoder = StreamDecoder(model, synthesizer.codec, cond, NarSampler(config), SETTINGS)
        for code in torch.randint(0, 1024, (frames,), generator=g).tolist():
            decoder.append(code, 3)
        decoder.fixed = torch.randint(0, 1024, (2, frames // 3), generator=g)  # frames already played
        decoder.fixed[0] = torch.tensor(decoder.level0[: frames // 3])  # (their level 0 is the AR's)
        decoders.append(decoder)
    together = nar_levels(decoders)
    for decoder, (levels, expected) in zip(decoders, together, strict=True):
        [(alone, expected_alone)] = nar_levels([decoder])
        assert torch.equal(levels, alone) and levels.shape == (2, decoder.frames)
        assert torch.equal(levels[:, : decoder.fixed.shape[1]], decoder.fixed)
        if expected_codewords:
            assert expected is not None and expected.shape == (1, decoder.frames, 1024)
            assert torch.allclose(expected, expected_alone, atol=1e-9)
            assert torch.allclose(expected.sum(-1), torch.ones(1, decoder.frames, dtype=expected.dtype))
        else:
            assert expected is None and expected_alone is None


def test_on_the_cpu_rows_share_nar_passes_of_bounded_size_with_the_chunks_of_one_pass(
    synthesizer, monkeypatch
):
    """A CPU's NAR pass over many rows costs more a row than over few (`CPU_NAR_PASS_POSITIONS`), so the
    rows due at one step share passes of bounded size; each row's chunk is what one shared pass gives."""
    model = copy.deepcopy(synthesizer.model).double()  # float64: no near-tie flips between pass shapes
    g = torch.Generator().manual_seed(7)
    decoders = []
    for frames, text in ((20, "The lazy dog."), (12, "A fox."), (30, "Twice!")):
        prompt = Prompt(torch.randint(0, 1024, (2, 25), generator=g))
        cond = synthesizer.conditioning([text], [prompt], "en-us")
        decoder = StreamDecoder(model, synthesizer.codec, cond, NarSampler(SamplerConfig()), SETTINGS)
        for code in torch.randint(0, 1024, (frames,), generator=g).tolist():
            decoder.append(code, 3)
        decoders.append(decoder)
    positions = [d.positions for d in decoders]
    assert positions[2] > max(positions[:2])  # the third row widens the pass
    budget = 2 * max(positions[:2])  # the first two fit together, the third does not join them
    assert 3 * positions[2] > budget >= positions[2]
    passes: list[int] = []

    def counted(*args, **kwargs):
        passes.append(args[2].shape[0])  # the rows of this pass's level 0
        return decode_nar(*args, **kwargs)

    monkeypatch.setattr(stream, "decode_nar", counted)
    one_pass = copy.deepcopy(decoders)
    monkeypatch.setattr(stream, "CPU_NAR_PASS_POSITIONS", budget)
    chunks = stream.emit_chunks(decoders, [d.frames for d in decoders], [True] * 3)
    assert passes == [2, 1]
    monkeypatch.setattr(stream, "CPU_NAR_PASS_POSITIONS", 10**9)
    alone = stream.emit_chunks(one_pass, [d.frames for d in one_pass], [True] * 3)
    assert passes == [2, 1, 3]
    for grouped, shared, d, o in zip(chunks, alone, decoders, one_pass, strict=True):
        assert torch.equal(d.codes(), o.codes())
        assert torch.allclose(grouped, shared, atol=1e-5)


def test_a_continued_prompts_pointer_starts_on_the_first_sound_it_did_not_say(synthesizer):
    """With monotonic alignment, a prompt with its transcript is continued from the first symbol after its
    words, found by aligning its reading to the whole text's (valle.text.continuation)."""
    said, rest = "The quick brown fox jumps over", "the lazy dog."
    prompt = Prompt(torch.zeros(2, 30, dtype=torch.long), said)
    cond = synthesizer.conditioning([rest], [prompt], "en-us")
    symbols = synthesizer.loaded.card.symbols
    start = int(cond.starts[0])
    assert int(cond.text[0, start]) == symbols.id("ð")  # "the", not the boundary before it
    assert int(cond.text[0, start + 1]) == symbols.id("ə") and int(cond.text[0, start + 2]) == symbols.id(" ")
    plain = synthesizer.conditioning([rest], [Prompt(torch.zeros(2, 30, dtype=torch.long))], "en-us")
    assert int(plain.starts[0]) == 0
