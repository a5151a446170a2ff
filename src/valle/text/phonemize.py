"""Text → phoneme symbols with espeak-ng (through phonemizer), keeping stress and punctuation.

A symbol is one espeak phone (stress marks stay attached to their vowel, as espeak writes them),
one punctuation mark, or the word separator `" "`.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import shutil
import threading
from typing import Any

from valle.errors import ConfigError, SetupError
from valle.text.normalize import normalize
from valle.text.symbols import plain_language

log = logging.getLogger(__name__)

WORD_SEPARATOR = " "
_PHONE_SEPARATOR = "|"
PUNCTUATION = ';:,.!?¡¿—…"«»“”()'
_INSTALL_HINT = (
    "install espeak-ng: `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)"
)


class TextError(ConfigError):
    """Text that cannot be phonemized: empty, or in a language espeak-ng does not know."""


@functools.cache
def supported_languages() -> dict[str, str]:
    """espeak-ng's language codes → names. Raises a RuntimeError naming the install step if it is missing."""
    from phonemizer.backend import EspeakBackend

    if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        raise SetupError(f"espeak-ng was not found; {_INSTALL_HINT}")
    try:
        return EspeakBackend.supported_languages()
    except RuntimeError as error:
        raise SetupError(f"espeak-ng could not be loaded ({error}); {_INSTALL_HINT}") from error


def check_language(language: str) -> str:
    """espeak-ng's name for `language`, given as clients send tags: in any case ("en-GB", "EN-us"), with
    "_" or "-", and a bare "en" meaning "en-us" (the project's default English; `plain_language`).

    Raises:
        TextError: espeak-ng has no voice for it; the message names the closest ones.
    """
    by_tag = {plain_language(name): name for name in supported_languages()}
    tag = plain_language(language)
    if tag in by_tag:
        return by_tag[tag]
    near = [by_tag[t] for t in difflib.get_close_matches(tag, list(by_tag), n=5, cutoff=0.4)]
    hint = f"did you mean {', '.join(near)}?" if near else "see `espeak-ng --voices` for the list"
    raise TextError(f"unknown language {language!r} for espeak-ng; {hint}")


class _Demoted(logging.LoggerAdapter):
    """phonemizer's logger: its info and warnings go to DEBUG, its errors stay errors.

    phonemizer warns about every batch whose word count changed (punctuation, numbers read out),
    which is expected here. Demoting them in an adapter keeps them for a DEBUG log without changing
    the level of any logger the application configures.
    """

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)


# libespeak-ng keeps one global state per process: two threads phonemizing at once (the server's request
# handlers and its engine) can each get the other's phonemes. One call at a time.
_ESPEAK = threading.RLock()


@functools.cache
def _backend(language: str):
    # One backend per language and process: creating one loads espeak's data, which is slow.
    from phonemizer.backend import EspeakBackend

    return EspeakBackend(
        language,
        preserve_punctuation=True,
        punctuation_marks=PUNCTUATION,
        with_stress=True,
        language_switch="remove-flags",
        words_mismatch="ignore",
        logger=_Demoted(log),  # duck-typed: phonemizer only logs through it
    )


def phonemize(text: str, language: str = "en-us") -> list[str]:
    """One text → its phoneme symbols.

    Args:
        text: the utterance's text; must contain at least one letter or digit.
        language: an espeak-ng language code, e.g. "en-us", "de", "fr-fr", "ja", in any case; a bare
            "en" is "en-us".

    Returns:
        symbols, e.g. ["h", "ə", "l", "ˈoʊ", ",", " ", "w", "ˈɜː", "l", "d"].

    Raises:
        TextError: empty text or an unknown language.
        RuntimeError: espeak-ng is not installed (the message says how to install it).
    """
    return phonemize_batch([text], language)[0]


def phonemize_batch(texts: list[str], language: str = "en-us") -> list[list[str]]:
    """Several texts of one language in one espeak call (much faster than one call each), each first
    written out as it is said (`valle.text.normalize`: abbreviations, currency, clock times, decades,
    decimals, addresses, markup). Always one symbol list per text, in order (`_espeak`)."""
    for text in texts:
        if not text or not re.search(r"\w", text):
            raise TextError(
                f"empty text {text!r}: nothing to phonemize (no letters or digits); give words to say"
            )
        if re.search("[\udc80-\udcff]", text):  # how Python decodes bytes that are not UTF-8 (command lines)
            raise TextError(
                f"text {text!r} holds bytes that are not UTF-8 (shown as \\udcXX); pass UTF-8 text"
            )
    language = check_language(language)  # "en-GB" → "en-gb", "en" → "en-us"
    texts = [normalize(t, language) for t in texts]  # "Dr." → "Doctor", "$5" → "5 dollars", NUL → " "
    with _ESPEAK:
        outputs = _espeak(texts, language)
    return [split_symbols(output) for output in outputs]


def _espeak(texts: list[str], language: str) -> list[str]:
    """phonemizer's output for each text: exactly one string per text, whatever phonemizer does.

    With preserve_punctuation, phonemizer 3.4 cuts a text at a punctuation mark by `str.split` on the
    mark's text, so a mark with no space around it ("." ending the text) is also cut at a decimal point
    earlier in it ("Es ist 0.5 m."): one text comes back as two, the batch's outputs shift, and the
    words after the first piece were lost. A space after each text makes the last mark ". ", which no
    number holds; where phonemizer still returns another count, each text is phonemized on its own and
    its pieces are joined, so no word is lost.
    """
    from phonemizer.separator import Separator

    backend = _backend(language)
    separator = Separator(phone=_PHONE_SEPARATOR, word=WORD_SEPARATOR, syllable="")
    outputs = backend.phonemize([f"{t} " for t in texts], separator=separator, strip=True)
    if len(outputs) == len(texts):
        return outputs
    log.debug(
        "phonemizer returned %d outputs for %d texts; phonemizing one at a time", len(outputs), len(texts)
    )
    singles = [backend.phonemize([f"{t} "], separator=separator, strip=True) for t in texts]
    for text, pieces in zip(texts, singles, strict=True):
        if len(pieces) != 1:
            log.warning(
                "phonemizer cut %r into %d pieces; its punctuation may be misplaced", text, len(pieces)
            )
    return [WORD_SEPARATOR.join(pieces) for pieces in singles]


def split_symbols(phonemized: str) -> list[str]:
    """Split phonemizer output ("h|ə|l|ˈoʊ, w|ˈɜː|l|d") into symbols, punctuation as its own symbols."""
    symbols: list[str] = []
    for word in phonemized.split(WORD_SEPARATOR):
        if not word:
            continue
        if symbols:
            symbols.append(WORD_SEPARATOR)
        for phone in word.split(_PHONE_SEPARATOR):
            symbols.extend(_split_punctuation(phone))
    return symbols


def _split_punctuation(phone: str) -> list[str]:
    # preserve_punctuation glues marks to the neighbouring phone ("d," or "¿k"); give each its own symbol.
    pieces: list[str] = []
    current = ""
    for char in phone:
        if char in PUNCTUATION:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(char)
        else:
            current += char
    if current:
        pieces.append(current)
    return pieces
