"""The codec contract, checked on every codec that builds offline (random weights, CPU).

Also: our codes against each library's own encode, the pretrained paths with their downloads mocked, and
the errors that bad settings raise.
"""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path
from unittest import mock
from urllib.error import URLError

import dac
import pytest
import torch
from audiotools import AudioSignal
from omegaconf import OmegaConf

from tests.helpers.codes import assert_codes_match_up_to_near_ties, codec_latents, quantizer_for
from valle.audio import prepare_waveform
from valle.codecs import CODECS, Codec, build_codec, codec_class
from valle.codecs.dac import DacCodec
from valle.codecs.encodec import EncodecCodec
from valle.codecs.vocos import ENCODEC_PREFIX, REPO_ID, VocosCodec
from valle.codecs.weights import WeightsError
from valle.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "codec"
ENCODEC_URL = "https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th"

VARIANTS = {
    "encodec-6kbps": dict(name="encodec", bandwidth_kbps=6),
    "vocos-6kbps": dict(name="vocos", bandwidth_kbps=6),
    "dac-44khz": dict(name="dac", model_type="44khz"),
    "dac-24khz": dict(name="dac", model_type="24khz"),
    "dac-16khz-4levels": dict(name="dac", model_type="16khz", n_levels=4),
}
# DAC's encoder is not causal: a frame's code depends on input up to about 7.8 frames past its end
# (measured with the gradient: 7.3 frames at 44.1 kHz, 7.8 at 16 kHz). In a batch, a shorter item sees
# the batch's zero padding there instead of its own edge (zero padding inside each convolution), so its
# last 8 frames may get other codes than when encoded alone (with random weights, 1 to 3 of them do).
# EnCodec (and so Vocos) is causal: batch and single encodes agree on every frame (up to near-ties).
DAC_LOOKAHEAD_FRAMES = 8


def signal(seconds: float, sample_rate: int, seed: int = 0, channels: int = 1) -> torch.Tensor:
    """A chirp plus noise, [channels, samples] (or [samples] for mono), deterministic."""
    n = round(seconds * sample_rate)
    t = torch.arange(n) / sample_rate
    g = torch.Generator().manual_seed(seed)
    wav = 0.3 * torch.sin(2 * math.pi * (150 + 400 * t) * t) + 0.03 * torch.randn(channels, n, generator=g)
    return wav[0] if channels == 1 else wav


def perturbed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict that differs from `state` (random codecs are seeded, so "loaded" must be told apart)."""
    return {
        k: v + 0.01 if v.is_floating_point() and not k.endswith("window") else v.clone()
        for k, v in state.items()
    }


def assert_state_equal(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    mine = module.state_dict()
    assert set(mine) == set(state)
    for key, value in state.items():
        assert torch.equal(mine[key], value), key


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def codec(request) -> Codec:
    return build_codec(**VARIANTS[request.param], weights="random")


@pytest.fixture(scope="module")
def encodec() -> EncodecCodec:
    return build_codec("encodec", bandwidth_kbps=6, weights="random")


@pytest.fixture(scope="module")
def tiny_dac_file(tmp_path_factory) -> Path:
    """A small DAC with the 16 kHz model's rates and codebooks, saved the way released weights are."""
    with torch.random.fork_rng():
        torch.manual_seed(123)
        model = dac.DAC(
            encoder_dim=8,
            encoder_rates=[2, 4, 5, 8],
            decoder_dim=32,
            decoder_rates=[8, 5, 4, 2],
            n_codebooks=12,
            sample_rate=16_000,
        )
    path = tmp_path_factory.mktemp("dac") / "weights_16khz.pth"
    model.save(str(path), package=False)
    return path


# --- the contract -------------------------------------------------------------------------------------


def test_encode_gives_levels_by_frames_int64_codes(codec):
    wav = signal(0.3, codec.sample_rate)[: round(0.3 * codec.sample_rate) - 7]  # not a multiple of the hop
    codes = codec.encode(wav, codec.sample_rate)
    assert codes.shape == (codec.n_levels, math.ceil(wav.numel() / codec.hop_length))
    assert codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < codec.codebook_size
    assert codes[0].unique().numel() > 1, "random weights should still give codes that vary over time"


def test_decode_returns_frames_times_hop_samples_at_codec_rate(codec):
    codes = codec.encode(signal(0.2, codec.sample_rate), codec.sample_rate)
    wav = codec.decode(codes)
    assert wav.shape == (codes.shape[-1] * codec.hop_length,)
    assert wav.dtype == torch.float32 and torch.isfinite(wav).all()


def test_other_rate_and_stereo_are_resampled_and_mixed(codec):
    rate = 22_050
    stereo = signal(0.25, rate, channels=2)
    codes = codec.encode(stereo, rate)
    resampled = prepare_waveform(stereo, rate, codec.sample_rate)
    assert resampled.numel() == math.ceil(stereo.shape[-1] * codec.sample_rate / rate)
    assert codes.shape == (codec.n_levels, codec.n_frames(resampled.numel()))
    assert_codes_match_up_to_near_ties(
        quantizer_for(codec),
        codec.encode(resampled, codec.sample_rate),
        codes,
        codec_latents(codec, resampled, codec.sample_rate),
        got_latents=codec_latents(codec, stereo, rate),
    )


def test_batch_encode_matches_single_items(codec):
    wavs = [signal(seconds, codec.sample_rate, seed=i) for i, seconds in enumerate([0.3, 0.5, 0.22])]
    codes, frames = codec.encode_batch(wavs, codec.sample_rate)
    assert frames.tolist() == [codec.n_frames(w.numel()) for w in wavs]
    assert codes.shape == (3, codec.n_levels, max(frames))
    margin = DAC_LOOKAHEAD_FRAMES if codec.name == "dac" else 0
    quantizer = quantizer_for(codec)
    with torch.inference_mode():
        batch_latents = quantizer.latents(codec.padded_batch(wavs, codec.sample_rate)[0])
    for i, (wav, n) in enumerate(zip(wavs, frames.tolist(), strict=True)):
        alone = codec.encode(wav, codec.sample_rate)
        checked = n if n == max(frames) else max(0, n - margin)  # the longest item sees no batch padding
        assert_codes_match_up_to_near_ties(
            quantizer,
            alone[:, :checked],
            codes[i, :, :checked],
            codec_latents(codec, wav, codec.sample_rate)[:checked],
            got_latents=batch_latents[i, :checked],
        )
        assert (codes[i, :, n:] == 0).all(), "frames past an item's end are padding (0)"


def test_expected_codewords_of_certain_distributions_decode_as_the_codes(codec):
    """Distributions that put all their weight on one code (`sampler.expected_codewords` at a temperature
    near 0) decode to the codes' own audio; a shape that does not fit the codes is refused by name."""
    codes = codec.encode(signal(0.2, codec.sample_rate), codec.sample_rate)
    certain = torch.nn.functional.one_hot(codes[1:], codec.codebook_size).float()
    hard, expected = codec.decode(codes), codec.decode(codes, expected=certain)
    assert expected.shape == hard.shape
    assert torch.allclose(expected, hard, atol=1e-4 + 1e-3 * float(hard.abs().max()))
    with pytest.raises(ConfigError, match="levels above 0"):
        codec.decode(codes, expected=certain[:-1])


def test_codec_stays_in_eval_mode_when_parent_trains(codec):
    parent = torch.nn.Module()
    parent.codec = codec
    parent.train()
    assert not any(module.training for module in codec.modules())
    assert not any(p.requires_grad for p in codec.parameters())


# --- parity with each library's own encode and decode -------------------------------------------------


def test_encodec_codes_match_encodec_model_encode_up_to_near_ties(encodec):
    # A length that is a multiple of the hop: on a partial last frame the library pads by reflection where a
    # batch (ours) must pad with zeros, so only that final frame could differ.
    wav = signal(0.4, 24_000)[: 30 * 320]
    [(expected, scale)] = encodec.model.encode(wav.view(1, 1, -1))
    assert scale is None
    # The library's path runs with autograd on, ours in inference mode: other convolution kernels, latents
    # equal to rounding, and on some CPUs and thread counts 1 or 2 of these 30 frames flip a near-tied code.
    latents = encodec.model.encoder(wav.view(1, 1, -1))[0].T
    assert_codes_match_up_to_near_ties(
        quantizer_for(encodec),
        expected[0],
        encodec.encode(wav, 24_000),
        latents,
        got_latents=codec_latents(encodec, wav, 24_000),
    )


def test_random_weights_are_reproducible_and_vocos_reuses_encodec_codes(encodec):
    vocos = build_codec("vocos", bandwidth_kbps=6, weights="random")
    assert_state_equal(vocos.encoder.model, encodec.model.state_dict())  # the same random weights, exactly
    wav = signal(0.3, 24_000)
    expected, latents = encodec.encode(wav, 24_000), codec_latents(encodec, wav, 24_000)
    assert_codes_match_up_to_near_ties(quantizer_for(encodec), expected, vocos.encode(wav, 24_000), latents)
    assert vocos.info.n_levels == encodec.info.n_levels and vocos.name == "vocos"


@pytest.fixture(scope="module")
def dac16() -> DacCodec:
    # normalize_db=None: the library's raw `encode`, for the parity checks below; the loudness normalisation
    # valle's DAC applies by default (as `compress` does) is tested on its own.
    return DacCodec(model_type="16khz", n_levels=4, weights="random", normalize_db=None)


def test_dac_codes_match_dac_encode_and_compress_up_to_near_ties(dac16):
    codec = dac16
    wav = signal(0.3, 16_000)[:4777]
    x = wav.view(1, 1, -1)
    _, expected, *_ = codec.model.encode(codec.model.preprocess(x, 16_000), n_quantizers=4)
    latents = codec.model.encoder(codec.model.preprocess(x, 16_000))[0].T  # the library's path: autograd on
    quantizer = quantizer_for(codec)
    ours = codec.encode(wav, 16_000)
    ours_latents = codec_latents(codec, wav, 16_000)
    assert_codes_match_up_to_near_ties(quantizer, expected[0], ours, latents, got_latents=ours_latents)
    # compress without loudness normalisation and in one window is the same encoder and quantizer.
    compressed = codec.model.compress(AudioSignal(x.clone(), 16_000), win_duration=None, normalize_db=None)
    assert_codes_match_up_to_near_ties(quantizer, compressed.codes[0, :4], ours, latents)


def test_dac_decode_is_quantizer_from_codes_then_decoder(dac16):
    codec = dac16
    codes = codec.encode(signal(0.2, 16_000), 16_000)
    expected = codec.model.decode(codec.model.quantizer.from_codes(codes[None])[0])[0, 0]
    wav = codec.decode(codes)
    torch.testing.assert_close(wav[: expected.numel()], expected)  # the same layers, run in inference mode
    assert (wav[expected.numel() :] == 0).all() and wav.numel() - expected.numel() < codec.hop_length


VOCOS_CONFIG = """\
feature_extractor:
  class_path: vocos.feature_extractors.EncodecFeatures
  init_args:
    encodec_model: encodec_24khz
    bandwidths: [1.5, 3.0, 6.0, 12.0]
    train_codebooks: true
backbone:
  class_path: vocos.models.VocosBackbone
  init_args:
    input_channels: 128
    dim: 384
    intermediate_dim: 1152
    num_layers: 8
    adanorm_num_embeddings: 4
head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: 384
    n_fft: 1280
    hop_length: 320
    padding: same
"""


def test_vocos_pretrained_matches_vocos_from_pretrained(encodec, tmp_path):
    """Our Vocos loads the released file layout and decodes as `Vocos.from_pretrained` does."""
    from vocos import Vocos

    donor = build_codec("vocos", bandwidth_kbps=6, weights="random")
    release = perturbed(donor.vocos.state_dict())  # pytorch_model.bin holds no EnCodec keys
    (tmp_path / "config.yaml").write_text(VOCOS_CONFIG)
    torch.save(release, tmp_path / "pytorch_model.bin")
    encodec_state = perturbed(encodec.model.state_dict())
    torch.save(encodec_state, tmp_path / "encodec.th")

    def hub(repo_id, filename, revision=None):
        return str(tmp_path / filename)

    with mock.patch("huggingface_hub.hf_hub_download", side_effect=hub) as ours_hub:
        ours = VocosCodec(bandwidth_kbps=6, weights="pretrained", encodec_weights=tmp_path / "encodec.th")
    ours_hub.assert_called_once_with(repo_id=REPO_ID, filename="pytorch_model.bin")
    assert_state_equal(ours.vocos, release)
    with (
        mock.patch("vocos.pretrained.hf_hub_download", side_effect=hub),
        mock.patch("torch.hub.load_state_dict_from_url", return_value=encodec_state),
    ):
        library = Vocos.from_pretrained(REPO_ID)

    wav = signal(0.3, 24_000)[: 22 * 320]
    codes = ours.encode(wav, 24_000)
    library.feature_extractor.encodec.set_target_bandwidth(6.0)
    theirs = library.feature_extractor.get_encodec_codes(wav[None])[:, 0]
    latents = library.feature_extractor.encodec.encoder(wav.view(1, 1, -1))[0].T
    assert_codes_match_up_to_near_ties(
        quantizer_for(ours), theirs, codes, latents, got_latents=codec_latents(ours, wav, 24_000)
    )
    expected = library.decode(library.codes_to_features(codes), bandwidth_id=torch.tensor([2]))[0]
    torch.testing.assert_close(ours.decode(codes), expected)


# --- weights: pretrained (mocked), local files, random --------------------------------------------------


def test_encodec_pretrained_asks_torch_hub_for_the_official_file(encodec):
    state = perturbed(encodec.model.state_dict())
    with mock.patch("torch.hub.load_state_dict_from_url", return_value=state) as hub:
        codec = EncodecCodec(bandwidth_kbps=6, weights="pretrained")
    assert hub.call_args.args[0] == ENCODEC_URL
    assert_state_equal(codec.model, state)


def test_dac_pretrained_loads_what_dac_download_fetched(tiny_dac_file):
    with mock.patch("dac.utils.download", return_value=tiny_dac_file) as download:
        codec = DacCodec(model_type="16khz", weights="pretrained")
    download.assert_called_once_with(model_type="16khz")
    saved = torch.load(tiny_dac_file, weights_only=True)["state_dict"]
    assert_state_equal(codec.model, saved)
    assert codec.encode(signal(0.1, 16_000), 16_000).shape == (12, 5)


def test_local_files_load(encodec, tmp_path):
    state = perturbed(encodec.model.state_dict())
    torch.save(state, tmp_path / "encodec_24khz-d7cc33bc.th")
    assert_state_equal(EncodecCodec(weights=tmp_path / "encodec_24khz-d7cc33bc.th").model, state)


def test_vocos_file_with_embedded_encodec_serves_both(encodec, tmp_path):
    donor = build_codec("vocos", bandwidth_kbps=3, weights="random")
    decoder, encoder = perturbed(donor.vocos.state_dict()), perturbed(encodec.model.state_dict())
    torch.save({**decoder, **{ENCODEC_PREFIX + k: v for k, v in encoder.items()}}, tmp_path / "vocos.pt")
    codec = VocosCodec(bandwidth_kbps=3, weights=str(tmp_path / "vocos.pt"))
    assert_state_equal(codec.vocos, decoder)
    assert_state_equal(codec.encoder.model, encoder)
    torch.save(decoder, tmp_path / "decoder_only.pt")
    with pytest.raises(WeightsError, match="codec.encodec_weights"):
        VocosCodec(bandwidth_kbps=3, weights=str(tmp_path / "decoder_only.pt"))


@pytest.mark.parametrize(
    "name, target, kwargs",
    [
        ("encodec", "torch.hub.load_state_dict_from_url", {}),
        ("vocos", "huggingface_hub.hf_hub_download", {"encodec_weights": "random"}),
        ("dac", "dac.utils.download", {}),
    ],
)
def test_failed_download_raises_and_names_the_fix(name, target, kwargs, caplog):
    with (
        mock.patch(target, side_effect=URLError("no network")),
        pytest.raises(WeightsError, match=r"codec\.weights=/path/to/file.*codec\.weights=random"),
    ):
        build_codec(name, weights="pretrained", **kwargs)
    assert f"codec {name!r} uses random weights" not in caplog.text, "no silent fallback to random"


def test_random_weights_log_that_outputs_are_noise(caplog):
    with caplog.at_level(logging.WARNING, logger="valle.codecs.weights"):
        EncodecCodec(bandwidth_kbps=1.5, weights="random")
    assert "noise unless it is trained" in caplog.text


def test_missing_and_wrong_local_files_are_named(tmp_path, tiny_dac_file):
    with pytest.raises(FileNotFoundError, match="nowhere.th"):
        EncodecCodec(weights=tmp_path / "nowhere.th")
    with pytest.raises(WeightsError, match="does not hold EnCodec 24 kHz weights"):
        EncodecCodec(weights=tiny_dac_file)
    with pytest.raises(WeightsError, match="set codec.model_type"):
        DacCodec(model_type="44khz", weights=tiny_dac_file)


# --- bad settings ---------------------------------------------------------------------------------------


def test_bad_settings_raise_clear_errors(encodec):
    with pytest.raises(ValueError, match=r"no 5 kbps.*1\.5 \(2 levels\), 3 \(4 levels\), 6 \(8 levels\)"):
        EncodecCodec(bandwidth_kbps=5, weights="random")
    with pytest.raises(ValueError, match="not 24 kbps"):
        VocosCodec(bandwidth_kbps=24, weights="random")
    with pytest.raises(ValueError, match="has 9 codebooks; set codec.n_levels between 1 and 9"):
        DacCodec(model_type="44khz", n_levels=10, weights="random")
    with pytest.raises(ValueError, match="model_type to one of 44khz, 24khz, 16khz"):
        DacCodec(model_type="48khz", weights="random")
    with pytest.raises(ValueError, match="unknown codec 'soundstream'.*dac, encodec, mel, vocos"):
        build_codec("soundstream")
    with pytest.raises(ValueError, match="no setting model_type; it takes bandwidth_kbps, weights"):
        build_codec("encodec", model_type="44khz", weights="random")
    with pytest.raises(ValueError, match=r"expects codes shaped \[batch, 8 levels, frames\]"):
        encodec.decode(torch.zeros(4, 10, dtype=torch.long))


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_config_keys_are_build_codec_arguments(config):
    cfg = OmegaConf.load(config)
    assert cfg.name in CODECS
    if cfg.name == "encodec":  # the cheap one is built end to end
        assert build_codec(**{**cfg, "weights": "random"}).n_levels == 8
    else:
        assert set(cfg) - {"name"} <= set(inspect.signature(codec_class(cfg.name)).parameters)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("encodec", {"bandwidth_kbps": 3}),
        ("vocos", {"bandwidth_kbps": 12}),
        ("dac", {"model_type": "16khz", "n_levels": 4}),
    ],
)
def test_describe_matches_the_built_codec_without_building_it(name, settings):
    from valle.codecs import describe_codec

    assert (
        describe_codec(name, weights="random", **settings)
        == build_codec(name, weights="random", **settings).info
    )
    assert (
        describe_codec(name, weights="pretrained", **settings).weights == "pretrained"
    )  # nothing downloaded


# --- DAC: inputs are loudness-normalised as `compress` (and so the seed's .dac files) does --------------


def test_dac_encodes_as_compress_so_seed_dac_files_match_prompts(tiny_dac_file, tmp_path):
    """A seed-format .dac file (written as the seed writes it) imports the codes valle's DAC gives the
    audio."""
    import numpy as np

    from valle.data.seed_import import read_seed

    codec = DacCodec(model_type="16khz", weights=tiny_dac_file)
    wav = 0.02 * signal(1.0, 16_000)  # far quieter than the -16 LUFS compress brings every input to
    artifact = codec.model.compress(AudioSignal(wav.view(1, 1, -1).clone(), 16_000), win_duration=None)
    path = tmp_path / "seed" / "g" / "s" / "a.dac"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as handle:  # the seed's own layout: np.save of a dict, codes uint16 [1, L, T]
        np.save(
            handle,
            {
                "codes": artifact.codes.numpy().astype(np.uint16),
                "metadata": {
                    "original_length": artifact.original_length,
                    "sample_rate": artifact.sample_rate,
                    "input_db": artifact.input_db.numpy().astype(np.float32),
                    "chunk_length": artifact.chunk_length,
                    "channels": artifact.channels,
                    "padding": artifact.padding,
                    "dac_version": "1.0.0",
                    "text": "A quiet recording.",
                    "language": "en",
                },
            },
            allow_pickle=True,
        )

    [imported] = read_seed(tmp_path / "seed", "en-us")
    ours = codec.encode(wav, 16_000).numpy()
    raw = DacCodec(model_type="16khz", weights=tiny_dac_file, normalize_db=None).encode(wav, 16_000).numpy()

    assert imported.codes.shape == ours.shape == (12, 50)
    assert imported.extra["input_db"] == [
        pytest.approx(float(AudioSignal(wav.view(1, 1, -1), 16_000).loudness()))
    ]
    # The same float steps on both paths (compress: normalise, pad, encode): equal up to near-ties.
    assert_codes_match_up_to_near_ties(
        quantizer_for(codec),
        torch.from_numpy(ours),
        torch.from_numpy(imported.codes.astype(np.int64)),
        codec_latents(codec, wav, 16_000),
    )
    assert (imported.codes == raw).mean() < 0.5, "the test input must be one that normalisation changes"


def test_dac_normalisation_caps_peaks_as_compress_does():
    from valle.codecs.dac import normalize_loudness

    spiky = torch.zeros(16_000)
    spiky[::400] = 0.5  # quiet on average: bringing it to -16 LUFS would push the clicks past 1
    out = normalize_loudness(spiky, 16_000, -16.0)
    assert float(out.abs().max()) == pytest.approx(1.0)
    loud = 0.3 * signal(1.0, 16_000)
    measured = AudioSignal(normalize_loudness(loud, 16_000, -16.0).view(1, 1, -1), 16_000).loudness()
    assert float(measured) == pytest.approx(-16.0, abs=0.1)


# --- weights identity: recorded with the codes, and what codec_for builds from ---------------------------


def test_weights_identity_is_pretrained_random_with_its_seed_or_the_files_hash(encodec, tmp_path):
    import hashlib

    from valle.codecs import describe_codec

    torch.save(encodec.model.state_dict(), tmp_path / "encodec.th")
    file_hash = "sha256:" + hashlib.sha256((tmp_path / "encodec.th").read_bytes()).hexdigest()[:16]
    assert describe_codec("encodec", weights="pretrained").weights == "pretrained"
    assert describe_codec("encodec", weights="random").weights == encodec.info.weights == "random:seed=0"
    assert describe_codec("encodec", weights=str(tmp_path / "encodec.th")).weights == file_hash
    assert EncodecCodec(weights=tmp_path / "encodec.th").info.weights == file_hash
    # Vocos's codes are its encoder's: the identity follows encodec_weights when they are given.
    assert describe_codec("vocos", weights="pretrained", encodec_weights="random").weights == "random:seed=0"
    assert describe_codec("dac", model_type="16khz", weights="random").weights == "random:seed=0"


def test_mel_identity_is_the_codebooks_whether_from_a_file_or_a_model(tmp_path):
    from valle.codecs import codec_for
    from valle.codecs.mel import MelCodebooks, random_codebooks, save_codebooks

    books = random_codebooks(24_000, 320, 80, 1024, 2, 16)
    books.codebooks[0, 0] += 1.0  # not the random ones: a fitted set
    codec = build_codec(
        "mel", n_levels=2, codebook_size=16, weights=str(save_codebooks(tmp_path / "cb.pt", books))
    )
    assert codec.info.weights.startswith("sha256:")
    carried = codec_for(codec.info, state=books.state())  # what a checkpoint carries
    assert carried.info == codec.info
    assert MelCodebooks.from_state(books.state(), "x").identity() == codec.info.weights


@pytest.fixture
def no_download():
    """Any attempt to fetch EnCodec's released weights fails the test."""
    with mock.patch("torch.hub.load_state_dict_from_url", side_effect=AssertionError("downloaded")) as hub:
        yield hub


def test_codec_for_builds_the_weights_the_model_was_trained_with(no_download):
    from valle.codecs import codec_for, describe_codec

    trained_on = describe_codec("encodec", bandwidth_kbps=1.5, weights="random")
    codec = codec_for(trained_on)  # weights=None: the model's own
    assert codec.info == trained_on
    no_download.assert_not_called()


def test_codec_for_refuses_other_weights_before_downloading(no_download, encodec, tmp_path):
    from valle.codecs import codec_for, describe_codec

    trained_on = describe_codec("encodec", bandwidth_kbps=1.5, weights="random")
    with pytest.raises(ValueError) as error:
        codec_for(trained_on, "pretrained")
    assert str(error.value) == (
        "the model was made with codec weights random:seed=0 but weights pretrained were "
        "configured; its codes would mean other sounds: use the weights it was made with "
        "(codec.weights=random)"
    )
    no_download.assert_not_called()
    torch.save(perturbed(encodec.model.state_dict()), tmp_path / "mine.th")
    torch.save(encodec.model.state_dict(), tmp_path / "other.th")
    from_file = describe_codec("encodec", weights=str(tmp_path / "mine.th"))
    with pytest.raises(WeightsError, match=r"local file \(sha256:\w+\); pass that file with codec.weights="):
        codec_for(from_file)
    with pytest.raises(ValueError, match=rf"made with codec weights {from_file.weights} but weights sha256:"):
        codec_for(from_file, str(tmp_path / "other.th"))
    assert codec_for(from_file, str(tmp_path / "mine.th")).info == from_file


def test_a_local_copy_of_the_released_weights_is_let_through_with_a_warning(encodec, tmp_path, caplog):
    from valle.codecs import codec_for, describe_codec
    from valle.codecs.weights import _warn_unverifiable

    _warn_unverifiable.cache_clear()  # it warns once per file and process
    torch.save(encodec.model.state_dict(), tmp_path / "encodec_24khz-d7cc33bc.th")
    with caplog.at_level(logging.WARNING, logger="valle.codecs.weights"):
        codec = codec_for(
            describe_codec("encodec", weights="pretrained"), str(tmp_path / "encodec_24khz-d7cc33bc.th")
        )
    assert codec.info.weights.startswith("sha256:")
    assert "cannot check offline" in caplog.text


def test_models_that_record_no_weights_decode_with_pretrained_as_before(encodec, caplog):
    from valle.codecs import CodecInfo, codec_for, describe_codec

    old = describe_codec("encodec", weights="random").to_dict()
    del old["weights"]  # as written before the identity was recorded
    state = encodec.model.state_dict()
    with (
        mock.patch("torch.hub.load_state_dict_from_url", return_value=state) as hub,
        caplog.at_level(logging.INFO, logger="valle.codecs"),
    ):
        codec = codec_for(CodecInfo.from_dict(old))
    hub.assert_called_once()
    assert codec.info.weights == "pretrained"
    assert "does not record which encodec weights made its codes" in caplog.text
