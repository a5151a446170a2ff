"""Long text → sentences, so each AR run stays within the lengths the model was trained on."""

from __future__ import annotations

import re
from collections.abc import Iterator

from valle.text.normalize import BULLET, HEADING, period_is_abbreviation

# Sentence-ending punctuation, possibly followed by one closing quote or bracket, then whitespace.
_BOUNDARY = re.compile(r"([.!?…;:][\"'”»)]?)\s+")
# A blank line ends what comes before it even without a mark (a title, a list item); a single line break
# does not, since hard-wrapped text (e-mail, a pasted PDF) breaks lines inside its sentences.
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# A line that starts a list item ("- ", "* ", "• ", "1. ", "2) ") or is a Markdown heading ("# Title") starts
# a new piece even after a single line break. A numbered marker is taken off (its "." or ")" would be read as
# a sentence of its own: "1."); bullets and "#" stay for the normalizer, which drops them as markup.
_NUMBERED = re.compile(r"[ \t]*\d{1,3}[.)][ \t]+(?=\S)")


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Split at blank lines and after sentence-ending punctuation; a sentence longer than `max_chars` is
    split at commas, then at spaces, then anywhere. Short pieces are kept as they are (one word is a
    valid utterance).

    A period that `valle.text.normalize` writes out (after "Dr.", "Jan. 5", "No. 5", an initial "J. K."
    or a dotted abbreviation "U.S.", "p.m."), and any mark followed by a lowercase word, does not end a
    sentence: splitting there would speak "Dr." and "Smith" as two utterances with a pause between them.
    "etc.", "Ave.", "Blvd." and "Rd." before a capital do end one, as the normalizer reads them.

    A line starting with a list marker ("- ", "* ", "• ", or "1. ", "2) " where two or more lines are
    numbered) or a Markdown heading ("# ") starts a new piece; a numbered marker is taken off ("1." is
    not said), bullets and "#" are left to the normalizer, which drops them. A piece with nothing to say
    (only punctuation or emoji: "Great! 🎉") joins the one before it."""
    numbered = len(re.findall(r"^" + _NUMBERED.pattern, text, flags=re.M)) >= 2
    pieces: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.strip()):
        for item in _items(paragraph, numbered):
            for sentence in (s.strip() for s in _sentences(item)):
                if sentence and pieces and not re.search(r"\w", sentence):
                    pieces[-1] = f"{pieces[-1]} {sentence}"
                elif sentence:
                    pieces.extend(_split_long(sentence, max_chars))
    return pieces


def _items(paragraph: str, numbered: bool) -> Iterator[str]:
    """The paragraph's list items (a numbered one without its number) and headings, and the text
    between them."""
    lines: list[str] = []
    for line in paragraph.split("\n"):
        number = _NUMBERED.match(line) if numbered else None
        if lines and (number or BULLET.match(line) or HEADING.match(line)):
            yield "\n".join(lines)
            lines = []
        lines.append(line[number.end() :] if number else line)
        if HEADING.match(line):  # a heading is a piece of its own
            yield lines.pop()
    if lines:
        yield "\n".join(lines)


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for boundary in _BOUNDARY.finditer(text):
        if not _sentence_goes_on(text, boundary):
            yield text[start : boundary.end(1)]
            start = boundary.end()
    yield text[start:]


def _sentence_goes_on(text: str, boundary: re.Match[str]) -> bool:
    if text[boundary.end() : boundary.end() + 1].islower():  # "Note: this", "etc. and", "ok? yes"
        return True
    if boundary.group(1) != ".":
        return False
    before = text[: boundary.start(1)].split()
    word = before[-1].lstrip("\"'“«(") if before else ""
    # "Dr. Smith", "Jan. 5", "U.S. Army": the normalizer writes these periods out, so no pause is said
    return period_is_abbreviation(word, text[boundary.end(1) :])


def _split_long(sentence: str, max_chars: int, separators: tuple[str, ...] = (", ", " ")) -> list[str]:
    """Pieces of at most `max_chars`: at commas first, then at spaces, and a run of letters longer than
    that (no boundary left to respect) is cut every `max_chars` characters."""
    if len(sentence) <= max_chars:
        return [sentence]
    if not separators:
        return [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars)]
    pieces = []
    for part in _pack(sentence.split(separators[0]), separators[0], max_chars):
        pieces.extend(_split_long(part, max_chars, separators[1:]))
    return pieces


def _pack(parts: list[str], separator: str, max_chars: int) -> list[str]:
    """Join consecutive parts with `separator` as long as the result stays within `max_chars`."""
    out, current = [], ""
    for part in parts:
        candidate = f"{current}{separator}{part}" if current else part
        if current and len(candidate) > max_chars:
            out.append(current)
            current = part
        else:
            current = candidate
    return out + [current] if current else out
