"""Best of N: the level-0 recognizer trained on real shards, and decoding that keeps its clearest draw."""

from __future__ import annotations

import pytest
import torch

from valle.card import LoadedModel, ModelCard
from valle.data.index import ShardIndex
from valle.errors import ConfigError, MissingFileError
from valle.models.config import ValleConfig
from valle.models.recognizer import RecognizerConfig
from valle.models.valle import Valle
from valle.recognizer_card import load_recognizer
from valle.sampling.ar import ArResult, decode_ar
from valle.sampling.best_of import keep_clearest, recognizer_rows
from valle.sampling.decode import ar_limits, decode
from valle.sampling.nar import decode_nar
from valle.sampling.pipeline import ArSampler, NarSampler, SamplerConfig, make_generator
from valle.sampling.synthesize import Synthesizer
from valle.text import SymbolMap
from valle.training.recognizer import collate, read_shards, split_by_sentence, train_recognizer
from valle.utils.batch import Conditioning


@pytest.fixture(scope="module")
def trained(tiny_shards, tmp_path_factory):
    """A small recognizer trained on the tiny espeak-ng shards until it reads its training utterances."""
    out = tmp_path_factory.mktemp("recognizer") / "recognizer.pt"
    run = train_recognizer(
        tiny_shards,
        out,
        minutes=5,
        max_steps=250,
        config=RecognizerConfig(d_model=64, n_layers=3, dropout=0.0),
        lr=3e-3,
        noise=0.0,
        max_frames=2000,
        val_share=0.2,
        val_check_interval=50,
        accelerator="cpu",
        keep="last",  # 5 sentences: the held-out one cannot be learnt from 4; read the ones it trained on
    )
    assert run.steps == 250 and run.train_utterances + run.val_utterances == 15
    return load_recognizer(run.path), run.val_loss


def test_sentences_held_out_for_validation_are_never_trained_on(tiny_shards):
    readings = read_shards(ShardIndex.load(tiny_shards))
    train, val = split_by_sentence(readings, 0.2)
    assert len(train) + len(val) == len(readings) == 15
    assert val and not {r.text for r in train} & {r.text for r in val}
    assert all(len(r.targets) > 0 and r.codes.dtype == torch.long for r in readings)


def test_a_trained_recognizer_hears_each_utterance_say_its_own_text_best(trained, tiny_shards):
    recognizer = trained[0].network
    readings, _ = split_by_sentence(read_shards(ShardIndex.load(tiny_shards)), 0.2)  # those it trained on
    codes, lengths, _, _ = collate(readings)
    right = recognizer.read_scores(codes, lengths, *collate(readings)[2:])
    for shift in (1, 4):  # every utterance against another sentence's symbols
        other = [readings[(i + shift) % len(readings)] for i in range(len(readings))]
        wrong = recognizer.read_scores(codes, lengths, *collate(other)[2:])
        same_text = torch.tensor([a.text == b.text for a, b in zip(readings, other, strict=True)])
        assert bool((right > wrong + 1.0)[~same_text].all())


def test_the_file_keeps_everything_it_reads_with(trained, tiny_shards, tmp_path):
    recognizer, _ = trained
    again = load_recognizer(recognizer.save(tmp_path / "copy.pt"))
    batch = collate(read_shards(ShardIndex.load(tiny_shards))[:4])
    assert torch.allclose(
        recognizer.network.read_scores(*batch), again.network.read_scores(*batch), atol=1e-5
    )
    assert again.symbols.fingerprint() == recognizer.symbols.fingerprint() and again.codec == recognizer.codec


def test_a_missing_or_foreign_file_is_a_one_line_error(tmp_path):
    with pytest.raises(MissingFileError, match="python -m valle.recognizer"):
        load_recognizer(tmp_path / "nope.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(ConfigError, match="not a valle recognizer file"):
        load_recognizer(foreign)


def test_keep_clearest_takes_the_candidate_that_says_the_text(trained, tiny_shards):
    recognizer = trained[0].network
    index = ShardIndex.load(tiny_shards)
    readings, _ = split_by_sentence(read_shards(index), 0.2)
    target, other = readings[0], next(r for r in readings if r.text != readings[0].text)
    text = torch.tensor([index.symbols.id("<bos>"), 1, *target.targets.tolist(), index.symbols.id("<eos>")])
    cond = Conditioning.pad([text], [torch.zeros(2, 5, dtype=torch.long)], index.symbols.pad_id).repeat_rows(
        3
    )
    # candidates: another sentence, the right one, the right one cut to a few frames
    candidates = [other.codes, target.codes, target.codes[:3]]
    codes = torch.zeros(3, max(len(c) for c in candidates), dtype=torch.long)
    for i, c in enumerate(candidates):
        codes[i, : len(c)] = c
    lengths = torch.tensor([len(c) for c in candidates])
    ar = ArResult(codes, lengths, torch.zeros(3, dtype=torch.bool))
    kept = keep_clearest(recognizer, cond, ar, 3)
    assert kept.codes.shape[0] == 1 and int(kept.lengths[0]) == len(target.codes)
    # a candidate that ran into the step limit never wins
    stuck = ArResult(codes, lengths, torch.tensor([False, True, False]))
    assert int(keep_clearest(recognizer, cond, stuck, 3).lengths[0]) != len(target.codes)


def test_a_continuation_is_read_with_its_prompt_and_a_cross_utterance_row_without():
    text = [torch.tensor([1, 2, 7, 8, 9, 3]), torch.tensor([1, 2, 7, 8, 9, 3])]
    prompts = [torch.full((2, 4), 5), torch.full((2, 4), 5)]
    cond = Conditioning.pad(text, prompts, 0, torch.tensor([True, False]))
    ar = ArResult(
        torch.tensor([[6, 6, 6], [6, 6, 6]]), torch.tensor([3, 3]), torch.zeros(2, dtype=torch.bool)
    )
    codes, lengths, targets, target_lengths = recognizer_rows(cond, ar)
    assert lengths.tolist() == [7, 3]
    assert codes[0].tolist() == [5, 5, 5, 5, 6, 6, 6] and codes[1, :3].tolist() == [6, 6, 6]
    assert targets[:, :3].tolist() == [[7, 8, 9], [7, 8, 9]] and target_lengths.tolist() == [3, 3]


def random_model(symbols: SymbolMap, codec) -> Valle:
    torch.manual_seed(0)
    return Valle(ValleConfig.tiny().with_data(len(symbols), codec.n_levels, codec.codebook_size)).eval()


def test_decode_keeps_one_of_its_own_draws_and_runs_the_nar_on_it_alone(trained, tiny_shards, tiny_codec):
    recognizer = trained[0].network
    index = ShardIndex.load(tiny_shards)
    model = random_model(index.symbols, tiny_codec)
    readings = read_shards(index)
    texts = [torch.tensor([1, 2, *r.targets.tolist(), 3]) for r in readings[:2]]
    cond = Conditioning.pad(texts, [r.codes[None].expand(2, -1)[:, :20] for r in readings[2:4]], 0)
    config = SamplerConfig(ar_temperature=1.0, best_of=3, seed=4, max_ar_steps=30)
    got = decode(model, cond, config, recognizer=recognizer)
    # the same draws by hand: 3 candidates a row in one batch, then the clearest, then the NAR
    many, generator = cond.repeat_rows(3), make_generator(4)
    ar = decode_ar(
        model, many, ArSampler(config, model.config.stop_token), ar_limits(config, many), generator=generator
    )
    kept = keep_clearest(recognizer, many, ar, 3)
    codes, _ = decode_nar(model, cond, kept.codes, kept.lengths, NarSampler(config), generator=generator)
    assert torch.equal(got.lengths, kept.lengths) and torch.equal(got.codes, codes)
    scores = recognizer.read_scores(*recognizer_rows(many, ar)).view(2, 3)
    for row in range(2):
        assert int(got.lengths[row]) == int(ar.lengths[row * 3 + int(scores[row].argmax())])


def test_best_of_is_refused_where_it_cannot_work(trained, tiny_shards, tiny_codec):
    with pytest.raises(ConfigError, match="greedy"):
        SamplerConfig(ar_temperature=0.0, best_of=2)
    with pytest.raises(ConfigError, match="beam"):
        SamplerConfig(beam_width=2, best_of=2)
    with pytest.raises(ConfigError, match="best_of=0"):
        SamplerConfig(best_of=0)
    index = ShardIndex.load(tiny_shards)
    model = random_model(index.symbols, tiny_codec)
    loaded = LoadedModel(model, ModelCard(model.config, index.symbols, tiny_codec.info, {}))
    plain = Synthesizer(loaded, tiny_codec)
    with pytest.raises(ConfigError, match="needs a recognizer"):
        plain.generate(["a"], [plain.prompt(_prompt())], "en-us", SamplerConfig(best_of=2))
    judged = Synthesizer(loaded, tiny_codec, recognizer=trained[0])
    with pytest.raises(ConfigError, match="cannot stream"):
        judged.stream("a", _prompt(), config=SamplerConfig(best_of=2))
    other = SymbolMap.build([["a", "b"]], ["en-us"])
    foreign_model = random_model(other, tiny_codec)
    stranger = LoadedModel(foreign_model, ModelCard(foreign_model.config, other, tiny_codec.info, {}))
    with pytest.raises(ConfigError, match="another symbol map"):
        Synthesizer(stranger, tiny_codec, recognizer=trained[0])


def _prompt():
    from valle.sampling.prompt import Prompt

    return Prompt(torch.randint(0, 1024, (2, 40), generator=torch.Generator().manual_seed(0)))


def test_infer_speaks_the_best_of_n_with_a_recognizer_file(
    trained, tiny_shards, tiny_corpus, tiny_codec, tmp_path
):
    from tests.cli.test_infer_cli import compose_infer
    from valle.audio import read_audio
    from valle.cli.infer import run
    from valle.export import save_export

    index = ShardIndex.load(tiny_shards)
    model = random_model(index.symbols, tiny_codec)
    ckpt = save_export(
        model.state_dict(), ModelCard(model.config, index.symbols, tiny_codec.info, {}), tmp_path / "m.pt"
    )
    recognizer = trained[0].save(tmp_path / "recognizer.pt")
    prompt = sorted(tiny_corpus.rglob("*.wav"))[0]
    overrides = [f"ckpt={ckpt}", "text=The lazy dog.", f"out={tmp_path / 'out.wav'}", "codec.weights=random"]
    cfg = compose_infer(
        *overrides,
        f"prompt={prompt}",
        "sampler.ar_temperature=0.8",
        "sampler.best_of=3",
        "sampler.max_ar_steps=40",
        "sampler.seed=0",
        f"recognizer={recognizer}",
    )
    [path] = run(cfg)
    wav, rate = read_audio(path)
    assert rate == tiny_codec.sample_rate and 0 < wav.shape[-1] <= 40 * tiny_codec.hop_length
    with pytest.raises(ConfigError, match="needs a recognizer"):  # best_of without one: one line, no output
        run(compose_infer(*overrides, f"prompt={prompt}", "sampler.best_of=3"))


@pytest.mark.parametrize(
    "setting, words",
    [
        ({"keep": "worst"}, "keep='worst'"),
        ({"val_share": 1.0}, "val_share=1.0"),
        ({"noise": -0.1}, "noise=-0.1"),
        ({"minutes": 0}, "minutes=0"),
        ({"lr": 0.0}, "lr=0.0"),
    ],
)
def test_recognizer_settings_out_of_range_are_refused_before_any_work(tmp_path, setting, words):
    with pytest.raises(ConfigError, match=words):
        train_recognizer(tmp_path / "no-shards-needed", tmp_path / "r.pt", **setting)
