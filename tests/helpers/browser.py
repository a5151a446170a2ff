"""Open a local HTML page in headless Chromium (selenium) and report what its players and images loaded."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# Debian's names (apt-get install chromium chromium-driver; `make system-deps` installs both)
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = ("chromedriver",)

# Each <audio>: readyState (>= 1: its metadata, duration included, was read), duration, error code
# (null: none).
MEDIA_SCRIPT = """
return {
  audio: [...document.querySelectorAll('audio')].map(a => ({
    src: a.getAttribute('src'), ready: a.readyState, duration: a.duration, error: a.error && a.error.code})),
  images: [...document.querySelectorAll('img')].map(i => ({
    src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth})),
};
"""


def _which(names: tuple[str, ...]) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


def headless_chromium(*arguments: str):
    """A selenium driver for headless Chromium (with extra command-line `arguments`); skips the test (saying
    what is missing) without one."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install '.[test]')"
    )
    from selenium.webdriver.chrome.service import Service

    browser, driver = _which(CHROMIUM), _which(CHROMEDRIVER)
    if browser is None or driver is None:
        pytest.skip(
            "chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver, "
            "or make system-deps)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        *arguments,
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(driver))  # an explicit driver: no download


@contextmanager
def browser_at(url: str) -> Iterator[Any]:
    """Headless Chromium with `url` open (audio may play without a click, as a user's click would allow);
    quit on exit."""
    driver = headless_chromium("--autoplay-policy=no-user-gesture-required")
    try:
        driver.get(url)
        yield driver
    finally:
        driver.quit()


def page_media(page: Path, timeout: float = 30.0) -> dict[str, list[dict]]:
    """Open `page` (file://); wait until every player has its metadata or an error, and every image is done.

    Returns:
        {"audio": [{"src", "ready", "duration", "error"}], "images": [{"src", "complete", "width"}]}.
    """
    driver = headless_chromium()
    try:
        driver.get(Path(page).resolve().as_uri())
        deadline = time.monotonic() + timeout
        while True:
            media = driver.execute_script(MEDIA_SCRIPT)
            settled = all(a["ready"] >= 1 or a["error"] for a in media["audio"]) and all(
                i["complete"] for i in media["images"]
            )
            if settled or time.monotonic() > deadline:
                return media
            time.sleep(0.2)
    finally:
        driver.quit()


def assert_page_loads(page: Path) -> dict[str, list[dict]]:
    """Every player of `page` has a duration and no media error; every image has a width.

    Returns what loaded.
    """
    media = page_media(page)
    broken = [
        a for a in media["audio"] if a["error"] or a["ready"] < 1 or not a["duration"] or a["duration"] <= 0
    ]
    assert not broken, f"{page}: players that did not load: {broken}"
    blank = [i for i in media["images"] if not i["width"]]
    assert not blank, f"{page}: images that did not load: {blank}"
    return media
