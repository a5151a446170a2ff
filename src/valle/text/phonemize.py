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


def check_language(language: str) -> None:
    """Raise TextError when espeak-ng has no voice for `language`, naming the closest ones."""
    known = supported_languages()
    if language not in known:
        near = difflib.get_close_matches(language, list(known), n=5, cutoff=0.4)
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

    check_language(language)
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
        language: an espeak-ng language code, e.g. "en-us", "de", "fr-fr", "ja".

    Returns:
        symbols, e.g. ["h", "ə", "l", "ˈoʊ", ",", " ", "w", "ˈɜː", "l", "d"].

    Raises:
        TextError: empty text or an unknown language.
        RuntimeError: espeak-ng is not installed (the message says how to install it).
    """
    return phonemize_batch([text], language)[0]


def phonemize_batch(texts: list[str], language: str = "en-us") -> list[list[str]]:
    """Several texts of one language in one espeak call (much faster than one call each), each first
    written out as it is said (`valle.text.normalize`: abbreviations, currency, clock times, decades)."""
    for text in texts:
        if not text or not re.search(r"\w", text):
            raise TextError(f"empty text {text!r}: nothing to phonemize; give the utterance a transcript")
        if re.search("[\udc80-\udcff]", text):  # how Python decodes bytes that are not UTF-8 (command lines)
            raise TextError(
                f"text {text!r} holds bytes that are not UTF-8 (shown as \\udcXX); pass UTF-8 text"
            )
    from phonemizer.separator import Separator

    texts = [normalize(t, language) for t in texts]  # "Dr." → "Doctor", "$5" → "5 dollars", NUL → " "

    separator = Separator(phone=_PHONE_SEPARATOR, word=WORD_SEPARATOR, syllable="")
    with _ESPEAK:
        outputs = _backend(language).phonemize(texts, separator=separator, strip=True)
    return [split_symbols(output) for output in outputs]


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
