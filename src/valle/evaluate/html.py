"""A report as one HTML page to listen to: audio players beside their prompts, tables and figures.

The page is self-contained (inline style, no script, nothing fetched from the network) and links
its wavs and PNGs by paths relative to itself, so the folder it sits in can be copied, zipped or
served as it is, and opened straight from disk (`file://`). Every player is
`<audio controls preload="auto">`: the browser loads each clip when the page opens, so a missing or
unreadable wav shows at once (tests/evaluate/test_html.py checks that in headless Chromium).

    page = render_page("valle demo report", [
        Section("Scores", table_html(markdown_table)),
        Section("Listen", listening_html([ClipRow("LJ001", "The text.", [Clip("output", "out/LJ001.wav")])])),
        Section("Learning curve", figure_html("plots/learning_curve.png", "learning curve")),
    ])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from urllib.parse import quote

from valle.utils.io import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { min-width: 12em; max-width: 22em; }
audio { width: 14em; display: block; }
img { max-width: 100%; }
figure { margin: 1em 0; }
figcaption, .note { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Clip:
    """One recording to play: its column label and its path relative to the page."""

    label: str
    path: str


@dataclass(frozen=True)
class ClipRow:
    """One row of players: a title (an utterance id, a snapshot), its text, its clips and an optional image
    (a spectrogram of the same clips) shown under the players."""

    title: str
    text: str
    clips: Sequence[Clip]
    image: str | None = None


@dataclass(frozen=True)
class Section:
    """A heading and its body (HTML made by the functions below, or escaped text)."""

    heading: str
    body: str
    notes: Sequence[str] = field(default_factory=tuple)  # plain-text paragraphs shown above the body


def link(path: str | Path) -> str:
    """A relative path as an attribute value: every segment percent-encoded, '/' kept."""
    return escape(quote(Path(path).as_posix()), quote=True)


def audio_html(path: str | Path) -> str:
    return f'<audio controls preload="auto" src="{link(path)}"></audio>'


def figure_html(path: str | Path, caption: str) -> str:
    caption = escape(caption)
    return f'<figure><img src="{link(path)}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def listening_html(rows: Sequence[ClipRow], first_column: str = "utterance") -> str:
    """A table of players: one row per `ClipRow` (its title under `first_column`), one column per clip
    label (in order of first appearance)."""
    labels = list(dict.fromkeys(clip.label for row in rows for clip in row.clips))
    lines = [
        "<table>",
        f"<tr><th>{escape(first_column)}</th>"
        + "".join(f"<th>{escape(label)}</th>" for label in labels)
        + "</tr>",
    ]
    for row in rows:
        clips = {clip.label: clip.path for clip in row.clips}
        cells = "".join(
            f"<td>{audio_html(clips[label])}</td>" if label in clips else "<td></td>" for label in labels
        )
        lines.append(
            f'<tr><td class="text"><b>{escape(row.title)}</b><br>{escape(row.text)}</td>{cells}</tr>'
        )
        if row.image:
            lines.append(
                f'<tr><td colspan="{len(labels) + 1}">{figure_html(row.image, f"{row.title}: spectrograms")}'
                "</td></tr>"
            )
    lines.append("</table>")
    return "\n".join(lines)


def table_html(markdown: str) -> str:
    """A Markdown pipe table (header, `|---|---:|` alignment row, body) as an HTML table.

    Cells are escaped text; a column aligned right in Markdown (`---:`) is set as numbers.

    Raises:
        ValueError: `markdown` has no header and alignment rows.
    """
    lines = [line.strip() for line in markdown.strip().splitlines() if line.strip().startswith("|")]
    if len(lines) < 2 or not set(lines[1]) <= set("|-: "):
        raise ValueError(f"not a Markdown table (a header row, then |---| alignment): {markdown[:80]!r}")
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    numeric = [c.endswith(":") and not c.startswith(":") for c in cells(lines[1])]
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in cells(lines[0])) + "</tr>"]
    for line in lines[2:]:
        row = cells(line)
        out.append(
            "<tr>"
            + "".join(
                f'<td class="number">{escape(c)}</td>'
                if i < len(numeric) and numeric[i]
                else f"<td>{escape(c)}</td>"
                for i, c in enumerate(row)
            )
            + "</tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def render_page(title: str, sections: Sequence[Section], intro: Sequence[str] = ()) -> str:
    """The whole page: a title, plain-text intro paragraphs, then each section."""
    body = [f"<h1>{escape(title)}</h1>", *(f"<p>{escape(p)}</p>" for p in intro)]
    for section in sections:
        body += [
            f"<h2>{escape(section.heading)}</h2>",
            *(f'<p class="note">{escape(n)}</p>' for n in section.notes),
            section.body,
        ]
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_page(path: str | Path, title: str, sections: Sequence[Section], intro: Sequence[str] = ()) -> Path:
    """`render_page` written to `path` (atomically); links inside are relative to its folder."""
    atomic_write_text(path, render_page(title, sections, intro))
    return Path(path)
