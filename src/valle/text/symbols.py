"""SymbolMap: phoneme symbols ↔ integer ids, saved beside the shards and inside every checkpoint.

Layout of ids (docs/design.md, "Symbol map"): pad=0, bos, eos, unk, sep, then one `<lang:NAME>` token
per language, then the phoneme symbols sorted. The map is plain JSON with a `version`, so ids never
shift between the data a model was trained on and the model itself.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from valle.errors import ConfigError
from valle.utils.io import atomic_write_text

FORMAT_VERSION = 1
PAD, BOS, EOS, UNK, SEP = "<pad>", "<bos>", "<eos>", "<unk>", "<sep>"
SPECIALS = (PAD, BOS, EOS, UNK, SEP)
# `SymbolMap.encode` puts HEAD_IDS ids (<bos>, <lang>) before a text's phonemes and TAIL_IDS (<eos>) after
HEAD_IDS, TAIL_IDS = 2, 1


# What a reader does with punctuation that a model's corpus never had: the nearest pause the model knows
# (tried in order), or nothing (quotes are not heard). Without this, text typed in a word processor (curly
# quotes, dashes, ellipses) or with "!" and ";" reaches a model trained on ", . ?" as `<unk>`, which it
# never saw in training.
PUNCTUATION_FALLBACK: dict[str, tuple[str, ...]] = {
    "!": (".",),
    ";": (",", "."),
    ":": (",", "."),
    "…": (",", "."),
    "—": (",",),
    "–": (",",),
    "―": (",",),
    "-": (",",),
    "(": (",",),
    ")": (",",),
    "[": (",",),
    "]": (",",),
    **dict.fromkeys(('"', "“", "”", "„", "‟", "«", "»", "‹", "›", "'", "‘", "’", "‚", "`", "¡", "¿"), ()),
}


def _is_punctuation(symbol: str) -> bool:
    return len(symbol) == 1 and unicodedata.category(symbol).startswith("P")


def language_token(language: str) -> str:
    return f"<lang:{language}>"


def plain_language(language: str) -> str:
    """A language tag as clients send it ("EN-us", "en_GB", "en") → the lowercase, hyphenated tag the
    project uses ("en-us", "en-gb"); a bare "en" is American English, the project's default English."""
    tag = language.strip().replace("_", "-").lower()
    return "en-us" if tag == "en" else tag


@dataclass
class SymbolMap:
    """An immutable vocabulary of phoneme symbols and language tokens.

    Build one with `SymbolMap.build(...)`, save with `save`, load with `load`.
    """

    languages: list[str]
    phonemes: list[str]
    version: int = FORMAT_VERSION
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.version != FORMAT_VERSION:
            raise ConfigError(
                f"symbol map format version {self.version} is not supported "
                f"(this valle reads version {FORMAT_VERSION})"
            )
        self.languages = sorted(set(self.languages))
        self.phonemes = sorted(set(self.phonemes) - set(SPECIALS))
        self._ids = {symbol: i for i, symbol in enumerate(self.symbols)}

    @classmethod
    def build(cls, phoneme_sequences: Iterable[Sequence[str]], languages: Iterable[str]) -> SymbolMap:
        """Collect every symbol that occurs in `phoneme_sequences`."""
        seen: set[str] = set()
        for sequence in phoneme_sequences:
            seen.update(sequence)
        return cls(languages=list(languages), phonemes=sorted(seen))

    def extended(self, phonemes: Iterable[str], languages: Iterable[str]) -> SymbolMap:
        """A map with more symbols. Ids of existing symbols may move, so only extend before training."""
        return SymbolMap(languages=[*self.languages, *languages], phonemes=[*self.phonemes, *phonemes])

    @property
    def symbols(self) -> list[str]:
        """Every symbol, indexed by id."""
        return [*SPECIALS, *(language_token(lang) for lang in self.languages), *self.phonemes]

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._ids

    def id(self, symbol: str) -> int:
        return self._ids[symbol]

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def unk_id(self) -> int:
        return self._ids[UNK]

    def language_id(self, language: str) -> int:
        """The id of `language`'s token; the tag is matched in any case ("EN-us", "en-GB"), and a bare
        "en" is "en-us" (`plain_language`)."""
        token = language_token(language)
        if token not in self._ids:
            known = {plain_language(lang): lang for lang in self.languages}
            token = language_token(known.get(plain_language(language), language))
        if token not in self._ids:
            raise ConfigError(
                f"language {language!r} is not in this symbol map (it knows {self.languages}); "
                "prepare data in that language or use a model trained on it"
            )
        return self._ids[token]

    def encode(self, phonemes: Sequence[str], language: str, unknown: Counter | None = None) -> list[int]:
        """Phoneme symbols → `[bos, <lang>, ids..., eos]` (`HEAD_IDS` before the ids, `TAIL_IDS` after).

        Symbols the map does not know become `unk` (never an exception mid-batch); pass a Counter as
        `unknown` to count them by symbol.
        """
        unk = self.unk_id
        ids = [self._ids.get(symbol, unk) for symbol in phonemes]
        if unknown is not None:
            unknown.update(symbol for symbol in phonemes if symbol not in self._ids)
        return [self._ids[BOS], self.language_id(language), *ids, self._ids[EOS]]

    def fold_punctuation(self, phonemes: Sequence[str]) -> list[str]:
        """Punctuation this map lacks → the nearest pause it knows, or dropped (`PUNCTUATION_FALLBACK`).

        A pause goes where the corpus puts one: right after the word, then a word boundary ("wait — what"
        → "wait, what"); two pauses in a row keep the first, none opens the text, and a comma put in at
        the end of the text is a full stop. Symbols the map knows, and unknown symbols that are not
        punctuation, are kept as they are. For inference: a training row's symbols must stay one-to-one
        with its durations.
        """
        folded: list[str] = []
        put_in = False  # whether the last pause in `folded` stands for another mark
        for symbol in phonemes:
            if symbol in self._ids or symbol not in PUNCTUATION_FALLBACK:
                if not (symbol == " " and (not folded or folded[-1] == " ")):
                    folded.append(symbol)
                    put_in = put_in and symbol == " "
                continue
            pause = next((p for p in PUNCTUATION_FALLBACK[symbol] if p in self._ids), None)
            if pause is None:
                continue
            while folded and folded[-1] == " ":
                folded.pop()
            if folded and not _is_punctuation(folded[-1]):
                folded += [pause, " "]
                put_in = True
        while folded and folded[-1] == " ":
            folded.pop()
        if put_in and folded[-1] == "," and "." in self._ids:
            folded[-1] = "."  # "Really…", "and then —": a pause that ends the text ends the sentence
        return folded

    def decode(self, ids: Iterable[int]) -> list[str]:
        symbols = self.symbols
        return [symbols[i] for i in ids]

    def fingerprint(self) -> str:
        """A short hash of the id assignment: equal fingerprints mean interchangeable maps."""
        return hashlib.sha256("\n".join(self.symbols).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "languages": self.languages,
            "phonemes": self.phonemes,
            "symbols": self.symbols,
            "fingerprint": self.fingerprint(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SymbolMap:
        symbol_map = cls(languages=data["languages"], phonemes=data["phonemes"], version=data["version"])
        if "symbols" in data and data["symbols"] != symbol_map.symbols:
            raise ConfigError(
                "symbol map is inconsistent: its 'symbols' list does not match its languages "
                "and phonemes; it was edited by hand or written by another tool"
            )
        return symbol_map

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> SymbolMap:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, KeyError) as error:
            raise ConfigError(f"{path}: not a valle symbol map ({error})") from error
