"""ArRows: rows that join a running batch, or leave it, decode as they would alone.

This is what continuous batching (valle.serving) relies on: a request's codes depend on its text, prompt,
settings and seed, not on which other requests shared its steps. The models run in float64, so batching
changes logits by ~1e-12 and a sampled token cannot flip at a float32 near-tie.
"""

from __future__ import annotations

import pytest
import torch

from valle.models.config import BackboneConfig, ValleConfig
from valle.models.valle import Valle
from valle.sampling.ar import ArRows, DecodeLimits, decode_ar
from valle.sampling.pipeline import ArSampler, SamplerConfig
from valle.sampling.processors import RowGenerators
from valle.utils.batch import Conditioning

TEXT_LENGTHS = (9, 5, 7)
PROMPT_LENGTHS = (12, 7, 9)
SEEDS = (11, 12, 13)


@pytest.fixture(autouse=True)
def no_grad():
    with torch.inference_mode():  # as every decode runs
        yield


def model_for(kind: str) -> Valle:
    torch.manual_seed(0)
    overrides: dict = {"text_dropout": 0.1}  # so that classifier-free guidance ("guided") may steer it
    if kind == "aligned":  # the text pointer and per-row segment positions both follow each row's step
        overrides |= {"monotonic_alignment": True, "segment_positions": 4.0}
    elif kind == "said-context":  # and each frame told its symbol's neighbours and its place in it
        overrides |= {"monotonic_alignment": True, "segment_positions": 4.0, "said_context": True}
    elif kind == "retnet":
        overrides |= {"backbone": BackboneConfig(name="retnet", dropout=0.0)}
    return Valle(ValleConfig.tiny(**overrides).with_data(20, 3, 32)).double().eval()


def rows_cond(rows: list[int]) -> Conditioning:
    g = torch.Generator().manual_seed(1)
    text = [torch.randint(1, 20, (n,), generator=g) for n in TEXT_LENGTHS]
    prompts = [torch.randint(0, 32, (3, n), generator=g) for n in PROMPT_LENGTHS]
    return Conditioning.pad([text[r] for r in rows], [prompts[r] for r in rows], 0)


def start(model: Valle, rows: list[int], config: SamplerConfig) -> ArRows:
    cond = rows_cond(rows)
    return ArRows(
        model,
        cond,
        ArSampler(config, model.config.stop_token),
        DecodeLimits(config.max_ar_steps or 30, config.ar_step_limit(cond.text_lengths)),
        generator=RowGenerators.seeded([SEEDS[r] for r in rows]),
    )


def alone(model: Valle, row: int, config: SamplerConfig) -> list[int]:
    rows = start(model, [row], config)
    while not rows.done:
        rows.step()
    result = rows.result()
    return result.codes[0, : int(result.lengths[0])].tolist()


CONFIGS = {
    "top-p": SamplerConfig(ar_temperature=1.0, top_p=0.9, max_ar_steps_per_phoneme=3),
    "penalties+ras": SamplerConfig(
        ar_temperature=0.9, repetition_penalty=1.3, length_penalty=0.5, ras_window=4, max_ar_steps=25
    ),
    "mirostat": SamplerConfig(ar_temperature=1.0, mirostat_tau=3.0, max_ar_steps=25),
    # the guide's unconditional rows join and leave with their rows
    "guided": SamplerConfig(ar_temperature=1.0, top_p=0.9, cfg_scale=2.5, max_ar_steps=25),
}


@pytest.mark.parametrize("kind", ["transformer", "aligned", "said-context", "retnet"])
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_a_row_that_joins_a_running_batch_decodes_as_it_would_alone(kind, config):
    model = model_for(kind)
    expected = [alone(model, row, config) for row in range(3)]
    running = start(model, [0, 1], config)
    outputs: dict[int, list[int]] = {0: [], 1: [], 2: []}
    order = [0, 1]
    for step in range(200):
        if step == 4:  # row 2 arrives while rows 0 and 1 are at their fifth step
            running.join(start(model, [2], config))
            order.append(2)
        finished_before = running.finished.clone()
        codes = running.step()
        for index, row in enumerate(order):
            if not finished_before[index] and not running.finished[index]:
                outputs[row].append(int(codes[index]))
        # rows leave the batch once they stop, as the server drops them
        staying = torch.nonzero(~running.finished)[:, 0]
        order = [order[i] for i in staying.tolist()]
        running.keep(staying)
        if not order:
            break
    assert outputs == dict(enumerate(expected))
    assert all(len(codes) > 0 for codes in expected)


def test_decode_ar_is_rows_stepped_until_all_stop():
    model = model_for("aligned")
    config = CONFIGS["top-p"]
    cond = rows_cond([0, 1, 2])
    sampler = ArSampler(config, model.config.stop_token)
    limits = DecodeLimits(30, config.ar_step_limit(cond.text_lengths))
    whole = decode_ar(model, cond, sampler, limits, generator=RowGenerators.seeded(SEEDS))
    for row in range(3):
        assert whole.codes[row, : int(whole.lengths[row])].tolist() == alone(model, row, config)
    assert whole.frame_symbols is not None and whole.frame_symbols.shape == whole.codes.shape


def test_rows_join_only_what_can_decode_with_them():
    model = model_for("transformer")
    config = CONFIGS["top-p"]
    running = start(model, [0], config)
    other_settings = start(model, [1], SamplerConfig(ar_temperature=0.5, max_ar_steps=25))
    with pytest.raises(ValueError, match="same sampler settings"):
        running.join(other_settings)
    cond = rows_cond([1])
    shared = ArRows(
        model,
        cond,
        ArSampler(config, model.config.stop_token),
        DecodeLimits(30),
        generator=torch.Generator().manual_seed(0),
    )
    with pytest.raises(ValueError, match="its own generator"):
        running.join(shared)
