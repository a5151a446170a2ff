"""report.html's building blocks, and a page of real recordings opened in headless Chromium."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import real_speech_dir
from tests.helpers.browser import assert_page_loads, page_media
from valle.evaluate.html import (
    Clip,
    ClipRow,
    Section,
    figure_html,
    listening_html,
    render_page,
    table_html,
    write_page,
)
from valle.plot import plot_spectrograms

TABLE = """| row | n | WER % | SIM (prompt) |
|---|---:|---:|---:|
| ground truth | 4 | 12.5 [3.0–20.0] | 0.812 |
| <model> | 4 | 80.0 | – |
"""


def test_markdown_table_becomes_an_html_table_with_escaped_cells_and_numeric_columns():
    html = table_html(TABLE + "\nA note under the table is not a row.\n")
    assert html.count("<tr>") == 3 and "<th>WER %</th>" in html and "note" not in html
    assert "<td>&lt;model&gt;</td>" in html  # text, never markup
    assert '<td class="number">12.5 [3.0–20.0]</td>' in html and "<td>ground truth</td>" in html
    with pytest.raises(ValueError, match="not a Markdown table"):
        table_html("just a paragraph")


def test_players_and_figures_link_relative_paths_percent_encoded():
    rows = [
        ClipRow(
            "a",
            "Say <this>.",
            [Clip("prompt", "samples/p 1.wav"), Clip("output", "samples/o.wav")],
            image="plots/a.png",
        ),
        ClipRow("b", "Only an output.", [Clip("output", "samples/b.wav")]),
    ]
    html = listening_html(rows)
    assert html.count('<audio controls preload="auto"') == 3 and 'src="samples/p%201.wav"' in html
    assert "<th>prompt</th><th>output</th>" in html and "Say &lt;this&gt;." in html
    assert "<td></td>" in html  # row b has no prompt: an empty cell keeps the columns aligned
    assert 'src="plots/a.png"' in figure_html("plots/a.png", "x") and 'src="plots/a.png"' in html
    page = render_page("t & t", [Section("Scores", table_html(TABLE), ["n = 4"])], ["intro"])
    assert page.startswith("<!doctype html>") and "<title>t &amp; t</title>" in page and "http" not in page


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory):
    """A report folder as the demo leaves it: wavs and a spectrogram PNG under it, the page linking them."""
    folder = tmp_path_factory.mktemp("report")
    wavs = sorted(real_speech_dir().glob("*.wav"))[:3]
    for wav in wavs:
        (folder / "samples").mkdir(exist_ok=True)
        shutil.copy(wav, folder / "samples" / wav.name)
    image = plot_spectrograms(
        {w.stem: folder / "samples" / w.name for w in wavs}, folder / "plots" / "spec.png"
    )
    rows = [
        ClipRow(
            w.stem,
            w.with_suffix(".txt").read_text().strip(),
            [Clip("ground truth", f"samples/{w.name}"), Clip("prompt", f"samples/{wavs[0].name}")],
            image=str(image.relative_to(folder)),
        )
        for w in wavs
    ]
    write_page(
        folder / "report.html",
        "fixture report",
        [Section("Scores", table_html(TABLE)), Section("Listen", listening_html(rows))],
    )
    return folder, wavs


def test_report_page_plays_every_clip_and_shows_every_image_in_headless_chromium(report_folder):
    folder, wavs = report_folder
    media = assert_page_loads(folder / "report.html")
    assert len(media["audio"]) == 2 * len(wavs) and len(media["images"]) == len(wavs)
    durations = {a["src"]: a["duration"] for a in media["audio"]}
    assert durations["samples/LJ049-0124.wav"] == pytest.approx(3.44, abs=0.05)  # the fixture's length


def test_the_browser_check_sees_a_missing_wav_and_a_missing_image(report_folder):
    folder, _ = report_folder
    write_page(
        folder / "broken.html",
        "broken",
        [
            Section(
                "Listen",
                listening_html(
                    [ClipRow("x", "gone", [Clip("output", "samples/missing.wav")], image="plots/missing.png")]
                ),
            )
        ],
    )
    media = page_media(folder / "broken.html")
    assert media["audio"][0]["error"] and media["images"][0]["width"] == 0
    with pytest.raises(AssertionError, match="players that did not load"):
        assert_page_loads(folder / "broken.html")


def test_a_clip_of_a_few_frames_still_gets_its_spectrogram(tmp_path):
    """An undertrained model may say one frame (320 samples): shorter than the spectrogram's window."""
    import torch

    from valle.audio import write_wav

    write_wav(tmp_path / "short.wav", torch.randn(320) * 0.1, 16000)
    write_wav(tmp_path / "long.wav", torch.randn(16000) * 0.1, 16000)
    image = plot_spectrograms(
        {"short": tmp_path / "short.wav", "long": tmp_path / "long.wav"}, tmp_path / "s.png"
    )
    assert image.is_file() and image.stat().st_size > 1000
