"""Scoring in worker processes gives the serial scores: real recognisers on real and festival recordings."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from valle.errors import ConfigError
from valle.evaluate.report import EvalItem, RowScores, evaluate_rows

pytest.importorskip("pocketsphinx")


def all_scorers() -> dict:
    """What `valle.cli.demo.scoring.scorers` builds; module-level, so the workers can import and call it."""
    from valle.evaluate.asr import PocketSphinxASR
    from valle.evaluate.phones import PhoneRecognizer
    from valle.evaluate.sentence_id import SentenceIdentifier
    from valle.evaluate.sim import SpeakerEncoder

    return {
        "asr": PocketSphinxASR(),
        "encoder": SpeakerEncoder(),
        "identifier": SentenceIdentifier,
        "phones": PhoneRecognizer(),
    }


def phone_scorer() -> dict:
    from valle.evaluate.phones import PhoneRecognizer

    return {"phones": PhoneRecognizer()}


def misspelt_scorers() -> dict:
    return {"speech_recogniser": None}


def assert_same(parallel: object, serial: object, where: str = "row") -> None:
    """Equal field by field; floats to 1e-6 (one embedding may differ in its last bits between processes)."""
    if dataclasses.is_dataclass(parallel):
        assert type(parallel) is type(serial), where
        for f in dataclasses.fields(parallel):
            assert_same(getattr(parallel, f.name), getattr(serial, f.name), f"{where}.{f.name}")
    elif isinstance(parallel, dict):
        assert parallel.keys() == serial.keys(), where
        for key in parallel:
            assert_same(parallel[key], serial[key], f"{where}[{key!r}]")
    elif isinstance(parallel, list):
        assert len(parallel) == len(serial), where
        for i, (p, s) in enumerate(zip(parallel, serial, strict=True)):
            assert_same(p, s, f"{where}[{i}]")
    elif isinstance(parallel, float):
        assert parallel == pytest.approx(serial, rel=1e-6, abs=1e-6), where
    else:
        assert parallel == serial, where


def test_two_workers_give_the_serial_scores_in_order(fixtures, synthetic, caplog):
    lj = [(key, wav, rate, text) for key, (wav, rate, text) in fixtures.items()]
    festival = [(key, wav, rate, text) for key, (wav, rate, text) in synthetic.items()]
    texts = [text for *_, text in lj + festival] + ["Zzxqv blorf."]  # a candidate no grammar can hold
    rows = {
        # cross-utterance style: the next LJ recording as the prompt, festival voices as the other voices
        "lj": [
            EvalItem(
                key,
                text,
                wav,
                rate,
                lj[(i + 1) % 4][1],
                wav,
                lj[(i + 1) % 4][2],
                rate,
                others=[(w, r) for _, w, r, _ in festival],
            )
            for i, (key, wav, rate, text) in enumerate(lj)
        ],
        # the same festival voice's other sentence as the prompt; identified among all nine texts
        "festival": [
            EvalItem(
                key,
                text,
                wav,
                rate,
                festival[(i + 2) % 4][1],
                None,
                festival[(i + 2) % 4][2],
                others=[(w, r) for _, w, r, _ in lj],
                candidates=texts,
            )
            for i, (key, wav, rate, text) in enumerate(festival)
        ],
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers and the demo run: one embedding per core
    try:
        serial = evaluate_rows(rows, scorers=all_scorers)
    finally:
        torch.set_num_threads(threads)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        parallel = evaluate_rows(rows, scorers=all_scorers, jobs=2)
    assert [r.name for r in parallel] == ["lj", "festival"]
    assert [i.key for r in parallel for i in r.items] == [key for key, *_ in lj + festival]
    assert_same(parallel, serial)
    lj_row, festival_row = serial
    # the instrument measured something on every column it was given
    assert (
        lj_row.sentence_id == 1.0
        and festival_row.sentence_id >= 0.75
        and festival_row.items[0].n_candidates == 8
    )
    assert lj_row.sim_prompt > lj_row.sim_other + 0.2 and lj_row.sim_reference == pytest.approx(1.0)
    assert all(isinstance(r, RowScores) and r.wer is not None and r.per is not None for r in parallel)
    assert all(r.estimates["sim_prompt"].low is not None for r in parallel)
    # a worker's warning reaches the parent's loggers
    assert any("1 of 9 candidates left out" in m and "zzxqv" in m for m in caplog.messages), caplog.messages


@pytest.mark.parametrize(
    ("text", "rate", "error", "message"),
    [
        (
            "...",
            None,
            ConfigError,
            "item 'bad': its text '...' is empty after normalisation",
        ),  # the caller's mistake
        (
            None,
            -16_000,
            ValueError,
            "should be positive",
        ),  # audio the resampler refuses: passed on as it was raised
    ],
)
def test_an_error_in_a_worker_reaches_the_caller_with_its_message(fixtures, text, rate, error, message):
    wav, good_rate, good_text = fixtures["LJ049-0108"]
    rows = {
        "r": [
            EvalItem("fine", good_text, wav, good_rate),
            EvalItem("bad", text or good_text, wav, rate or good_rate),
        ]
    }
    with pytest.raises(error, match=message) as serial:
        evaluate_rows(rows, scorers=phone_scorer)
    with pytest.raises(error) as parallel:
        evaluate_rows(rows, scorers=phone_scorer, jobs=2)
    assert str(parallel.value) == str(serial.value)
    assert "Traceback" in str(parallel.value.__cause__)  # the worker's traceback comes along


def test_a_factory_returning_the_wrong_names_is_named_from_the_worker():
    rows = {
        "r": [EvalItem("a", "hello", torch.zeros(100), 100), EvalItem("b", "hello", torch.zeros(100), 100)]
    }
    with pytest.raises(
        ConfigError, match="misspelt_scorers.*speech_recogniser.*keys asr, encoder, identifier"
    ):
        evaluate_rows(rows, scorers=misspelt_scorers, jobs=2)


def test_scorers_that_cannot_reach_a_worker_are_refused_before_any_starts():
    rows = {
        "r": [EvalItem("a", "hello", torch.zeros(100), 100), EvalItem("b", "hello", torch.zeros(100), 100)]
    }
    with pytest.raises(ConfigError, match="jobs=2 needs scorers="):
        evaluate_rows(rows, phones=object(), jobs=2)
    with pytest.raises(ConfigError, match="cannot be sent to worker processes"):
        evaluate_rows(rows, scorers=lambda: {}, jobs=2)
    with pytest.raises(ConfigError, match="not both"):
        evaluate_rows(rows, phones=object(), scorers=phone_scorer)
    with pytest.raises(ConfigError, match="jobs=0"):
        evaluate_rows(rows, scorers=phone_scorer, jobs=0)
    with pytest.raises(ValueError, match="row 'empty' has no items"):
        evaluate_rows({**rows, "empty": []}, scorers=phone_scorer, jobs=2)


def test_a_decoder_hears_each_recording_as_if_it_were_the_first(fixtures):
    """Without a fresh front end per utterance, allphone decoded LJ049-0108 differently after LJ049-0110:
    an item's PER depended on the item scored before it, so no split across workers could match."""
    from valle.evaluate.phones import PhoneRecognizer

    first, then = fixtures["LJ049-0110"], fixtures["LJ049-0108"]
    alone = PhoneRecognizer().recognize(then[0], then[1])
    recognizer = PhoneRecognizer()
    recognizer.recognize(first[0], first[1])
    assert recognizer.recognize(then[0], then[1]) == alone
