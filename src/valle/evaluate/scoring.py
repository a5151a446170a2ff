"""Scoring one item: sentence ID, phones, WER/CER, speaker similarity and duration, and `ItemScorer`, the one
object the serial path and every worker process (`valle.evaluate.workers`) score through. `report.py` turns
the items' scores into rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any, Protocol

import torch

from valle.errors import ConfigError
from valle.evaluate.text import normalize

log = logging.getLogger(__name__)


class ASR(Protocol):
    def transcribe(self, wav: torch.Tensor, sample_rate: int) -> str: ...


class Embedder(Protocol):
    def embed(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor: ...
    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> float: ...


class SentenceID(Protocol):
    """A closed-set identifier, e.g. `valle.evaluate.sentence_id.SentenceIdentifier`."""

    sentences: list[str]  # normalised candidates; `identify` returns an index into them

    def identify(self, wav: torch.Tensor, sample_rate: int) -> int | None: ...


class Phones(Protocol):
    """A phone recogniser, e.g. `valle.evaluate.phones.PhoneRecognizer`: audio → ARPAbet phones."""

    def recognize(self, wav: torch.Tensor, sample_rate: int) -> list[str]: ...


@dataclass
class EvalItem:
    """One utterance to score.

    Attributes:
        key: utterance id, shared by the rows that render the same text.
        text: what `audio` should say (raw text; normalised before scoring).
        audio: the waveform to score, float [channels, samples] or [samples].
        sample_rate: of `audio`, and of the prompt and reference unless given below.
        prompt_audio: the acoustic prompt the output was conditioned on, if any.
        reference_audio: the ground-truth recording of `text`, if any.
        others: recordings (waveform, rate) of *other* speakers: SIM (other voices) is the mean
            similarity to them, the baseline SIM (prompt) must beat for the voice to count as cloned.
        candidates: the closed set of sentences this item is identified among (`text` must be one of
            them after normalisation); None: the distinct texts of the item's row.
    """

    key: str
    text: str
    audio: torch.Tensor
    sample_rate: int
    prompt_audio: torch.Tensor | None = None
    reference_audio: torch.Tensor | None = None
    prompt_sample_rate: int | None = None
    reference_sample_rate: int | None = None
    others: Sequence[tuple[torch.Tensor, int]] = ()
    candidates: Sequence[str] | None = None


@dataclass
class ItemScores:
    key: str
    reference: str  # normalised text
    hypothesis: str  # normalised ASR output ("" without ASR)
    seconds: float
    sim_prompt: float | None = None
    sim_reference: float | None = None
    sim_other: float | None = None
    duration_ratio: float | None = None
    identified: str | None = None  # the candidate sentence decoded (normalised); "" when none was
    n_candidates: int | None = None
    sentence_correct: bool | None = (
        None  # None: not identified (no identifier, or words outside the dictionary)
    )
    reference_phones: str | None = None  # ARPAbet, space-separated
    hypothesis_phones: str | None = None


def _seconds(wav: torch.Tensor, sample_rate: int) -> float:
    return wav.shape[-1] / sample_rate


def score_item(
    item: EvalItem,
    asr: ASR | None,
    encoder: Embedder | None,
    cache: dict[int, torch.Tensor],
    identifier: SentenceID | None = None,
    phones: Phones | None = None,
) -> ItemScores:
    """Transcribe, identify, phone-decode and compare one item.

    `cache` maps id(tensor) → embedding, so a prompt or ground truth shared by several rows is
    embedded once per `evaluate_rows` call (once per worker process with `jobs` > 1). `identifier` is
    the one for this item's candidate set.
    """
    scores = ItemScores(
        item.key,
        normalize(item.text),
        normalize(asr.transcribe(item.audio, item.sample_rate)) if asr else "",
        _seconds(item.audio, item.sample_rate),
    )
    if (asr or identifier or phones) and not scores.reference:
        raise ConfigError(
            f"item {item.key!r}: its text {item.text!r} is empty after normalisation; fix the transcript"
        )
    if identifier is not None:
        index = identifier.identify(item.audio, item.sample_rate)
        scores.identified = "" if index is None else identifier.sentences[index]
        scores.n_candidates = len(identifier.sentences)
        scores.sentence_correct = scores.identified == scores.reference
    if phones is not None:
        _score_phones(item, scores, phones)
    if encoder is not None:
        _score_similarity(item, scores, encoder, cache)
    if item.reference_audio is not None:
        ref_seconds = _seconds(item.reference_audio, item.reference_sample_rate or item.sample_rate)
        scores.duration_ratio = scores.seconds / ref_seconds
    return scores


def _score_phones(item: EvalItem, scores: ItemScores, phones: Phones) -> None:
    from valle.evaluate.phones import oov_words, text_to_phones

    unknown = oov_words(item.text)
    if unknown:  # no reference phones: left out of PER (its n says so) rather than failing the report
        log.warning("%s: no PER, %s not in the pronunciation dictionary", item.key, ", ".join(unknown))
        return
    scores.reference_phones = " ".join(text_to_phones(item.text))
    scores.hypothesis_phones = " ".join(phones.recognize(item.audio, item.sample_rate))


def _score_similarity(
    item: EvalItem, scores: ItemScores, encoder: Embedder, cache: dict[int, torch.Tensor]
) -> None:
    def embed(wav: torch.Tensor, rate: int | None) -> torch.Tensor:
        if id(wav) not in cache:
            cache[id(wav)] = encoder.embed(wav, rate or item.sample_rate)
        return cache[id(wav)]

    try:
        out = embed(item.audio, item.sample_rate)
    except ValueError as error:  # silent or unvoiced output: no speaker to compare, a result in itself
        log.warning("%s: no SIM (%s)", item.key, error)
        return
    if item.prompt_audio is not None:
        scores.sim_prompt = encoder.similarity(out, embed(item.prompt_audio, item.prompt_sample_rate))
    if item.reference_audio is not None:
        scores.sim_reference = encoder.similarity(
            out, embed(item.reference_audio, item.reference_sample_rate)
        )
    if item.others:
        scores.sim_other = fmean(encoder.similarity(out, embed(wav, rate)) for wav, rate in item.others)


class _Identifiers:
    """One identifier per distinct candidate set, built on first use (a `SentenceIdentifier` holds two
    decoders)."""

    def __init__(self, factory: Callable[[Sequence[str]], SentenceID]) -> None:
        self.factory = factory
        self.usable: dict[tuple[str, ...], tuple[str, ...]] = {}  # candidates → those the grammar can hold
        self.built: dict[tuple[str, ...], SentenceID] = {}

    def for_item(self, item: EvalItem, row_texts: Sequence[str]) -> SentenceID | None:
        """The identifier for `item`'s candidates; None when its own text cannot be in the grammar.

        Raises:
            ConfigError: the item's text is not among its candidates.
        """
        text = normalize(item.text)
        candidates = tuple(
            dict.fromkeys(normalize(c) for c in (row_texts if item.candidates is None else item.candidates))
        )
        if text not in candidates:
            raise ConfigError(
                f"item {item.key!r}: its text {item.text!r} is not among its candidate sentences; "
                "add it to EvalItem.candidates"
            )
        if candidates not in self.usable:
            self.usable[candidates] = _dictionary_sentences(candidates)
        usable = self.usable[candidates]
        if text not in usable:
            log.warning("%s: no sentence ID, its text has words outside the dictionary", item.key)
            return None
        if usable not in self.built:
            self.built[usable] = self.factory(list(usable))
        return self.built[usable]


def _dictionary_sentences(candidates: tuple[str, ...]) -> tuple[str, ...]:
    """The candidates whose words are all in the dictionary: a grammar can hold no others."""
    from valle.evaluate.phones import oov_words

    unknown = {c: oov_words(c) for c in candidates}
    if any(unknown.values()):
        log.warning(
            "sentence ID: %d of %d candidates left out, words outside the dictionary: %s",
            sum(map(bool, unknown.values())),
            len(candidates),
            ", ".join(sorted({w for words in unknown.values() for w in words})),
        )
    return tuple(c for c in candidates if not unknown[c])


SCORER_NAMES = (
    "asr",
    "encoder",
    "identifier",
    "phones",
)  # the evaluate_rows arguments a `scorers` factory returns


class ItemScorer:
    """One process's recognisers, sentence identifiers and embedding cache over `rows`: scores an item by its
    place.

    The serial path and every worker process (`valle.evaluate.workers`) score through this one object,
    so an item is scored the same way wherever it is scored.
    """

    def __init__(
        self,
        rows: Mapping[str, Sequence[EvalItem]],
        asr: ASR | None = None,
        encoder: Embedder | None = None,
        identifier: Callable[[Sequence[str]], SentenceID] | None = None,
        phones: Phones | None = None,
    ) -> None:
        self.rows, self.asr, self.encoder, self.phones = rows, asr, encoder, phones
        self.identifiers = _Identifiers(identifier) if identifier is not None else None
        self.cache: dict[int, torch.Tensor] = {}
        self.row_texts = {name: [item.text for item in items] for name, items in rows.items()}

    @classmethod
    def build(
        cls, rows: Mapping[str, Sequence[EvalItem]], scorers: Callable[[], Mapping[str, Any]]
    ) -> ItemScorer:
        """An `ItemScorer` with the recognisers `scorers()` builds (e.g. `valle.cli.demo.scoring.scorers`).

        Raises:
            ConfigError: `scorers()` returned something other than a mapping of `SCORER_NAMES` to scorers.
        """
        built = scorers()
        if not isinstance(built, Mapping) or set(built) - set(SCORER_NAMES):
            raise ConfigError(
                f"scorers={getattr(scorers, '__qualname__', scorers)!r} returned {built!r}; "
                f"it must return a dict with some of the keys {', '.join(SCORER_NAMES)}"
            )
        return cls(rows, **built)

    def __call__(self, name: str, index: int) -> ItemScores:
        """Scores of `rows[name][index]`; its sentence identifier is the one for its candidate set."""
        item = self.rows[name][index]
        identifier = self.identifiers.for_item(item, self.row_texts[name]) if self.identifiers else None
        return score_item(item, self.asr, self.encoder, self.cache, identifier, self.phones)
