"""Medusa decoding (`sampler.medusa`, valle.sampling.ar.Speculation): several frames a backbone pass, and
exactly the frames of a plain decode.

Every frame is still drawn by the sampler pipeline from the logits a plain decode would have had, with the
row's own draws; the heads' guesses only decide how far a pass gets. So greedy decoding and sampling with
per-row generators must give the plain tokens (and, with monotonic alignment, the same text pointer),
whatever the heads guess. The models run in float64, so a verified position's logits match the plain
step's to ~1e-12 and a draw cannot flip at a float32 near-tie. The random tiny models repeat codes, which
the heads (started as copies of the base head) guess: passes keep more than one frame.
"""

from __future__ import annotations

import pytest
import torch

from valle.errors import ConfigError
from valle.models.config import BackboneConfig, MedusaConfig, ValleConfig
from valle.models.valle import Valle
from valle.sampling.ar import ArRows, DecodeLimits, decode_ar
from valle.sampling.pipeline import ArSampler, SamplerConfig
from valle.sampling.processors import RowGenerators
from valle.utils.batch import Conditioning


@pytest.fixture(autouse=True)
def no_grad():
    with torch.inference_mode():
        yield


def model_for(kind: str, heads: int = 3) -> Valle:
    torch.manual_seed(0)
    overrides: dict = {"medusa": MedusaConfig(heads=heads)}
    if kind == "aligned":
        overrides |= {"monotonic_alignment": True, "segment_positions": 4.0}
    elif kind == "retnet":
        overrides |= {"backbone": BackboneConfig(name="retnet", dropout=0.0)}
    return Valle(ValleConfig.tiny(**overrides).with_data(20, 3, 8)).double().eval()


def cond() -> Conditioning:
    g = torch.Generator().manual_seed(1)
    texts = [torch.randint(1, 20, (n,), generator=g) for n in (9, 5, 7)]
    prompts = [torch.randint(0, 8, (3, n), generator=g) for n in (12, 7, 9)]
    return Conditioning.pad(texts, prompts, 0)


def run(model: Valle, config: SamplerConfig) -> tuple[ArRows, list[list[int]], list[list[int]] | None]:
    rows_cond = cond()
    rows = ArRows(
        model,
        rows_cond,
        ArSampler(config, model.config.stop_token),
        DecodeLimits(40, config.ar_step_limit(rows_cond.text_lengths)),
        generator=RowGenerators.seeded([1, 2, 3]),
        speculate=config.medusa,
    )
    for _ in range(40):
        rows.advance()
        if rows.done:
            break
    result = rows.result()
    codes = [result.codes[b, : int(n)].tolist() for b, n in enumerate(result.lengths)]
    symbols = None if result.frame_symbols is None else result.frame_symbols.tolist()
    return rows, codes, symbols


CONFIGS = {
    "greedy": SamplerConfig(ar_temperature=0.0, max_ar_steps=40),
    "top-p+penalties+ras": SamplerConfig(
        ar_temperature=1.0,
        top_p=0.9,
        repetition_penalty=1.2,
        length_penalty=0.3,
        ras_window=4,
        max_ar_steps=40,
    ),
}


@pytest.mark.parametrize("kind", ["transformer", "aligned"])
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_medusa_decoding_gives_the_plain_decodes_frames_in_fewer_passes(kind, config):
    from dataclasses import replace

    model = model_for(kind)
    _, plain_codes, plain_symbols = run(model, config)
    rows, codes, symbols = run(model, replace(config, medusa=True))
    assert codes == plain_codes
    assert symbols == plain_symbols
    speculation = rows.speculation
    assert speculation is not None
    assert speculation.kept > speculation.row_passes  # some passes kept more than one frame


def test_decode_ar_speculates_when_the_sampler_says_so():
    model = model_for("transformer")
    config = SamplerConfig(ar_temperature=0.0, max_ar_steps=30, medusa=True)
    rows_cond = cond()
    result = decode_ar(model, rows_cond, ArSampler(config, model.config.stop_token), DecodeLimits(30))
    plain = decode_ar(
        model,
        rows_cond,
        ArSampler(SamplerConfig(ar_temperature=0.0, max_ar_steps=30), model.config.stop_token),
        DecodeLimits(30),
    )
    assert torch.equal(result.codes, plain.codes) and torch.equal(result.lengths, plain.lengths)


def test_a_rolled_back_cache_continues_as_if_the_guesses_were_never_fed():
    model = model_for("transformer")
    rows_cond = cond()
    packed = model.ar_prefix(rows_cond)
    backbone = model.ar.backbone
    caches = []
    for _ in range(2):
        cache = backbone.new_cache(3, int(packed.lengths.max()) + 10)
        backbone.step(packed.x, cache, lengths=packed.lengths)
        caches.append(cache)
    codes = torch.tensor([1, 2, 3])
    x = model.ar_step_input(codes, 0)
    guesses = torch.cat([x, model.ar_step_input(codes + 1, 1), model.ar_step_input(codes + 2, 2)], dim=1)
    backbone.step(guesses, caches[0])
    caches[0].rollback(torch.tensor([2, 1, 0]))  # row 0 keeps the first, row 1 two, row 2 all three
    backbone.step(x, caches[1])
    nxt = model.ar_step_input(codes + 4, 1)
    after_rollback = backbone.step(nxt, caches[0])[0]  # row 0: as if only x had been fed
    plain = backbone.step(nxt, caches[1])[0]
    torch.testing.assert_close(after_rollback, plain)
    assert caches[0].used.tolist() == [
        caches[1].used[0].item(),
        caches[1].used[1].item() + 1,
        caches[1].used[2].item() + 2,
    ]


def test_medusa_decoding_needs_heads_and_a_transformer():
    config = SamplerConfig(ar_temperature=0.0, max_ar_steps=20, medusa=True)
    with pytest.raises(ConfigError, match=r"model.medusa.heads > 0"):
        run(model_for("transformer", heads=0), config)
    with pytest.raises(ConfigError, match=r"the retnet backbone.s state cannot forget"):
        run(model_for("retnet"), config)
    with pytest.raises(ConfigError, match="medusa=true decodes several frames"):
        SamplerConfig(medusa=True, mirostat_tau=3.0)


def test_a_fast_medusa_decode_decodes_eagerly_with_a_log_line(caplog):
    model = model_for("transformer")
    config = SamplerConfig(ar_temperature=0.0, max_ar_steps=20, medusa=True)
    rows_cond = cond()
    sampler = ArSampler(config, model.config.stop_token)
    with caplog.at_level("INFO", logger="valle.sampling.compiled"):
        fast = decode_ar(model, rows_cond, sampler, DecodeLimits(20), fast=True)
    assert "Medusa passes take several" in caplog.text
    eager = decode_ar(model, rows_cond, sampler, DecodeLimits(20))
    assert torch.equal(fast.codes, eager.codes)
