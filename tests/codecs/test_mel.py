"""The offline mel codec: the codec contract, k-means fitting, the codebooks file, a round trip of speech."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers.codes import assert_codes_match_up_to_near_ties, codec_latents, quantizer_for
from valle.audio import prepare_waveform, read_audio
from valle.codecs import Codec, build_codec, codec_for, describe_codec
from valle.codecs.mel import (
    MelCodebooks,
    MelCodec,
    fit_mel_codebooks,
    load_codebooks,
    parse_variant,
    save_codebooks,
)
from valle.codecs.weights import WeightsError
from valle.errors import ConfigError

REAL_SPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "real-speech"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "codec" / "mel.yaml"
SMALL = dict(n_mels=40, n_levels=3, codebook_size=16)  # fits in a fraction of a second


def signal(seconds: float, sample_rate: int = 24_000, seed: int = 0) -> torch.Tensor:
    """A chirp plus noise, [samples], deterministic."""
    n = round(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.sin(2 * math.pi * (150 + 400 * t) * t) + 0.03 * torch.randn(n, generator=g)


@pytest.fixture(scope="module")
def small_books() -> MelCodebooks:
    return fit_mel_codebooks([signal(1.0, seed=s) for s in range(3)], n_iter=5, **SMALL)


@pytest.fixture(scope="module")
def real_speech() -> list[torch.Tensor]:
    files = sorted(REAL_SPEECH.glob("*.wav"))
    if len(files) < 4:
        pytest.skip(f"real speech fixtures missing under {REAL_SPEECH}")
    wavs = []
    for path in files:
        wav, rate = read_audio(path)
        assert rate == 24_000
        wavs.append(wav[0])
    return wavs


@pytest.fixture(scope="module")
def speech_codec(real_speech) -> MelCodec:
    # Random init: k-means++ takes 256 small sequential steps per level, slow on a shared CPU (see `init`).
    return MelCodec(weights=fit_mel_codebooks(real_speech, init="random"))


@pytest.mark.parametrize("hop_length", [320, 480])
@pytest.mark.parametrize("seconds", [0.01, 0.3, 1.234])
def test_codes_are_levels_by_ceil_samples_over_hop_and_decode_gives_frames_times_hop(hop_length, seconds):
    codec = MelCodec(hop_length=hop_length, weights="random", griffin_lim_iters=8)  # shapes only
    wav = signal(seconds)
    codes = codec.encode(wav, 24_000)
    assert codes.dtype == torch.int64
    assert codes.shape == (4, math.ceil(wav.numel() / hop_length))
    assert 0 <= int(codes.min()) and int(codes.max()) < 256
    out = codec.decode(codes)
    assert out.shape == (codes.shape[1] * hop_length,) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and float(out.abs().max()) <= 1.0


def test_other_rate_and_stereo_are_resampled_and_mixed(small_books):
    codec = MelCodec(weights=small_books, **SMALL)
    stereo = torch.stack([signal(0.5, 22_050), signal(0.5, 22_050, seed=1)])
    codes = codec.encode(stereo, 22_050)
    resampled = prepare_waveform(stereo, 22_050, 24_000)
    assert codes.shape == (3, math.ceil(resampled.numel() / 320))
    assert_codes_match_up_to_near_ties(
        quantizer_for(codec),
        codec.encode(resampled, 24_000),
        codes,
        codec_latents(codec, resampled, 24_000),
        got_latents=codec_latents(codec, stereo, 22_050),
    )


def test_batch_encode_matches_single_items(small_books):
    codec = MelCodec(weights=small_books, **SMALL)
    wavs = [signal(0.4, seed=1), signal(1.0, seed=2), signal(0.05, seed=3)]
    codes, frames = codec.encode_batch(wavs, 24_000)
    quantizer = quantizer_for(codec)
    with torch.inference_mode():
        batch_latents = quantizer.latents(codec.padded_batch(wavs, 24_000)[0])
    for i, wav in enumerate(wavs):
        n, latents = int(frames[i]), codec_latents(codec, wav, 24_000)
        assert_codes_match_up_to_near_ties(
            quantizer, codec.encode(wav, 24_000), codes[i, :, :n], latents, got_latents=batch_latents[i, :n]
        )


def test_fitting_is_deterministic_for_a_seed():
    wavs = [signal(0.5, seed=s) for s in range(2)]
    for init in ("kmeans++", "random"):
        first, again = (fit_mel_codebooks(wavs, n_iter=3, seed=7, init=init, **SMALL) for _ in range(2))
        other = fit_mel_codebooks(wavs, n_iter=3, seed=8, init=init, **SMALL)
        assert torch.equal(first.codebooks, again.codebooks) and torch.equal(first.mean, again.mean)
        assert not torch.equal(first.codebooks, other.codebooks)
    assert first.codebooks.shape == (3, 16, 40) and first.std.shape == (40,)


def test_fitting_on_a_frame_sample_keeps_max_frames():
    wavs = [signal(0.5, seed=s) for s in range(4)]  # 4 × 38 frames
    books = fit_mel_codebooks(wavs, n_iter=2, max_frames=50, **SMALL)
    assert books.codebooks.shape == (3, 16, 40) and torch.isfinite(books.codebooks).all()


def test_quantization_error_falls_as_levels_are_added(speech_codec, real_speech):
    wav = real_speech[0]
    codes = speech_codec.encode(wav, 24_000)[None]
    target = speech_codec.features(wav[None])
    errors = [
        float((speech_codec.features_from_codes(codes[:, :n]) - target).pow(2).mean()) for n in range(1, 5)
    ]
    # measured on LJ049-0108: 0.120, 0.063, 0.041, 0.027 (normalised units: the frames' variance is 1)
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.5 * errors[0], errors


def test_decoding_fewer_levels_keeps_less_of_the_log_mel(speech_codec, real_speech):
    wav = real_speech[2]
    codes = speech_codec.encode(wav, 24_000)
    log_mel_in = speech_codec.log_mel(wav[None])
    errors = []
    for n in (1, 4):
        out = speech_codec.decode_levels(codes[:n])
        assert out.shape == speech_codec.decode(codes).shape
        errors.append(float((speech_codec.log_mel(out[: wav.numel()][None]) - log_mel_in).pow(2).mean()))
    assert errors[1] < errors[0], errors  # level 0 alone is the coarsest
    with pytest.raises(ConfigError, match="decode_levels"):
        speech_codec.decode_levels(codes[None])


def test_expected_codewords_decode_each_frame_as_the_distributions_say(speech_codec, real_speech):
    """Levels above 0 as distributions: certain ones decode as the codes (the contract, test_codecs);
    spread evenly over the codes, they decode as level 0 plus the codebooks' mean, and only level 0's
    codewords are left when those means are zero."""
    wav = real_speech[2]
    codes = speech_codec.encode(wav, 24_000)
    levels, size = speech_codec.n_levels - 1, speech_codec.codebook_size
    even = torch.full((levels, codes.shape[1], size), 1.0 / size)
    books = speech_codec.codebooks.clone()
    books[1:] -= books[1:].mean(1, keepdim=True)  # the levels above 0 centred on zero
    n_mels, hop_length, n_fft = parse_variant(speech_codec.info.variant)
    centred = MelCodec(
        weights=MelCodebooks(books, speech_codec.mean, speech_codec.std, 24_000, hop_length, n_mels, n_fft)
    )

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:  # Griffin-Lim magnifies float32 rounding
        return float((a - b).norm() / b.norm())

    level0 = centred.decode_levels(codes[:1])
    assert distance(centred.decode(codes, expected=even), level0) < 0.05
    assert distance(speech_codec.decode(codes, expected=even), speech_codec.decode(codes)) > 0.3


def test_a_codec_that_cannot_decode_expected_codewords_is_refused_by_name(small_books):
    class CodesOnly(MelCodec):  # a codec that implements only the two primitives
        _decode_expected = Codec._decode_expected

    codec = CodesOnly(weights=small_books, **SMALL)
    codes = codec.encode(signal(0.2), 24_000)
    certain = torch.nn.functional.one_hot(codes[1:], codec.codebook_size).float()
    with pytest.raises(
        ConfigError, match=r"codec 'mel' cannot decode expected codewords.*expected_codewords=0"
    ):
        codec.decode(codes, expected=certain)


def test_real_speech_round_trip_keeps_the_log_mel(speech_codec, real_speech):
    """Fit on the four LJ Speech fixtures, then encode and decode the ~3 s prompt LJ049-0124.

    Measured: log-mel MSE 0.126 (natural-log units²) against the input's log-mel variance 5.1, i.e. 97.5 %
    of the variance kept; another utterance of the same speaker scores 5.9 and the random codec 9.6. About
    0.08 of it is quantization, the rest Griffin-Lim (Griffin-Lim on the unquantized mel alone: 0.055).
    Spectral convergence 0.34 (Griffin-Lim alone: 0.24). The bounds leave about 2x and 1.5x headroom.
    """
    wav = real_speech[2]
    out = speech_codec.decode(speech_codec.encode(wav, 24_000))[: wav.numel()]
    log_mel_in, log_mel_out = speech_codec.log_mel(wav[None]), speech_codec.log_mel(out[None])
    mse = float((log_mel_in - log_mel_out).pow(2).mean())
    assert mse < 0.25 and mse < 0.05 * float(log_mel_in.var())

    def magnitude(x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, 1024, 320, window=torch.hann_window(1024), return_complex=True).abs()

    spectral_convergence = float((magnitude(wav) - magnitude(out)).norm() / magnitude(wav).norm())
    assert spectral_convergence < 0.5


def test_codebooks_file_round_trips_and_builds_the_codec(small_books, tmp_path):
    path = save_codebooks(tmp_path / "sub" / "codebooks.pt", small_books)
    assert [p.name for p in path.parent.iterdir()] == ["codebooks.pt"]  # no temporary file left behind
    loaded = load_codebooks(path)
    assert loaded.settings() == small_books.settings()
    for key in ("codebooks", "mean", "std"):
        assert torch.equal(getattr(loaded, key), getattr(small_books, key))
    wav = signal(0.5)
    from_file = build_codec("mel", weights=str(path), **SMALL)
    in_memory = MelCodec(weights=small_books, **SMALL)
    assert_codes_match_up_to_near_ties(
        quantizer_for(in_memory),
        in_memory.encode(wav, 24_000),
        from_file.encode(wav, 24_000),
        codec_latents(in_memory, wav, 24_000),
    )


def test_a_file_fit_with_other_settings_is_refused(small_books, tmp_path):
    path = save_codebooks(tmp_path / "codebooks.pt", small_books)
    with pytest.raises(ValueError, match=r"other settings: n_mels=40 \(configured 80\).*fit new codebooks"):
        MelCodec(weights=path, n_levels=3, codebook_size=16)
    with pytest.raises(ValueError, match=r"n_levels=3 \(configured 4\)"):
        MelCodec(weights=path, n_mels=40, n_levels=4, codebook_size=16)


def test_missing_or_wrong_files_and_pretrained_name_the_fix(tmp_path):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(
        FileNotFoundError, match=rf"{missing.name}.*fit_mel_codebooks.*save_codebooks.*random"
    ):
        MelCodec(weights=missing)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a mel codebooks file"):
        MelCodec(weights=tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="no released codebooks.*fit_mel_codebooks"):
        MelCodec(weights="pretrained")
    with pytest.raises(ValueError, match="hop_length=350 must divide sample_rate=24000"):
        MelCodec(hop_length=350)
    with pytest.raises(ValueError, match="init='kmeans'; use one of kmeans\\+\\+, random"):
        fit_mel_codebooks([signal(0.1)], init="kmeans")


def test_random_codebooks_are_reproducible_and_log_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        first = MelCodec(weights="random")
    assert "random weights" in caplog.text
    assert torch.equal(first.codebooks, MelCodec(weights="random").codebooks)
    codes = first.encode(signal(1.0), 24_000)
    assert codes[0].unique().numel() > 3  # codes vary from frame to frame


def test_describe_config_and_codec_for_agree(small_books, tmp_path):
    info = describe_codec("mel", hop_length=480, n_levels=2)
    assert (
        info.name,
        info.sample_rate,
        info.frame_rate,
        info.n_levels,
        info.codebook_size,
        info.variant,
    ) == ("mel", 24_000, 50.0, 2, 256, "80mel-480hop")
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG))
    assert cfg["weights"] == "fit"  # prepare.py fits the codebooks on the corpus (tests/cli)
    cfg["weights"] = "random"
    assert build_codec(**cfg).info == describe_codec(**cfg) == MelCodec().info
    path = save_codebooks(tmp_path / "codebooks.pt", small_books)
    built = MelCodec(weights=path, **SMALL)
    rebuilt = codec_for(built.info, weights=str(path))
    assert rebuilt.info == built.info and torch.equal(rebuilt.codebooks, built.codebooks)


def test_a_codec_with_other_fft_size_and_hop_is_rebuilt_as_it_was_fit(tmp_path):
    """A model's CodecInfo alone must rebuild its codec: at 25 frames/s with a 2048-point FFT, not the
    defaults (models trained on such codes could not be decoded when the variant left n_fft out)."""
    settings = dict(SMALL, hop_length=960, n_fft=2048)
    books = fit_mel_codebooks([signal(1.0, seed=s) for s in range(3)], n_iter=3, **settings)
    path = save_codebooks(tmp_path / "codebooks.pt", books)
    built = MelCodec(weights=path, **settings)
    assert built.info.frame_rate == 25.0 and built.info.variant == "40mel-960hop-2048fft"
    rebuilt = codec_for(built.info, weights=str(path))
    assert rebuilt.info == built.info and rebuilt.log_mel.n_fft == 2048
    wav = signal(0.5)
    assert torch.equal(rebuilt.encode(wav[None], 24_000), built.encode(wav[None], 24_000))


def test_variants_written_before_the_fft_size_was_named_mean_1024():
    assert MelCodec.settings_for(describe_codec("mel", hop_length=480, n_levels=2))["n_fft"] == 1024
    with pytest.raises(ConfigError, match="not a mel codec variant"):
        parse_variant("480hop")


def test_codec_stays_in_eval_and_its_state_is_the_codebooks(small_books):
    codec = MelCodec(weights=small_books, **SMALL)
    torch.nn.Sequential(codec).train()
    assert not codec.training and codec.device == torch.device("cpu")
    assert codec.state_dict().keys() == {"codebooks", "mean", "std"}
