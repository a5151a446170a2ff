"""Models and audio for the evaluation tests, loaded once per module (synthesized speech once per session)."""

from __future__ import annotations

import pytest
import torch

from tests.evaluate.speech import festival_speech, real_speech


@pytest.fixture(scope="module")
def fixtures() -> dict[str, tuple[torch.Tensor, int, str]]:
    return real_speech()


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> dict[str, tuple[torch.Tensor, int, str]]:
    return festival_speech(tmp_path_factory.mktemp("festival"))


@pytest.fixture(scope="module")
def phone_recognizer():
    pytest.importorskip("pocketsphinx")
    from valle.evaluate.phones import PhoneRecognizer

    return PhoneRecognizer()


@pytest.fixture(scope="module")
def asr():
    pytest.importorskip("pocketsphinx")
    from valle.evaluate.asr import PocketSphinxASR

    return PocketSphinxASR()


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("resemblyzer")
    from valle.evaluate.sim import SpeakerEncoder

    # One intra-op thread: on a shared, busy CPU torch's thread pool makes one embedding take
    # seconds instead of ~0.1 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield SpeakerEncoder()
    torch.set_num_threads(threads)
