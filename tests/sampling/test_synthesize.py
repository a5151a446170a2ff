"""The inference path with a random tiny model: shapes, modes, prompts and their errors."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import needs_int8_kernels, real_speech_dir
from valle.audio import AudioError
from valle.card import LoadedModel, ModelCard
from valle.errors import ConfigError, UserError
from valle.models.config import ValleConfig
from valle.models.quantize import Int8Heads, Int8Linear
from valle.models.valle import Valle
from valle.sampling.pipeline import SamplerConfig
from valle.sampling.prompt import Prompt, load_prompt, save_voice, trim_silence
from valle.sampling.synthesize import Synthesis, Synthesizer
from valle.text import SymbolMap, phonemize
from valle.text.split import split_sentences


@pytest.fixture(scope="module")
def synthesizer(tiny_codec):
    symbols = SymbolMap.build([phonemize("The quick brown fox jumps over the lazy dog, twice!")], ["en-us"])
    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny().with_data(len(symbols), tiny_codec.n_levels, tiny_codec.codebook_size))
    card = ModelCard(model.config, symbols, tiny_codec.info, {"longest_seconds": 1.0})
    loaded = LoadedModel(model.eval(), card)
    return Synthesizer(loaded, tiny_codec)


def test_typed_punctuation_reaches_the_model_as_the_pauses_it_knows(synthesizer, caplog):
    # the model knows "," and "!" only: a word processor's dashes, quotes and ellipsis are not <unk>
    with caplog.at_level("WARNING"):
        typed = synthesizer.text_ids("The “quick” fox — the lazy dog…", "en-us")
    assert "unknown" not in caplog.text
    assert typed.tolist() == synthesizer.text_ids("The quick fox, the lazy dog,", "en-us").tolist()


def test_outputs_have_codec_shapes_and_stop_within_the_guard(synthesizer):
    config = SamplerConfig(max_ar_steps=40, seed=0)
    prompt = Prompt(torch.randint(0, 1024, (2, 50)))
    [result] = synthesizer.synthesize(["The lazy dog."], [prompt], config=config)
    frames = result.codes.shape[1]
    assert result.codes.shape[0] == 2 and 0 < frames <= 40
    assert result.wav.numel() == frames * 320 and result.sample_rate == 24000


@needs_int8_kernels
def test_int8_synthesis_runs_every_level_on_a_copy(synthesizer, tiny_codec):
    int8 = Synthesizer(synthesizer.loaded, tiny_codec, quantize="int8")
    assert any(isinstance(m, Int8Heads) for m in int8.model.modules())
    assert not any(isinstance(m, (Int8Linear, Int8Heads)) for m in synthesizer.model.modules())
    prompt = Prompt(torch.randint(0, 1024, (2, 50), generator=torch.Generator().manual_seed(0)))
    config = SamplerConfig(max_ar_steps=30, seed=0)
    [result] = int8.synthesize(["The lazy dog."], [prompt], config=config)
    frames = result.codes.shape[1]
    assert result.codes.shape[0] == 2 and 0 < frames <= 30 and int(result.codes.max()) < 1024
    assert result.wav.numel() == frames * 320


def test_seeded_sampling_is_reproducible(synthesizer):
    prompt = Prompt(torch.randint(0, 1024, (2, 50)))
    config = SamplerConfig(max_ar_steps=30, seed=7, top_p=0.9)
    first = synthesizer.synthesize(["The quick fox."], [prompt], config=config)[0].codes
    again = synthesizer.synthesize(["The quick fox."], [prompt], config=config)[0].codes
    assert torch.equal(first, again)


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_long_text_is_split_and_joined(synthesizer, mode):
    prompt = Prompt(torch.randint(0, 1024, (2, 50)))
    config = SamplerConfig(max_ar_steps=20, seed=0)
    [result] = synthesizer.synthesize(
        ["The lazy dog. The brown fox!"], [prompt], config=config, long_text=mode
    )
    single = [
        synthesizer.synthesize([s], [prompt], config=config)[0].codes.shape[1]
        for s in ("The lazy dog.", "The brown fox!")
    ]
    if mode == "fixed":
        assert result.codes.shape[1] == sum(single)
    else:
        assert result.codes.shape[1] > 0


def test_long_text_whole_is_one_ar_run_over_every_sentence(synthesizer):
    prompt = Prompt(torch.randint(0, 1024, (2, 50)))
    config = SamplerConfig(max_ar_steps=30, seed=0)
    text = "The lazy dog. The brown fox!"
    [result] = synthesizer.synthesize([text], [prompt], config=config, long_text="whole")
    [one_run] = synthesizer.generate([text], [synthesizer.prompt(prompt, 3.0)], "en-us", config)
    assert torch.equal(result.codes, one_run.codes)
    [split] = synthesizer.synthesize([text], [prompt], config=config, long_text="fixed")
    assert not torch.equal(split.codes, result.codes)
    with pytest.raises(ConfigError, match="long_text='one'"):
        synthesizer.synthesize([text], [prompt], config=config, long_text="one")


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_expected_codewords_keep_the_codes_and_decode_the_nars_distributions(synthesizer, mode):
    prompt = Prompt(torch.randint(0, 1024, (2, 50), generator=torch.Generator().manual_seed(2)))
    plain = SamplerConfig(max_ar_steps=20, seed=0)

    def say(expected_codewords: float) -> Synthesis:
        config = replace(plain, expected_codewords=expected_codewords)
        return synthesizer.synthesize(
            ["The lazy dog. The brown fox!"], [prompt], config=config, long_text=mode
        )[0]

    codes_only, sharp, soft = say(0.0), say(1e-4), say(1.0)
    # the same draws (the distributions take no randomness), each sentence's audio from its own NAR pass
    assert torch.equal(sharp.codes, codes_only.codes) and torch.equal(soft.codes, codes_only.codes)
    assert sharp.wav.shape == soft.wav.shape == codes_only.wav.shape
    # near temperature 0 the distributions are the greedy NAR's codes; at 1 they are heard
    scale = float(codes_only.wav.abs().max())
    assert float((sharp.wav - codes_only.wav).abs().max()) <= 1e-3 * scale + 1e-6
    assert not torch.equal(soft.wav, codes_only.wav)


def test_the_long_output_warning_names_the_longest_sentence_not_the_whole_output(synthesizer, caplog):
    # the model saw utterances of at most 1 s (the fixture's stats); each sentence here runs to 1.2 s
    prompt = Prompt(torch.randint(0, 1024, (2, 50), generator=torch.Generator().manual_seed(0)))
    config = SamplerConfig(max_ar_steps=90, seed=0, length_penalty=1000.0)  # no stop before the limit
    with caplog.at_level("WARNING"):
        [result] = synthesizer.synthesize(["The lazy dog. The brown fox!"], [prompt], config=config)
    assert result.codes.shape[1] == 180  # 2.4 s in all
    assert (
        "an output sentence is longer (1.2 s) than the longest utterance seen in training (1.0 s)"
        in caplog.text
    )


def test_prompt_audio_is_trimmed_cropped_and_encoded(tiny_codec, tmp_path):
    wav, rate = sf.read(str(real_speech_dir() / "LJ049-0108.wav"), dtype="float32")
    padded = np.concatenate([np.zeros(rate), wav, np.zeros(rate)])
    sf.write(
        str(tmp_path / "p.flac"), np.stack([padded, padded], axis=1), rate
    )  # stereo flac, silence around
    prompt = load_prompt(tmp_path / "p.flac", tiny_codec, prompt_seconds=3.0)
    assert prompt.codes.shape == (2, 225) and prompt.text is None
    trimmed = trim_silence(torch.from_numpy(padded), rate)
    assert len(trimmed) < len(padded) - rate


@pytest.mark.parametrize("silence", ["near_silence_over_a_dc_offset", "a_noise_floor"])
def test_leading_silence_is_trimmed_over_a_dc_offset_or_a_noise_floor(silence):
    wav, rate = sf.read(str(real_speech_dir() / "LJ049-0124.wav"), dtype="float32")  # 3.4 s
    speech = len(trim_silence(torch.from_numpy(wav), rate))
    padded = np.concatenate([np.zeros(2 * rate, dtype=np.float32), wav])  # 2 s before the speech
    rng = np.random.default_rng(0)
    if silence == "near_silence_over_a_dc_offset":  # a -60 dBFS hiss, all of it 0.2 up
        padded = padded + rng.normal(0, 1e-3, len(padded)) + 0.2
    else:  # a -34 dBFS hiss under all of it
        padded = padded + rng.normal(0, 10 ** (-34 / 20), len(padded))
    trimmed = trim_silence(torch.from_numpy(padded.astype(np.float32)), rate)
    start = trimmed.storage_offset()  # a slice of `padded`: where it begins
    assert 2 * rate <= start < 2.3 * rate and abs(len(trimmed) - speech) < 0.25 * rate


def test_a_prompt_with_its_transcript_keeps_all_the_speech_the_transcript_describes(
    tiny_codec, tmp_path, caplog
):
    wav, rate = sf.read(str(real_speech_dir() / "LJ049-0108.wav"), dtype="float32")  # 9 s
    transcript = (real_speech_dir() / "LJ049-0108.txt").read_text().strip()
    sf.write(str(tmp_path / "p.wav"), wav, rate)
    prompt = load_prompt(tmp_path / "p.wav", tiny_codec, prompt_seconds=3.0, text=transcript)
    speech_seconds = len(trim_silence(torch.from_numpy(wav), rate)) / rate
    assert prompt.text == transcript and speech_seconds > 8
    assert prompt.codes.shape[1] == pytest.approx(
        speech_seconds * tiny_codec.frame_rate, abs=2
    )  # not cropped to 3 s
    assert "continuation mode" not in caplog.text
    sf.write(str(tmp_path / "long.wav"), np.concatenate([wav, wav]), rate)  # 18 s: kept, with a warning
    long = load_prompt(
        tmp_path / "long.wav", tiny_codec, prompt_seconds=3.0, text=f"{transcript} {transcript}"
    )
    assert long.codes.shape[1] > 2 * prompt.codes.shape[1] - 5 and "continuation mode" in caplog.text


def test_the_callers_model_is_neither_switched_to_eval_nor_moved(synthesizer, tiny_codec):
    model = copy.deepcopy(synthesizer.loaded.model).train()
    speaking = Synthesizer(replace(synthesizer.loaded, model=model), tiny_codec)
    assert model.training and speaking.model is not model and not speaking.model.training
    assert torch.equal(next(speaking.model.parameters()), next(model.parameters()))
    ready = Synthesizer(synthesizer.loaded, tiny_codec)  # on the device and in eval mode already: no copy
    assert ready.model is synthesizer.loaded.model


def test_voice_presets_round_trip_and_check_the_codec(tiny_codec, tmp_path):
    from valle.codecs import describe_codec

    prompt = Prompt(torch.randint(0, 1024, (2, 30)), "hello", "ref.wav")
    path = save_voice(tmp_path / "v.npz", prompt, tiny_codec.info)
    loaded = load_prompt(path, tiny_codec)
    assert torch.equal(loaded.codes, prompt.codes) and loaded.text == "hello"
    with pytest.raises(ValueError, match="voice preset .* was made with codec 'encodec'.*'dac'"):
        from valle.sampling.prompt import load_voice

        load_voice(path, describe_codec("dac", n_levels=2))


def test_a_missing_corrupt_or_foreign_voice_preset_is_named_with_how_to_make_one(tiny_codec, tmp_path):
    (tmp_path / "text.npz").write_text("not an archive")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    for name, problem in [
        ("missing.npz", "no such voice preset"),
        ("text.npz", "not a voice preset \\(not an .npz archive\\)"),
        ("other.npz", "not a voice preset \\(it has no array codes, text, codec, source\\)"),
    ]:
        with pytest.raises(
            UserError, match=f"prompt=.*{name}: {problem}; make one with python -m valle.voice"
        ):
            load_prompt(tmp_path / name, tiny_codec)
    wordless = save_voice(
        tmp_path / "emoji.npz", Prompt(torch.zeros(2, 30, dtype=torch.long), "🍕🍕"), tiny_codec.info
    )
    with pytest.raises(
        UserError, match=r"prompt=.*emoji.npz: the preset's transcript cannot be read \(empty"
    ):
        load_prompt(wordless, tiny_codec)  # made before valle.voice make checked transcripts
    assert load_prompt(wordless, tiny_codec, text="Pizza, pizza.").text == "Pizza, pizza."  # replaced: usable


def test_bad_prompts_are_clear_errors(tiny_codec, tmp_path):
    sf.write(str(tmp_path / "silent.wav"), np.zeros(24000, dtype=np.float32), 24000)
    sf.write(
        str(tmp_path / "short.wav"),
        np.random.default_rng(0).uniform(-0.5, 0.5, 2400).astype(np.float32),
        24000,
    )
    with pytest.raises(AudioError, match="no such audio file"):
        load_prompt(tmp_path / "missing.wav", tiny_codec)
    with pytest.raises(AudioError, match="silent"):
        load_prompt(tmp_path / "silent.wav", tiny_codec)
    with pytest.raises(AudioError, match="only 0.10 s of speech"):
        load_prompt(tmp_path / "short.wav", tiny_codec)
    with pytest.raises(
        UserError, match="prompt_seconds=0.2: give at least 0.5 seconds"
    ):  # not cropped to 0.2 s
        load_prompt(real_speech_dir() / "LJ049-0108.wav", tiny_codec, prompt_seconds=0.2)


def test_a_lone_text_or_prompt_is_one_and_one_prompt_serves_every_text(synthesizer):
    config = SamplerConfig(max_ar_steps=5, seed=0)
    speech = str(real_speech_dir() / "LJ049-0108.wav")  # a path as a str: not 48 one-letter prompts
    results = synthesizer.synthesize(
        "The lazy dog.", speech, config=config, prompt_seconds=1.0
    )  # not "T", "h"...
    assert [r.text for r in results] == ["The lazy dog."]
    prompt = Prompt(torch.randint(0, 1024, (2, 10)))
    results = synthesizer.synthesize(["The lazy dog.", "The fox!"], prompt, config=config)
    assert [r.text for r in results] == ["The lazy dog.", "The fox!"]


def test_mismatched_counts_and_empty_text_are_refused(synthesizer):
    prompt = Prompt(torch.randint(0, 1024, (2, 10)))
    with pytest.raises(ValueError, match="2 texts but 3 prompts"):
        synthesizer.synthesize(["a b", "c d"], [prompt] * 3)
    from valle.text import TextError

    with pytest.raises(TextError, match="empty text"):
        synthesizer.synthesize(["  "], [prompt])


def test_split_sentences():
    assert split_sentences('Hi there! How are you? "Fine." Bye') == [
        "Hi there!",
        "How are you?",
        '"Fine."',
        "Bye",
    ]
    long = ", ".join(["word"] * 80)
    assert all(len(piece) <= 200 for piece in split_sentences(long))


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "Dr. Smith met Mr. J. K. Rowling at 5 p.m. in the U.S. Army base, e.g. by the gate. "
            "Then they left! Note: it rained. (Really.) No. 5 stayed.",
            [
                "Dr. Smith met Mr. J. K. Rowling at 5 p.m. in the U.S. Army base, e.g. by the gate.",
                "Then they left!",
                "Note: it rained.",
                "(Really.)",
                "No. 5 stayed.",
            ],
        ),
        (  # a month's period is the normalizer's only before a number; "Jan." alone is a name
            "We met on Jan. 5 at noon, Sept. 3, Sep. 4 and Feb. 28. I met Jan. Then J. F. Kennedy came.",
            [
                "We met on Jan. 5 at noon, Sept. 3, Sep. 4 and Feb. 28.",
                "I met Jan.",
                "Then J. F. Kennedy came.",
            ],
        ),
        (  # "etc." before a capital ends a sentence, as the normalizer reads it ("et cetera.")
            "Apples, pears, etc. Then St. Louis, i.e. the U.S. Navy, said no. Fig. 2 agrees.",
            ["Apples, pears, etc.", "Then St. Louis, i.e. the U.S. Navy, said no.", "Fig. 2 agrees."],
        ),
    ],
)
def test_abbreviations_initials_and_lowercase_continuations_do_not_end_a_sentence(text, sentences):
    assert split_sentences(text) == sentences


def test_a_blank_line_ends_a_sentence_and_a_single_line_break_does_not():
    text = "A Title\n\nThe first line wraps\nin the middle. The end\n \n- an item"
    assert split_sentences(text) == [
        "A Title",
        "The first line wraps\nin the middle.",
        "The end",
        "- an item",
    ]
