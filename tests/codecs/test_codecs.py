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

from valle.audio import prepare_waveform
from valle.codecs import CODECS, Codec, build_codec, codec_class
from valle.codecs.dac import DacCodec
from valle.codecs.encodec import EncodecCodec
from valle.codecs.vocos import ENCODEC_PREFIX, REPO_ID, VocosCodec
from valle.codecs.weights import WeightsError

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
# EnCodec (and so Vocos) is causal: batch and single encodes agree exactly.
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
    assert torch.equal(codes, codec.encode(resampled, codec.sample_rate))


def test_batch_encode_matches_single_items(codec):
    wavs = [signal(seconds, codec.sample_rate, seed=i) for i, seconds in enumerate([0.3, 0.5, 0.22])]
    codes, frames = codec.encode_batch(wavs, codec.sample_rate)
    assert frames.tolist() == [codec.n_frames(w.numel()) for w in wavs]
    assert codes.shape == (3, codec.n_levels, max(frames))
    margin = DAC_LOOKAHEAD_FRAMES if codec.name == "dac" else 0
    for i, (wav, n) in enumerate(zip(wavs, frames.tolist(), strict=True)):
        alone = codec.encode(wav, codec.sample_rate)
        checked = n if n == max(frames) else max(0, n - margin)  # the longest item sees no batch padding
        assert torch.equal(codes[i, :, :checked], alone[:, :checked]), f"item {i}"
        assert (codes[i, :, n:] == 0).all(), "frames past an item's end are padding (0)"


def test_codec_stays_in_eval_mode_when_parent_trains(codec):
    parent = torch.nn.Module()
    parent.codec = codec
    parent.train()
    assert not any(module.training for module in codec.modules())
    assert not any(p.requires_grad for p in codec.parameters())


# --- parity with each library's own encode and decode -------------------------------------------------


def test_encodec_codes_equal_encodec_model_encode(encodec):
    # A length that is a multiple of the hop: on a partial last frame the library pads by reflection where a
    # batch (ours) must pad with zeros, so only that final frame could differ.
    wav = signal(0.4, 24_000)[: 30 * 320]
    [(expected, scale)] = encodec.model.encode(wav.view(1, 1, -1))
    assert scale is None
    assert torch.equal(encodec.encode(wav, 24_000), expected[0])


def test_random_weights_are_reproducible_and_vocos_reuses_encodec_codes(encodec):
    vocos = build_codec("vocos", bandwidth_kbps=6, weights="random")
    wav = signal(0.3, 24_000)
    assert torch.equal(vocos.encode(wav, 24_000), encodec.encode(wav, 24_000))
    assert vocos.info.n_levels == encodec.info.n_levels and vocos.name == "vocos"


@pytest.fixture(scope="module")
def dac16() -> DacCodec:
    return DacCodec(model_type="16khz", n_levels=4, weights="random")


def test_dac_codes_equal_dac_encode_and_compress(dac16):
    codec = dac16
    wav = signal(0.3, 16_000)[:4777]
    x = wav.view(1, 1, -1)
    _, expected, *_ = codec.model.encode(codec.model.preprocess(x, 16_000), n_quantizers=4)
    ours = codec.encode(wav, 16_000)
    assert torch.equal(ours, expected[0])
    # compress without loudness normalisation and in one window is the same encoder and quantizer.
    compressed = codec.model.compress(AudioSignal(x.clone(), 16_000), win_duration=None, normalize_db=None)
    assert torch.equal(ours, compressed.codes[0, :4])


def test_dac_decode_is_quantizer_from_codes_then_decoder(dac16):
    codec = dac16
    codes = codec.encode(signal(0.2, 16_000), 16_000)
    expected = codec.model.decode(codec.model.quantizer.from_codes(codes[None])[0])[0, 0]
    wav = codec.decode(codes)
    assert torch.equal(wav[: expected.numel()], expected)
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
    assert torch.equal(codes, library.feature_extractor.get_encodec_codes(wav[None])[:, 0])
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


@pytest.mark.parametrize(("name", "settings"), [("encodec", {"bandwidth_kbps": 3}), ("vocos", {"bandwidth_kbps": 12}),
                                                ("dac", {"model_type": "16khz", "n_levels": 4})])
def test_describe_matches_the_built_codec_without_building_it(name, settings):
    from valle.codecs import describe_codec

    assert describe_codec(name, weights="pretrained", **settings) == build_codec(name, weights="random", **settings).info
