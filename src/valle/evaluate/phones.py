"""Phoneme error rate (PER): what phones were said, with no language model to guess the words.

The recogniser is pocketsphinx's `allphone` search (phones constrained only by the wheel's phone
trigram model `en-us-phone.lm.bin`); the reference is the transcript's ARPAbet phones from the
wheel's `cmudict-en-us.dict`. Word-level WER needs the words to come out right; PER moves as soon as
the sounds get closer, so it sees an undertrained model's progress earlier. It is a weak phone
recogniser: about 50 % PER on clean LJ Speech and 38 % on festival voices, against 85 % and more on
a recording of another sentence or on noise, so read it as a ranking, not an absolute figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

from valle.errors import ConfigError
from valle.evaluate.asr import decode_utterance, sphinx_decoder, sphinx_model_path
from valle.evaluate.edits import error_rate, word_edits
from valle.evaluate.text import normalize

DICTIONARY = "cmudict-en-us.dict"
PHONE_LM = "en-us-phone.lm.bin"
# CMU's recommended allphone settings; lw=2.0 also gave the lowest PER of 1.0-10.0 on the test fixtures.
ALLPHONE_CONFIG = {"lw": 2.0, "beam": 1e-20, "pbeam": 1e-20}


@lru_cache(maxsize=1)
def pronunciations() -> dict[str, tuple[str, ...]]:
    """word → its first pronunciation in the wheel's CMU dictionary, ARPAbet without stress digits.

    Alternates ("read(2)") are left out: the first listed pronunciation is the reference.
    """
    no_stress = str.maketrans("", "", "0123456789")
    table: dict[str, tuple[str, ...]] = {}
    with open(sphinx_model_path(DICTIONARY), encoding="utf-8") as lines:
        for line in lines:
            word, *phones = line.split(maxsplit=1)
            if phones and not word.endswith(")") and word not in table:
                table[word] = tuple(phones[0].translate(no_stress).split())
    return table


def oov_words(text: str) -> list[str]:
    """The words of `normalize(text)` that the CMU dictionary lacks, in order."""
    table = pronunciations()
    return [w for w in normalize(text).split() if w not in table]


def text_to_phones(text: str) -> list[str]:
    """A transcript → its reference ARPAbet phones: "speech" → ["S", "P", "IY", "CH"].

    Raises:
        ConfigError: a word outside the dictionary (named), or no words at all.
    """
    words = normalize(text).split()
    if not words:
        raise ConfigError(f"{text!r} has no words to turn into phones")
    unknown = oov_words(text)
    if unknown:
        raise ConfigError(
            f"{text!r}: {', '.join(repr(w) for w in unknown)} not in pocketsphinx's {DICTIONARY}; "
            "spell the word out or leave the sentence out"
        )
    table = pronunciations()
    return [phone for word in words for phone in table[word]]


def is_speech_phone(phone: str) -> bool:
    """False for silence and fillers (SIL, +NSN+, +SPN+, ...), which no transcript has."""
    return phone != "SIL" and not phone.startswith("+")


class PhoneRecognizer:
    """pocketsphinx allphone decoding with the wheel's en-us acoustic and phone language models.

    Args:
        loglevel: pocketsphinx's own log threshold.
        **config: decoder options over `ALLPHONE_CONFIG` (e.g. `lw=` for the phone model's weight).

    Raises:
        ImportError: pocketsphinx is not installed.
    """

    def __init__(self, loglevel: str = "FATAL", **config: object) -> None:
        options = {"allphone": sphinx_model_path(PHONE_LM), **ALLPHONE_CONFIG, **config}
        self.decoder = sphinx_decoder(loglevel, options)

    def recognize(self, wav: torch.Tensor, sample_rate: int) -> list[str]:
        """One utterance [channels, samples] or [samples] float → ARPAbet phones, silences dropped."""
        return [p for p in decode_utterance(self.decoder, wav, sample_rate).split() if is_speech_phone(p)]


def per(references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]) -> float:
    """Corpus-level phoneme error rate: total phone edits / total reference phones (a fraction).

    Raises:
        ConfigError: different numbers of references and hypotheses, or no reference phones.
    """
    if len(references) != len(hypotheses):
        raise ConfigError(f"{len(references)} references but {len(hypotheses)} hypotheses; pass one of each")
    return error_rate(
        [word_edits(" ".join(r), " ".join(h)) for r, h in zip(references, hypotheses, strict=True)]
    )
