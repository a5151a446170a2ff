"""Praat TextGrid files: the timed word and phone tiers that forced aligners write.

The Montreal Forced Aligner, praatio, Gentle's converters and most corpora with alignments write
TextGrids, in Praat's long ("ooTextFile") or short format. Both are the same sequence of values, the long
one with labels: with the labels and the `[n]` item numbers dropped, what remains is the short format
(`"IntervalTier" name xmin xmax size` then `xmin xmax text` per interval), so one reader parses both.
Point tiers (`"TextTier"`) are skipped. The built-in corpus writes its festival timings in the long format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from valle.errors import ConfigError
from valle.utils.io import atomic_write_text, read_utf8


@dataclass(frozen=True)
class Interval:
    start: float  # seconds
    end: float
    text: str


# A quoted string ("" escapes a quote), a number, or one of Praat's flags; `[12]` item numbers are dropped.
_TOKEN = re.compile(r'"((?:[^"]|"")*)"|(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|<exists>|<absent>')


def read_textgrid(path: str | Path) -> dict[str, list[Interval]]:
    """The interval tiers of a TextGrid file, by tier name (e.g. "words", "phones").

    Raises:
        ConfigError: the file is not a TextGrid (names the file and what was expected).
    """
    path = Path(path)
    data = path.read_bytes()
    # Praat writes UTF-16 (with a byte-order mark) when a label is not ASCII
    raw = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else read_utf8(path)
    text = re.sub(r"\[\s*\d+\s*\]", " ", raw)
    tokens: list[str | float] = []
    for match in _TOKEN.finditer(text):
        quoted, number = match.group(1), match.group(2)
        if quoted is not None:
            tokens.append(quoted.replace('""', '"'))
        elif number is not None:
            tokens.append(float(number))
    try:
        return _tiers(tokens)
    except (IndexError, TypeError, ValueError) as error:
        raise ConfigError(
            f"{path}: not a readable Praat TextGrid ({error}); write it with Praat, praatio or the "
            "Montreal Forced Aligner (long or short text format)"
        ) from None


# Praat writes "ooTextFile" for both formats; p2fa and older praatio mark the short one "ooTextFile short"
_FILE_TYPES = ("ooTextFile", "ooTextFile short")


def _tiers(tokens: list[str | float]) -> dict[str, list[Interval]]:
    if tokens[0] not in _FILE_TYPES or tokens[1] != "TextGrid":
        raise ValueError('it does not start with File type = "ooTextFile", Object class = "TextGrid"')
    at = 5  # xmin, xmax, then the tier count
    count = int(_number(tokens[4]))
    tiers: dict[str, list[Interval]] = {}
    for _ in range(count):
        kind, name, size = tokens[at], str(tokens[at + 1]), int(_number(tokens[at + 4]))
        at += 5
        width = 3 if kind == "IntervalTier" else 2
        if kind == "IntervalTier":
            tiers[name] = [
                Interval(_number(tokens[i]), _number(tokens[i + 1]), str(tokens[i + 2]))
                for i in range(at, at + 3 * size, 3)
            ]
        at += width * size
    return tiers


def _number(token: str | float) -> float:
    if isinstance(token, str):
        raise ValueError(f"expected a number, found {token!r}")
    return token


def write_textgrid(path: str | Path, tiers: Mapping[str, Sequence[Interval]], end: float) -> None:
    """Write interval tiers as a long-format TextGrid (atomically), gaps filled with empty intervals as
    Praat expects."""
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {end:.6f}"]
    lines += ["tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for t, (name, intervals) in enumerate(tiers.items(), start=1):
        filled = _filled(intervals, end)
        lines += [f"    item [{t}]:", '        class = "IntervalTier"', f'        name = "{_quote(name)}"']
        lines += ["        xmin = 0", f"        xmax = {end:.6f}", f"        intervals: size = {len(filled)}"]
        for i, interval in enumerate(filled, start=1):
            lines += [
                f"        intervals [{i}]:",
                f"            xmin = {interval.start:.6f}",
                f"            xmax = {interval.end:.6f}",
                f'            text = "{_quote(interval.text)}"',
            ]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def _filled(intervals: Sequence[Interval], end: float) -> list[Interval]:
    out, at = [], 0.0
    for interval in intervals:
        if interval.start > at + 1e-9:
            out.append(Interval(at, interval.start, ""))
        out.append(interval)
        at = interval.end
    if end > at + 1e-9:
        out.append(Interval(at, end, ""))
    return out


def _quote(text: str) -> str:
    return text.replace('"', '""')
