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

import functools
from dataclasses import replace

import pytest
import torch

from valle.errors import ConfigError
from valle.models.config import BackboneConfig, MedusaConfig, ValleConfig
from valle.models.valle import Valle
from valle.sampling.ar import ArRows, DecodeLimits, decode_ar
from valle.sampling.candidates import CandidateTree
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
    elif kind == "said-context":  # and each frame told its symbol's neighbours and its place in it
        overrides |= {"monotonic_alignment": True, "segment_positions": 4.0, "said_context": True}
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


def prefilled(model: Valle, rows_cond: Conditioning, copies: int = 2) -> list:
    packed = model.ar_prefix(rows_cond)
    caches = []
    for _ in range(copies):
        cache = model.ar.backbone.new_cache(rows_cond.size, int(packed.lengths.max()) + 20)
        model.ar.backbone.step(packed.x, cache, lengths=packed.lengths)
        caches.append(cache)
    return caches


def test_a_tree_step_gives_each_candidate_the_hidden_state_of_feeding_its_branch_alone():
    model = model_for("transformer")
    rows_cond = cond()
    tree = CandidateTree.of_widths([2, 2])  # root; a, b; aa, ab, ba, bb
    assert tree.depth.tolist() == [0, 1, 1, 2, 2, 2, 2] and tree.children[0].tolist() == [1, 2]
    codes = torch.tensor([[1, 4, 5, 2, 3, 6, 7], [2, 6, 5, 1, 0, 4, 3], [3, 0, 1, 2, 2, 5, 6]])
    fed = model.ar_step_input(codes, tree.depth[None, :].expand(3, -1))
    caches = prefilled(model, rows_cond, 1 + tree.size)
    hidden = model.ar.backbone.tree_step(fed, caches[0], tree.depth, tree.sees)
    for node in range(tree.size):
        branch = [j for j in range(tree.size) if tree.sees[node, j]]  # root .. node, in depth order
        plain = model.ar.backbone.step(fed[:, branch], caches[1 + node])
        torch.testing.assert_close(hidden[:, node], plain[:, -1])


def test_an_accepted_branch_continues_as_if_only_it_had_been_fed():
    model = model_for("transformer")
    rows_cond = cond()
    tree = CandidateTree.of_widths([2, 2])
    codes = torch.tensor([[1, 4, 5, 2, 3, 6, 7], [2, 6, 5, 1, 0, 4, 3], [3, 0, 1, 2, 2, 5, 6]])
    fed = model.ar_step_input(codes, tree.depth[None, :].expand(3, -1))
    caches = prefilled(model, rows_cond, 4)
    model.ar.backbone.tree_step(fed, caches[0], tree.depth, tree.sees)
    # row 0 keeps root → b → bb, row 1 root → a, row 2 the root alone
    paths, kept = torch.tensor([[0, 2, 6], [0, 1, 0], [0, 0, 0]]), torch.tensor([3, 2, 1])
    caches[0].accept(tree.size, paths, kept)
    nxt = model.ar_step_input(torch.tensor([7, 7, 7]), kept[:, None])
    after = model.ar.backbone.step(nxt, caches[0])[:, 0]
    for row in range(3):
        branch = paths[row, : int(kept[row])]
        alone = caches[1 + row]
        model.ar.backbone.step(fed[:, branch], alone)
        torch.testing.assert_close(after[row], model.ar.backbone.step(nxt, alone)[row, 0])
        assert int(caches[0].used[row]) == int(alone.used[row])  # both took `nxt` after the branch
    # a chain keeps a prefix: nothing moves, the rest is forgotten
    chain = CandidateTree.of_widths([1, 1])
    assert chain.sees.tolist() == torch.ones(3, 3).tril().bool().tolist()  # the causal layout


TREES = {"chain": None, "tree 3-2-1": [3, 2, 1], "tree 4-1": [4, 1]}  # [4, 1]: fewer levels than heads


@functools.cache
def plain_decode(kind: str, config_name: str) -> tuple[list[list[int]], list[list[int]] | None]:
    _, codes, symbols = run(model_for(kind), CONFIGS[config_name])
    return codes, symbols


@pytest.mark.parametrize("kind", ["transformer", "aligned", "said-context"])
@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("widths", list(TREES.values()), ids=list(TREES))
def test_medusa_decoding_gives_the_plain_decodes_frames_in_fewer_passes(kind, config_name, widths):
    rows, codes, symbols = run(
        model_for(kind), replace(CONFIGS[config_name], medusa=True, medusa_tree=widths)
    )
    assert (codes, symbols) == plain_decode(kind, config_name)
    speculation = rows.speculation
    assert speculation is not None
    assert speculation.kept > speculation.row_passes  # some passes kept more than one frame


def test_medusa_decoding_needs_heads_and_a_transformer():
    config = SamplerConfig(ar_temperature=0.0, max_ar_steps=20, medusa=True)
    with pytest.raises(ConfigError, match=r"model.medusa.heads > 0"):
        run(model_for("transformer", heads=0), config)
    with pytest.raises(ConfigError, match=r"the retnet backbone.s state cannot forget"):
        run(model_for("retnet"), config)
    with pytest.raises(ConfigError, match="medusa=true decodes several frames"):
        SamplerConfig(medusa=True, mirostat_tau=3.0)
    with pytest.raises(ConfigError, match=r"medusa_tree=\[1, 1, 1, 1\] is 4 deep, but the model has 3"):
        run(model_for("transformer"), replace(config, medusa_tree=[1, 1, 1, 1]))
    with pytest.raises(ConfigError, match=r"checks 84 candidates a pass, more than 64"):
        SamplerConfig(medusa=True, medusa_tree=[4, 4, 4])
    with pytest.raises(ConfigError, match=r"widths >= 1"):
        SamplerConfig(medusa=True, medusa_tree=[2, 0])


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
