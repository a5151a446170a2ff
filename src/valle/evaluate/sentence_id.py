"""Sentence identification: which of N known sentences does a recording say?

pocketsphinx decodes under a JSGF grammar whose one public rule is the N sentences as alternatives,
so the recogniser can only answer with one of them. Top-1 accuracy against chance 1/N tells whether
the right words are said well before open-vocabulary WER moves (that must get every word exactly
right among the ~130,000 of its dictionary). On clean speech it is near 100 % (the four LJ Speech
fixtures and festival voices, tests/evaluate); on a model that babbles it falls to chance or below.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from valle.errors import ConfigError
from valle.evaluate.asr import decode_utterance, sphinx_decoder
from valle.evaluate.text import normalize

SEARCH = "sentences"


def jsgf_grammar(sentences: Sequence[str]) -> str:
    """JSGF text with one public rule: the (already normalised) sentences as alternatives."""
    alternatives = " | ".join(f"( {s} )" for s in sentences)
    return f"#JSGF V1.0;\ngrammar {SEARCH};\npublic <sentence> = {alternatives} ;\n"


class SentenceIdentifier:
    """Identify a recording among a closed set of sentences (pocketsphinx, the wheel's en-us model).

    Args:
        sentences: the candidates, raw text (normalised with `valle.evaluate.text.normalize`).
            Identical sentences after normalisation resolve to the first of them.
        retry: when the search (silence and noise allowed between words) decodes nothing, search again
            without them, with a second decoder.
        loglevel: pocketsphinx's own log threshold.
        **config: extra decoder options (e.g. `dict=` for another pronunciation dictionary).

    Raises:
        ConfigError: no sentences, an empty one, or a word outside the decoder's dictionary (names the
            word and the sentence).
        ImportError: pocketsphinx is not installed.
    """

    def __init__(
        self, sentences: Sequence[str], retry: bool = True, loglevel: str = "FATAL", **config: object
    ) -> None:
        self.sentences = [normalize(s) for s in sentences]
        if not self.sentences:
            raise ConfigError("sentence identification needs at least one candidate sentence")
        self.decoder = sphinx_decoder(loglevel, {"lm": None, **config})
        for raw, sentence in zip(sentences, self.sentences, strict=True):
            unknown = [w for w in sentence.split() if self.decoder.lookup_word(w) is None]
            if unknown or not sentence:
                reason = (
                    f"{', '.join(map(repr, unknown))} not in pocketsphinx's dictionary"
                    if sentence
                    else "no words"
                )
                raise ConfigError(
                    f"candidate sentence {raw!r}: {reason}; spell it out or leave the sentence out"
                )
        self._index: dict[str, int] = {}
        for i, sentence in enumerate(self.sentences):
            self._index.setdefault(sentence, i)
        # Silence and noise "words" between the sentence's words help most voices, but on some (espeak-ng)
        # the best path then ends off the grammar's final state and nothing is decoded: a second search
        # without them decodes most of those (8 espeak-ng sentences among 44: 2 → 6 identified).
        self.retry = (
            sphinx_decoder(loglevel, {"lm": None, "fsgusefiller": False, **config}) if retry else None
        )
        for decoder in (self.decoder, self.retry):
            if decoder is not None:
                decoder.add_jsgf_string(SEARCH, jsgf_grammar(list(self._index)))
                decoder.activate_search(SEARCH)

    def identify(self, wav: torch.Tensor, sample_rate: int) -> int | None:
        """One utterance [channels, samples] or [samples] float → index of the sentence it says.

        Returns:
            The index into `sentences`, or None when the decoder reached no complete sentence
            (silence, empty audio, or a partial path through the grammar).
        """
        words = decode_utterance(self.decoder, wav, sample_rate).split()
        if not words and self.retry is not None:
            words = decode_utterance(self.retry, wav, sample_rate).split()
        return self._index.get(" ".join(re.sub(r"\(\d+\)$", "", w) for w in words))  # "read(2)" → "read"
