"""The engine without HTTP: requests admitted in one turn keep their own settings."""

from __future__ import annotations

import time

import pytest

from tests.conftest import real_speech_dir, save_random_model
from tests.serving.conftest import HOP
from valle.export import load
from valle.sampling.pipeline import SamplerConfig
from valle.sampling.synthesize import Synthesizer
from valle.serving.engine import Engine, Job
from valle.text.phonemize import TextError

TEXT = "Hello there, my friend."  # 18 phonemes in en-us, 20 in es: a step limit per phoneme tells them apart


@pytest.fixture(scope="module")
def bilingual(tiny_codec, tmp_path_factory) -> Synthesizer:
    """A random model that knows the symbols of TEXT in en-us and in es."""
    path = save_random_model(
        tmp_path_factory.mktemp("bilingual") / "model.pt",
        tiny_codec,
        {"en-us": TEXT, "es": TEXT},
        stops=False,
    )
    return Synthesizer(load(path, "cpu"), device="cpu")


def run_together(
    synthesizer: Synthesizer,
    requests: list[tuple[str, str]],
    config: SamplerConfig,
    max_steps: int | None = None,
) -> tuple[list[Job], dict[int, BaseException | None]]:
    """One job per (text, language), all submitted before the engine starts (so that one turn admits them
    all); the jobs, and how each ended (None: cleanly)."""
    prompt = synthesizer.prompt(real_speech_dir() / "LJ049-0108.wav")
    done: dict[int, BaseException | None] = {}
    jobs = [
        Job([text], prompt, language, config, lambda chunk: None, lambda error, i=i: done.update({i: error}))
        for i, (text, language) in enumerate(requests)
    ]
    engine = Engine(synthesizer, max_rows=len(jobs), max_steps=max_steps)
    for job in jobs:
        engine.submit(job)
    engine.start()
    deadline = time.monotonic() + 60
    while len(done) < len(jobs) and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.stop()
    assert len(done) == len(jobs), f"not all finished: {done}"
    return jobs, done


def test_requests_in_two_languages_admitted_together_each_keep_their_language(bilingual):
    config = SamplerConfig(max_ar_steps_per_phoneme=2, seed=0)
    languages = ["en-us", "es"]
    expected = [config.ar_step_limit(len(bilingual.text_ids(TEXT, lang))) * HOP for lang in languages]
    assert expected[0] != expected[1]
    jobs, done = run_together(bilingual, [(TEXT, language) for language in languages], config)
    assert done == {0: None, 1: None}, f"not all finished cleanly: {done}"
    assert [job.samples for job in jobs] == expected
    assert all(job.hit_limit for job in jobs)  # the model never stops: each ran to its step limit


def test_a_request_that_cannot_be_prepared_fails_alone_not_with_those_admitted_beside_it(bilingual):
    # the same settings and language: one prefill for both, in which the first text cannot be phonemized
    # (the server's request check refuses such text; a voice's transcript meets it only here)
    config = SamplerConfig(max_ar_steps=10, seed=0)
    jobs, done = run_together(bilingual, [("🍕🍕", "en-us"), (TEXT, "en-us")], config)
    assert isinstance(done[0], TextError) and "nothing to phonemize" in str(done[0]), done
    assert done[1] is None and jobs[1].samples == 10 * HOP


def test_the_engine_cuts_every_sentence_at_its_step_bound(bilingual):
    # the server's default of 20 steps a phoneme would give this text 360 steps: the bound keeps 12
    config = SamplerConfig(max_ar_steps_per_phoneme=20, seed=0)
    jobs, done = run_together(bilingual, [(TEXT, "en-us")], config, max_steps=12)
    assert done == {0: None} and jobs[0].samples == 12 * HOP and jobs[0].hit_limit
