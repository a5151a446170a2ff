"""TextGrids as aligners write them: long and short format, UTF-16, and files that are not TextGrids."""

from __future__ import annotations

import pytest

from valle.errors import ConfigError
from valle.utils.textgrid import Interval, read_textgrid, write_textgrid

# What praatio / the Montreal Forced Aligner write (long format), trimmed to two tiers.
LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 1.5
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.31
            text = ""
        intervals [2]:
            xmin = 0.31
            xmax = 0.9
            text = "say ""hi"""
        intervals [3]:
            xmin = 0.9
            xmax = 1.5
            text = "now"
    item [2]:
        class = "TextTier"
        name = "bells"
        xmin = 0
        xmax = 1.5
        points: size = 1
        points [1]:
            number = 0.5
            mark = "ding"
'''

# Praat's short text format: the same values without labels.
SHORT = """File type = "ooTextFile"
Object class = "TextGrid"

0
1.5
<exists>
1
"IntervalTier"
"phones"
0
1.5
2
0
0.7
"s"
0.7
1.5
"eɪ"
"""


def test_long_format_with_escaped_quotes_and_a_point_tier(tmp_path):
    path = tmp_path / "a.TextGrid"
    path.write_text(LONG)
    tiers = read_textgrid(path)
    assert list(tiers) == ["words"]  # the point tier is skipped
    assert tiers["words"] == [
        Interval(0, 0.31, ""),
        Interval(0.31, 0.9, 'say "hi"'),
        Interval(0.9, 1.5, "now"),
    ]


def test_short_format_in_utf16_as_praat_saves_non_ascii_labels(tmp_path):
    path = tmp_path / "b.TextGrid"
    path.write_bytes(SHORT.encode("utf-16"))
    assert read_textgrid(path) == {"phones": [Interval(0, 0.7, "s"), Interval(0.7, 1.5, "eɪ")]}


def test_short_format_with_the_header_p2fa_and_older_praatio_write(tmp_path):
    path = tmp_path / "p2fa.TextGrid"
    path.write_text(
        SHORT.replace('"ooTextFile"', '"ooTextFile short"').replace('Object class = "TextGrid"', '"TextGrid"')
    )
    assert read_textgrid(path) == {"phones": [Interval(0, 0.7, "s"), Interval(0.7, 1.5, "eɪ")]}


def test_written_files_read_back_with_gaps_filled(tmp_path):
    path = tmp_path / "c.TextGrid"
    words = [Interval(0.2, 0.5, "hello"), Interval(0.6, 1.0, 'the "world"')]
    write_textgrid(path, {"words": words, "phones": [Interval(0.2, 0.35, "h")]}, end=1.2)
    tiers = read_textgrid(path)
    assert [w for w in tiers["words"] if w.text] == words
    assert tiers["words"][0] == Interval(0, 0.2, "") and tiers["words"][-1] == Interval(1.0, 1.2, "")
    assert [p.text for p in tiers["phones"]] == ["", "h", ""]


@pytest.mark.parametrize("content", ["not a textgrid at all", LONG.replace("size = 3", "size = 9")])
def test_a_file_that_is_not_a_readable_textgrid_is_named_in_one_line(tmp_path, content):
    path = tmp_path / "bad.TextGrid"
    path.write_text(content)
    with pytest.raises(ConfigError, match="bad.TextGrid: not a readable Praat TextGrid"):
        read_textgrid(path)
