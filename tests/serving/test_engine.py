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


def run_together(synthesizer: Synthesizer, languages: list[str], config: SamplerConfig) -> list[int]:
    """One request of TEXT per language, all submitted before the engine starts (so that one turn admits
    them all); the samples each got."""
    prompt = synthesizer.prompt(real_speech_dir() / "LJ049-0108.wav")
    done: dict[int, BaseException | None] = {}
    jobs = [
        Job([TEXT], prompt, language, config, lambda chunk: None, lambda error, i=i: done.update({i: error}))
        for i, language in enumerate(languages)
    ]
    engine = Engine(synthesizer, max_rows=len(jobs))
    for job in jobs:
        engine.submit(job)
    engine.start()
    deadline = time.monotonic() + 60
    while len(done) < len(jobs) and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.stop()
    assert done == dict.fromkeys(range(len(jobs))), f"not all finished cleanly: {done}"
    return [job.samples for job in jobs]


def test_requests_in_two_languages_admitted_together_each_keep_their_language(bilingual):
    config = SamplerConfig(max_ar_steps_per_phoneme=2, seed=0)
    languages = ["en-us", "es"]
    expected = [config.ar_step_limit(len(bilingual.text_ids(TEXT, lang))) * HOP for lang in languages]
    assert expected[0] != expected[1]
    assert run_together(bilingual, languages, config) == expected
