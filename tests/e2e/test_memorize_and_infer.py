"""Train the tiny preset until it memorizes two utterances, then infer.py reproduces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.test_prepare import read_all
from tests.training.conftest import Repeat, cpu_trainer, tiny_datamodule, tiny_module
from valle.data.batching import collate
from valle.export import export_checkpoint
from valle.sampling.prompt import Prompt, save_voice

ROOT = Path(__file__).resolve().parents[2]


def memorized_pairs(tiny_shards):
    """Two utterances of two speakers, each prompted by 1 s of another utterance of its speaker."""
    dm = tiny_datamodule(tiny_shards, val_speakers=0, val_utterances=0)
    samples = read_all(tiny_shards)
    by_speaker: dict[str, list] = {}
    for key in sorted(samples):
        by_speaker.setdefault(samples[key].speaker, []).append(samples[key])
    pairs = []
    for speaker in sorted(by_speaker)[:2]:
        target, source = by_speaker[speaker][0], by_speaker[speaker][1]
        ids = dm.symbols.encode(target.symbols, target.language)
        pairs.append(
            {
                "key": target.key,
                "prompt_key": source.key,
                "speaker": speaker,
                "language": target.language,
                "text": torch.tensor(ids),
                "prompt": torch.from_numpy(source.codes[:, :75].astype(np.int64)),
                "codes": torch.from_numpy(target.codes.astype(np.int64)),
                "sentence": target.text,
            }
        )
    return dm, pairs


@pytest.fixture(scope="module")
def memorized(tiny_shards, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("memorized")
    dm, pairs = memorized_pairs(tiny_shards)
    batch = collate(pairs, dm.symbols.pad_id)
    torch.manual_seed(0)
    module = tiny_module(dm, optim={"lr": 3e-3, "warmup_steps": 10, "schedule": "constant"})
    trainer = cpu_trainer(tmp, max_steps=400)
    trainer.fit(module, torch.utils.data.DataLoader(Repeat(batch, 400), batch_size=None))
    trainer.save_checkpoint(tmp / "model.ckpt")
    model = export_checkpoint(tmp / "model.ckpt", tmp / "model.pt")
    info = module.card.codec
    voices = [
        save_voice(tmp / f"voice{i}.npz", Prompt(p["prompt"], None, p["prompt_key"]), info)
        for i, p in enumerate(pairs)
    ]
    return model, pairs, voices, tmp


@pytest.mark.slow
def test_infer_py_reproduces_memorized_level0_codes_under_greedy_decoding(memorized):
    model, pairs, voices, tmp = memorized
    for i, (pair, voice) in enumerate(zip(pairs, voices, strict=True)):
        out = tmp / f"out{i}.wav"
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "infer.py"),
                f"ckpt={model}",
                f"text={pair['sentence']}",
                f"prompt={voice}",
                f"out={out}",
                "sampler=greedy",
                "save_codes=true",
                "codec.weights=random",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        codes = np.load(out.with_suffix(".npy"))
        expected = pair["codes"].numpy()
        assert codes.shape == expected.shape, (codes.shape, expected.shape)
        np.testing.assert_array_equal(codes[0], expected[0])
        assert (codes == expected).mean() > 0.95  # the NAR levels too, nearly all
        assert out.is_file() and out.stat().st_size > 1000


@pytest.mark.slow
def test_python_api_batches_texts_and_beam_search_agrees(memorized):
    import valle
    from valle.sampling.synthesize import synthesize

    model, pairs, voices, _ = memorized
    loaded = valle.load(model)
    texts = [p["sentence"] for p in pairs]
    greedy = synthesize(loaded, texts, voices, codec_weights="random", ar_temperature=0.0)
    beam = synthesize(loaded, texts, voices, codec_weights="random", beam_width=3)
    for g, b, pair in zip(greedy, beam, pairs, strict=True):
        assert torch.equal(g.codes[0], pair["codes"][0]) and torch.equal(b.codes[0], pair["codes"][0])
        assert g.sample_rate == 24000 and g.wav.numel() == g.codes.shape[1] * 320 and not g.hit_limit
