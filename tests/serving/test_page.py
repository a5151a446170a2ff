"""The web page in a real browser (headless Chromium): it loads, speaks with a built-in voice, and the
result lands in the history as playable audio."""

from __future__ import annotations

import time

from tests.helpers.browser import browser_at
from tests.serving.conftest import VOICE, Server

RESULT_AUDIO = """
const li = document.querySelector('#history li.result');
const audio = li && li.querySelector('audio.result-audio');
const link = li && li.querySelector('a.result-download');
return li && {
  state: li.dataset.state, times: li.querySelector('.result-times').textContent,
  ready: audio && audio.readyState, duration: audio && audio.duration,
  error: audio && audio.error && audio.error.code,
  href: link && link.href, download: link && link.download,
  error_box: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
  busy: document.body.dataset.busy, last: window.valleLastResult || null,
};
"""


def wait_for(driver, script: str, timeout: float = 60.0):
    """The first truthy value of `script` (JavaScript returning a value), polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for: {script.strip()}")


def test_the_page_speaks_with_a_built_in_voice_into_playable_audio(server: Server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with browser_at(server.url + "/") as driver:
        wait_for(driver, "return document.getElementById('status').textContent === 'Ready.'")
        error = driver.find_element(By.ID, "error")
        assert not error.is_displayed(), error.text
        voices = [o.get_attribute("value") for o in Select(driver.find_element(By.ID, "voice")).options]
        assert voices == [VOICE, "LJ049-0110"]

        driver.find_element(By.ID, "speak").click()  # no text yet: the page says so
        assert wait_for(driver, "return !document.getElementById('error').hidden")
        assert "Type some text" in error.text

        driver.find_element(By.ID, "text").send_keys("The lazy dog.")
        Select(driver.find_element(By.ID, "voice")).select_by_value(VOICE)
        driver.find_element(By.ID, "seed").send_keys("7")
        driver.find_element(By.ID, "speak").click()
        wait_for(driver, "return document.querySelector('#history li.result:not([data-state=pending])')")
        result = wait_for(driver, f"const r = (() => {{{RESULT_AUDIO}}})(); return r && r.ready >= 4 && r")
        assert result["state"] == "done" and result["error_box"] is None, result
        assert result["error"] is None and result["duration"] > 0
        samples = result["last"]["samples"]
        assert samples > 0 and abs(result["duration"] - samples / 24000) < 0.01, result
        assert result["href"].startswith("blob:") and result["download"].endswith(".wav")
        assert result["busy"] == "false"
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []

        speed = driver.find_element(By.ID, "speed")  # this model keeps its own pace: the server refuses
        speed.clear()
        speed.send_keys("1.5")
        driver.find_element(By.ID, "speak").click()
        wait_for(driver, "return document.querySelectorAll('#history li.result[data-state=error]').length")
        assert "speed=1.5" in error.text
        assert "speed=1.5" in driver.find_element(By.CSS_SELECTOR, "li.result").text
        assert driver.find_element(By.ID, "status").text == "Failed."
