"""The try-it page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium),
against the local API serving a small model trained here (tests/serving/conftest.py trained_model_dir):
upload two real bin photos (../shared/abid; synthetic JPEGs when absent), read the counts from the page and
compare them with the API's own answers, type an expected count and read the verdict, then a wrong key and
a text file show the API's messages. The screenshot goes to docs/page.png (README links it).

.ci/run installs chromium and chromium-driver with apt-get, so this runs in CI; without them it skips."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local_mode.local_serving import start_local_serving

ROOT = Path(__file__).resolve().parents[2]
SHARED_ABID = ROOT.parent / "shared" / "abid"
SCREENSHOT = ROOT / "docs" / "page.png"
API_KEY = "page-test-key"
WAIT_S = 90  # the first count loads the model and runs on 2 shared cores

pytestmark = pytest.mark.slow


def _browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium / chromedriver are not installed: apt-get install chromium chromium-driver (.ci/run does)")
    return chromium, driver


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    chromium, chromedriver = _browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1400", "--disable-gpu"):
        options.add_argument(argument)
    # Both paths given: Selenium Manager has nothing to look up or download.
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def serving(trained_model_dir: Path) -> Iterator[object]:
    with start_local_serving(trained_model_dir, port=0, api_key=API_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real bin photos, or two synthetic ones (training_code/synthetic_bins.py) when ../shared/abid is absent."""
    folder = tmp_path_factory.mktemp("photos")
    real = sorted((SHARED_ABID / "bin-images").glob("*.jpg"))[:2] if (SHARED_ABID / "bin-images").is_dir() else []
    if len(real) == 2:
        return [Path(shutil.copy(path, folder / path.name)) for path in real]
    from synthetic_bins import render_bin

    paths = []
    for index, count in enumerate((2, 4)):
        path = folder / f"synthetic-{index}.jpg"
        render_bin(seed=11, index=index, count=count).save(path, format="JPEG", quality=90)
        paths.append(path)
    return paths


def _api(serving: object, data: bytes, expected: int | None = None, key: str = API_KEY) -> requests.Response:
    url = f"{serving.api_url}/v1/count" + (f"?expected_count={expected}" if expected is not None else "")  # type: ignore[attr-defined]
    return requests.post(url, data=data, headers={"x-api-key": key, "Content-Type": "image/jpeg"}, timeout=120)


def _row(browser: object, name: str) -> object:
    """The newest row for the file `name`."""
    return _rows(browser, name)[-1]


def _wait_for(browser: object, condition: object) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S, poll_frequency=0.2).until(condition)


def _retype(field: object, text: str) -> None:
    """Select all, delete, type `text`, press Enter (one send_keys per chord: a modifier stays down until the call ends)."""
    from selenium.webdriver.common.keys import Keys

    field.send_keys(Keys.CONTROL, "a")  # type: ignore[attr-defined]
    field.send_keys(Keys.DELETE)  # type: ignore[attr-defined]
    field.send_keys(text, Keys.ENTER)  # type: ignore[attr-defined]


def _set_key(browser: object, key: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = browser.find_element(By.ID, "api-key")  # type: ignore[attr-defined]
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(key)


def _rows(browser: object, name: str) -> list:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, f'#results tbody tr[data-file="{name}"]')  # type: ignore[attr-defined]


def _upload(browser: object, *paths: Path) -> None:
    """Pick the files (as the file dialog would) and wait until the page has a new row for each."""
    from selenium.webdriver.common.by import By

    before = {p.name: len(_rows(browser, p.name)) for p in paths}
    browser.find_element(By.ID, "photos").send_keys("\n".join(str(p) for p in paths))  # type: ignore[attr-defined]
    _wait_for(browser, lambda b: all(len(_rows(b, name)) > n for name, n in before.items()))


def _outcome(browser: object, name: str) -> tuple[str, str] | None:
    """('count', n) or ('error', message) once the row for `name` has an answer, else None."""
    from selenium.webdriver.common.by import By

    cell = _row(browser, name).find_element(By.CSS_SELECTOR, ".count-cell")  # type: ignore[attr-defined]
    counts = cell.find_elements(By.CSS_SELECTOR, "[data-count]")
    if counts:
        return "count", counts[0].get_attribute("data-count")
    errors = cell.find_elements(By.CSS_SELECTOR, ".error")
    return ("error", errors[0].text) if errors else None


def test_count_and_verify_in_a_real_browser(driver: object, serving: object, photos: list[Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser = driver
    browser.get(f"{serving.api_url}/")  # type: ignore[attr-defined]
    assert "Inventory Monitor" in browser.title  # type: ignore[attr-defined]
    _set_key(browser, API_KEY)
    # The key stays in this tab's session storage only.
    assert browser.execute_script("return sessionStorage.getItem('invmon-api-key')") == API_KEY  # type: ignore[attr-defined]
    assert browser.execute_script("return localStorage.length") == 0  # type: ignore[attr-defined]
    # Keyboard: Tab from the key field reaches the photo picker.
    browser.find_element(By.ID, "api-key").send_keys(Keys.TAB)  # type: ignore[attr-defined]
    assert browser.switch_to.active_element.get_attribute("id") == "photos"  # type: ignore[attr-defined]

    # Two photos at once: each row shows the count the API gives for that photo.
    _upload(browser, *photos)
    for path in photos:
        outcome = _wait_for(browser, lambda b, name=path.name: _outcome(b, name))
        expected = _api(serving, path.read_bytes()).json()
        assert outcome == ("count", str(expected["count"])), (path.name, outcome, expected)
        row = _row(browser, path.name)
        assert f"{round(expected['confidence'] * 100)} % confident" in row.text  # type: ignore[attr-defined]
        assert len(row.find_elements(By.CSS_SELECTOR, ".bars .bar")) == len(expected["probabilities"])  # type: ignore[attr-defined]
        assert ("needs review" in row.text) == expected["needs_review"]  # type: ignore[attr-defined]
        thumb = row.find_element(By.CSS_SELECTOR, "img.thumb")  # type: ignore[attr-defined]
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", thumb)  # type: ignore[attr-defined]

    # Type the record's count for the first photo and press Enter (keyboard only): the verdict and P(match).
    first = photos[0]
    count = int(_outcome(browser, first.name)[1])  # type: ignore[index]
    expected_field = _row(browser, first.name).find_element(By.CSS_SELECTOR, "input.expected")  # type: ignore[attr-defined]
    label = browser.find_element(By.CSS_SELECTOR, f'label[for="{expected_field.get_attribute("id")}"]')  # type: ignore[attr-defined]
    assert label.text.strip() == "Expected count"
    expected_field.send_keys(str(count), Keys.ENTER)
    verdict = _wait_for(browser, lambda b: _row(b, first.name).find_elements(By.CSS_SELECTOR, ".verdict [data-verdict]"))[0]
    truth = _api(serving, first.read_bytes(), expected=count).json()["verification"]
    assert verdict.get_attribute("data-verdict") == truth["verdict"]
    assert f"P(match) {truth['p_match']:.2f}" in _row(browser, first.name).text  # type: ignore[attr-defined]

    # A count the model has no class for: review, with the API's reason.
    _retype(expected_field, "9")
    _wait_for(browser, lambda b: "cannot see" in _row(b, first.name).text)
    review = _row(browser, first.name).find_element(By.CSS_SELECTOR, ".verdict [data-verdict]")  # type: ignore[attr-defined]
    assert review.get_attribute("data-verdict") == "review"
    _retype(expected_field, str(count))  # back, for the screenshot
    _wait_for(browser, lambda b: "P(match)" in _row(b, first.name).text)

    # A wrong key: the row shows the API's own message.
    _set_key(browser, "wrong-key")
    second = photos[1]
    _upload(browser, second)
    message = _api(serving, second.read_bytes(), key="wrong-key").json()["error"]["message"]
    _wait_for(browser, lambda b: _outcome(b, second.name))
    assert _outcome(browser, second.name) == ("error", message) and "API key" in message

    # A text file: the API's "not an image" message.
    _set_key(browser, API_KEY)
    notes = photos[0].parent / "notes.txt"
    notes.write_text("bin 17: 3 items\n")
    _upload(browser, notes)
    _wait_for(browser, lambda b: _outcome(b, notes.name))
    not_an_image = _api(serving, notes.read_bytes()).json()["error"]
    assert not_an_image["code"] == "not_an_image"
    assert _outcome(browser, notes.name) == ("error", not_an_image["message"])
    assert _row(browser, notes.name).find_elements(By.CSS_SELECTOR, ".nopreview")  # type: ignore[attr-defined]

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))  # type: ignore[attr-defined]
    assert SCREENSHOT.stat().st_size > 10_000
