"""Written English → the words a reader says, for what espeak-ng reads wrongly or pauses on.

espeak-ng already reads numbers, ordinals, percentages and most symbols. What it gets wrong, and so
what this module rewrites (English only; other languages pass through unchanged):

- an abbreviation's period ("Dr. Smith", "U.S. law", "J. K. Rowling"): espeak says "doctor" but
  phonemizer keeps the ".", which the model has only ever seen at the end of a sentence, so it pauses
  or stops there;
- currency ("$3.50" reads "dollar three point five zero"): "3 dollars 50 cents";
- clock times ("3:30" keeps the ":" as a pause): "3 30"; "3:00" is "3 o'clock", "3:05" "3 oh 5";
  "10:30am" and "10pm" get their space ("30am" is one unknown word);
- decades ("1990s" reads "nineteen hundred ninety z"): "19 nineties";
- dates ("12/25/2024" reads "twelve slash twenty-five slash ..."): "December 25th 2024"; month/day/year
  as in the US unless the first number cannot be a month ("25/12/2024"), and ISO "2024-12-25";
  "Jan. 5" → "January 5";
- fractions ("3/4" reads "three slash four"): "3 quarters", "1 half";
- units after a number ("10km" reads "ten K M"): "10 kilometers", "1 kilogram", "60 mph" → "60 miles
  per hour", "20°C" → "20 degrees Celsius";
- "#1": "number 1";
- decimals and versions ("9.5", "2.0.1", "10.5%"): phonemizer cuts a sentence in two at such a "." when
  the sentence also ends with one (the words after it were lost): "9 point 5", "2 point 0 point 1",
  "10 point 5 percent" (the digits after a decimal point one by one: "3 point 1 4"); "25.12.2024" is a
  date, day first;
- web and e-mail addresses ("john.doe@example.com" kept a full stop inside a word,
  "https://example.com/a?q=1" read "h t t p s slash slash ..."): "john dot doe at example dot com",
  "example dot com slash a question mark q equals 1" (no "https://" or "www.").

In every language: Markdown and chat markup is dropped ("**bold**", "_italic_", "`code`", "# " headings,
"- " bullets, "[text](link)" → its text; espeak said "asterisk asterisk ..."), and so are emoji and other
pictographs (espeak reads their names: "grinning cat face"); "..." is the ellipsis "…" (a pause, not
three full stops); control characters (NUL, bell, escape, line breaks, ...) become spaces: espeak-ng
stops reading at a NUL. `period_is_abbreviation` tells the sentence splitter (split.py) which periods
this module writes out, so that "Jan. 5" stays one sentence.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miz",
    "dr": "doctor",
    "prof": "professor",
    "rev": "reverend",
    "mt": "mount",
    "ft": "fort",
    "jr": "junior",
    "sr": "senior",
    "vs": "versus",
    "etc": "et cetera",
    "approx": "approximately",
    "dept": "department",
    "fig": "figure",
    "vol": "volume",
    "inc": "incorporated",
    "ltd": "limited",
    "corp": "corporation",
    "ave": "avenue",
    "blvd": "boulevard",
    "rd": "road",
}
_ENDS_SENTENCES = frozenset({"etc", "ave", "blvd", "rd"})  # rarely before a name, unlike "Dr." or "Mt."
_ABBREVIATION = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.(?=\s|$)", re.IGNORECASE)
_SAINT_OR_STREET = re.compile(r"\bSt\.(?=\s|$)(\s+(?=[A-Z]))?")
_NUMBER_SIGN = re.compile(r"\bNo\.(?=\s*\d)", re.IGNORECASE)
_LATIN = {
    "e.g.": "for example",
    "i.e.": "that is",
    "a.k.a.": "also known as",
    "a.m.": "AM",
    "p.m.": "PM",
    "Ph.D.": "PhD",
}
_DOTTED = re.compile(r"(?<!\w)(" + "|".join(re.escape(k) for k in _LATIN) + r")(?!\w)", re.IGNORECASE)
_SPELLED = re.compile(r"(?<![\w.])((?:[A-Za-z]\.){2,})")  # "U.S.": espeak says the letters of "US"
_INITIAL = re.compile(r"\b([A-Z])\.(?=\s+[A-Z])")  # "J. K. Rowling"

_LATIN_LOWER = {written.lower(): said for written, said in _LATIN.items()}

# name, plural, name of the hundredth, its plural
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
}
_SCALE = r"(?:\s?(thousand|million|billion|trillion|[kKmMbB]n?)\b)?"
_MONEY = re.compile(r"([$€£¥])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?" + _SCALE)
_SCALE_LETTERS = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion"}

_CLOCK = re.compile(r"(?<![:\d])(\d{1,2}):(\d{2})\b(?!:)")
_MERIDIEM = re.compile(r"(?<=\d)([ap]m)\b", re.IGNORECASE)  # "10:30am", "9pm": espeak needs the space

_MONTHS = "January February March April May June July August September October November December".split()
_MONTH_ABBREVIATIONS = ("Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sept", "Sep", "Oct", "Nov", "Dec")
_MONTH_ABBREVIATION = re.compile(r"\b(" + "|".join(_MONTH_ABBREVIATIONS) + r")\.(?=\s*\d)")
_DOTTED_WORD = re.compile(r"(?:\w\.)+\w")  # "e.g", "U.S", "p.m" (seen without their last period)
_SLASH_DATE = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\d/])")
_ISO_DATE = re.compile(r"(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d-])")
_FRACTION = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])")
_FRACTION_NAMES = {
    2: ("half", "halves"),
    3: ("third", "thirds"),
    4: ("quarter", "quarters"),
    5: ("fifth", "fifths"),
    6: ("sixth", "sixths"),
    7: ("seventh", "sevenths"),
    8: ("eighth", "eighths"),
    9: ("ninth", "ninths"),
    10: ("tenth", "tenths"),
}
_UNITS = {  # written after a number → (one, many)
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"),
    "ml": ("milliliter", "milliliters"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
}
_UNIT = re.compile(
    r"(?<![\w.])(-?\d+(?:\.\d+)?)\s?(" + "|".join(re.escape(u) for u in _UNITS) + r")(?![\w/])"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's category Cc: C0, DEL and C1
_HASH_NUMBER = re.compile(r"#(?=\d)")
_TENS = "- tens twenties thirties forties fifties sixties seventies eighties nineties".split()
_DECADE = re.compile(r"\b(\d\d)?(\d)0'?s\b")
# "0.5", ".5", "1,000.25", "10.5%", "2.0.1", "v2.0": not inside a word, not followed by another ".digit"
_DECIMAL = re.compile(r"(?<![\w.])([vV](?=\d))?(\d{1,3}(?:,\d{3})+|\d+)?((?:\.\d+)+)(%?)(?!\.\d)")
_DOTTED_DATE = re.compile(r"(?<![\w.])(\d{1,2})\.(\d{1,2})\.(\d{4})(?!\w|\.\d)")  # "25.12.2024"

# Addresses: the end is never a sentence's mark ("Go to www.example.com.", "(see https://x.org/a)")
_ADDRESS_END = r"[^\s<>\"'()\[\]{}.,;:!?]"
_URL = re.compile(
    r"(?:\b(?:https?|ftp)://|\bmailto:|(?<![\w.@])www\.)[^\s<>\"'()\[\]{}]*" + _ADDRESS_END, re.I
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w+-]+(?:\.[\w+-]+)*@[\w-]+(?:\.[\w-]+)+")
_TOP_LEVEL_DOMAINS = "com|org|net|edu|gov|io|ai|dev|app|co|uk|info"
_DOMAIN = re.compile(  # "example.com", "docs.python.org/3": a bare address, by its top-level domain
    r"(?<![\w@./-])(?:[a-z0-9][a-z0-9-]*\.)+(?:" + _TOP_LEVEL_DOMAINS + r")"
    r"(?:/(?:[^\s<>\"'()\[\]{}]*" + _ADDRESS_END + r")?)?(?![\w@-])",
    re.I,
)
_SCHEME = re.compile(r"^(?:(?:https?|ftp)://|mailto:)?(?:www\.)?", re.I)
_SAID_IN_ADDRESS = {
    ".": "dot",
    "@": "at",
    "/": "slash",
    ":": "colon",
    "?": "question mark",
    "=": "equals",
    "&": "and",
    "-": "dash",
    "_": "underscore",
    "#": "hash",
    "+": "plus",
    "%": "percent",
    "~": "tilde",
}
_ADDRESS_SYMBOL = re.compile("([" + re.escape("".join(_SAID_IN_ADDRESS)) + "])")

# Markdown and chat markup, dropped in every language (lines still apart: before the control characters)
_CODE_FENCE = re.compile(r"\n?^[ \t]*(?:```|~~~)[\w+-]*[ \t]*$", re.M)  # with its line break
# a line's "# " heading mark and "- " bullet (split.py also starts a sentence at them)
HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(?=\S)", re.M)
BULLET = re.compile(r"^[ \t]*[-*+•][ \t]+(?=\S)", re.M)
_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\s]*\)")  # "[the docs](https://...)", "![a cat](cat.png)"
_EMPHASIS = re.compile(  # "**bold**", "*it*", "__bold__", "_it_", "~~struck~~"; not "snake_case", "2*3*4"
    r"(?<![\w*~])(\*{1,3}|~~)(?=[^\s*~])(.+?)(?<=[^\s*~])\1(?![\w*~])"
    r"|(?<![\w_])(_{1,3})(?=[^\s_])(.+?)(?<=[^\s_])\3(?![\w_])"
)
# Emoji and pictographs (with their joiners, skin tones, variation selectors and flag tags): espeak-ng reads
# each one's name ("pizza", "grinning cat face"), which is not what a reader says
_PICTOGRAPH = re.compile(
    "(?:[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u231a\u231b\u23e9-\u23fa]"
    "[\ufe0e\ufe0f\u200d\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f]*)+|[\ufe0e\ufe0f\u20e3]"
)
_ELLIPSIS = re.compile(r"\.(?:[ \t]?\.){2,}")  # "...", ". . .": one "…", as typed by a word processor


def period_is_abbreviation(word: str, after: str) -> bool:
    """Whether the period after `word` is one `normalize` writes out rather than a sentence's end
    (split.py asks, so that "Jan. 5" or "Dr. Smith" is not split into two utterances).

    Args:
        word: the word before the period, without it ("Dr", "Jan", "U.S", "J").
        after: the text after the period.
    """
    if word.lower() in _ABBREVIATIONS:  # "pears, etc. Then we left": a capital after these starts one
        return not (word.lower() in _ENDS_SENTENCES and re.match(r"\s+[A-Z]", after))
    if word.lower() == "no" or word in _MONTH_ABBREVIATIONS:  # "No. 5", "Jan. 5"; not "I met Jan. Then"
        return bool(re.match(r"\s*\d", after))
    is_initial = len(word) == 1 and word.isalpha()  # "J. K. Rowling"
    return word == "St" or is_initial or bool(_DOTTED_WORD.fullmatch(word))


def normalize(text: str, language: str = "en-us") -> str:
    """The text as it is said: abbreviations, currency, clock times, decades, decimals and addresses
    written out in words (whole numbers stay digits: espeak reads them). Only for English (`language`
    "en" or "en-*", in any case); in every language, markup and pictographs are dropped (`without_markup`)
    and control characters become spaces (`without_control_characters`)."""
    text = without_control_characters(without_markup(text))
    if not (language.lower() == "en" or language.lower().startswith("en-")):
        return text
    # addresses first: they hold dots, digits and "#" that are not what they seem
    text = _URL.sub(_address, text)
    text = _EMAIL.sub(_address, text)
    text = _DOMAIN.sub(_address, text)
    text = _DOTTED.sub(lambda m: _LATIN_LOWER[m.group(1).lower()] + _period_if_last(m), text)
    text = _SPELLED.sub(lambda m: m.group(1).replace(".", "").upper() + _period_if_last(m), text)
    text = _INITIAL.sub(r"\1", text)
    text = _SAINT_OR_STREET.sub(lambda m: "Saint " if m.group(1) else "Street" + _period_if_last(m), text)
    text = _NUMBER_SIGN.sub(lambda m: "Number" if m.group(0)[0] == "N" else "number", text)
    text = _ABBREVIATION.sub(_abbreviation, text)
    text = _MONTH_ABBREVIATION.sub(lambda m: _month_named(m.group(1)), text)
    text = _MONEY.sub(_money, text)
    text = _ISO_DATE.sub(lambda m: _date(m.group(2), m.group(3), m.group(1)) or m.group(0), text)
    text = _SLASH_DATE.sub(_slash_date, text)
    text = _FRACTION.sub(_fraction, text)
    text = _UNIT.sub(_unit, text)
    text = _DOTTED_DATE.sub(lambda m: _date(m.group(2), m.group(1), m.group(3)) or m.group(0), text)
    text = _DECIMAL.sub(_decimal, text)  # after currency and units, which keep "1.5" as they found it
    text = _HASH_NUMBER.sub("number ", text)
    text = _MERIDIEM.sub(r" \1", text)
    text = _CLOCK.sub(_clock, text)
    return _DECADE.sub(_decade, text)


def without_markup(text: str) -> str:
    """The text without Markdown and chat markup (emphasis, inline code and code fences, "#" headings,
    "- " bullets, links written as their text), emoji and pictographs, and with "..." as "…"; the same in
    every language. Line breaks are kept."""
    text = _CODE_FENCE.sub("", text)
    text = _LINK.sub(r"\1", text).replace("`", "")
    text = BULLET.sub("", HEADING.sub("", text))
    for _ in range(3):  # "***both***", "**bold _and italic_**": nested markup, one layer a pass
        text, found = _EMPHASIS.subn(lambda m: m.group(2) or m.group(4), text)
        if not found:
            break
    text = _ELLIPSIS.sub("…", text)
    if not _PICTOGRAPH.search(text):
        return text
    text = _PICTOGRAPH.sub(" ", text)  # "great🍕pizza": the words stay apart
    text = re.sub(r"[ \t]+(?=[.,!?;:…)\]]|$)", "", re.sub(r"[ \t]{2,}", " ", text), flags=re.M)
    return re.sub(r"^[ \t]+", "", text, flags=re.M)


def without_control_characters(text: str) -> str:
    """The text with each control character (line breaks, tabs, NUL, bell, escape, ...) made a space:
    espeak-ng stops reading at a NUL, so "Hello\\x00world" would be said "Hello"."""
    return _CONTROL.sub(" ", text)


def _period_if_last(match: re.Match[str]) -> str:
    """The abbreviation's period, kept where it also ends the text (and so the sentence)."""
    return "." if not match.string[match.end() :].strip() else ""


def _abbreviation(match: re.Match[str]) -> str:
    written = match.group(1)
    said = _ABBREVIATIONS[written.lower()]
    said = said.capitalize() if written[0].isupper() else said
    # "pears, etc. Then we left", "on Park Ave. The": a capital after these starts the next sentence
    ends = not period_is_abbreviation(written, match.string[match.end() :])
    return said + ("." if ends else _period_if_last(match))


def _money(match: re.Match[str]) -> str:
    one, many, cent, cents = _CURRENCIES[match.group(1)]
    whole, fraction, scale = match.group(2), match.group(3), match.group(4)
    if scale:  # "$1.5 million" → "1.5 million dollars"
        scale = _SCALE_LETTERS.get(scale.lower(), scale)
        amount = whole + (f".{fraction}" if fraction else "")
        return f"{amount} {scale} {many}"
    units = f"{whole} {one if whole == '1' else many}"
    if not fraction:
        return units
    if len(fraction) != 2:  # "$3.5" is not a price in cents: read the number
        return f"{whole}.{fraction} {many}"
    hundredths = int(fraction)
    if hundredths == 0:
        return units
    in_cents = f"{hundredths} {cent if hundredths == 1 else cents}"
    return in_cents if whole.strip("0,") == "" else f"{units} {in_cents}"


def _clock(match: re.Match[str]) -> str:
    hours, minutes = match.group(1), match.group(2)
    if int(minutes) >= 60:
        return match.group(0)
    if minutes == "00":
        return f"{hours} o'clock"
    return f"{hours} oh {minutes[1]}" if minutes[0] == "0" else f"{hours} {minutes}"


def _month_named(abbreviation: str) -> str:
    return next(month for month in _MONTHS if month.startswith(abbreviation[:3]))


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _date(month: str, day: str, year: str) -> str | None:
    """The date as it is said ("December 25th 2024"), or None where month and day are not a calendar's."""
    m, d = int(month), int(day)
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    return f"{_MONTHS[m - 1]} {_ordinal(d)} {year}"


def _slash_date(match: re.Match[str]) -> str:
    first, second, year = match.groups()
    said = _date(first, second, year) or _date(second, first, year)  # 25/12/2024: day first
    return said or match.group(0)


def _fraction(match: re.Match[str]) -> str:
    numerator, denominator = int(match.group(1)), int(match.group(2))
    if match.group(0) == "24/7":
        return "24 7"
    if not (0 < numerator < denominator and denominator in _FRACTION_NAMES):
        return match.group(0)  # "9/11", "50/50": not a proper fraction; espeak reads the numbers
    one, many = _FRACTION_NAMES[denominator]
    return f"{numerator} {one if numerator == 1 else many}"


def _unit(match: re.Match[str]) -> str:
    amount, unit = match.group(1), match.group(2)
    one, many = _UNITS[unit]
    return f"{amount} {one if amount in ('1', '-1') else many}"


def _decimal(match: re.Match[str]) -> str:
    version, whole, parts, percent = match.groups()
    numbers = parts[1:].split(".")
    if len(numbers) == 1 and not version:  # "3.14" → "3 point 1 4": digits after the point one by one
        numbers = [" ".join(numbers[0])]
    said = " point ".join([whole or "", *numbers]).strip()
    return ("version " if version else "") + said + (" percent" if percent else "")


def _address(match: re.Match[str]) -> str:
    """ "https://www.example.com/a?q=1" → "example dot com slash a question mark q equals 1"."""
    address = _SCHEME.sub("", match.group(0)).rstrip("/")
    pieces = (piece.strip() for piece in _ADDRESS_SYMBOL.split(address))
    return " ".join(_SAID_IN_ADDRESS.get(piece, piece) for piece in pieces if piece)


def _decade(match: re.Match[str]) -> str:
    century, tens = match.group(1), int(match.group(2))
    if tens == 0:  # "1800s" → "18 hundreds", "2000s" → "2 thousands"; "00s" alone is no decade
        if not century:
            return match.group(0)
        return f"{int(century) // 10} thousands" if century.endswith("0") else f"{century} hundreds"
    return f"{century} {_TENS[tens]}" if century else _TENS[tens]
