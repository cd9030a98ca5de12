"""The inspector page in a real headless browser: Debian's ``chromium`` and ``chromium-driver`` through Selenium.

Against a live server with a read key: the key is entered in the page, a query typed and submitted with Enter,
each hit shown highlighted (``<mark>``) inside its neighbour window, a document opened, a question asked and its
answer streamed with a citation that scrolls to its passage; a document carrying ``<script>`` and ``<img onerror>``
is shown as text and runs nothing. A missing browser is a failure, not a skip: CI installs it (``.ci/run``).
Set ``DEEPSEEK_RAG_SCREENSHOT=docs/inspector.png`` to rewrite the README's screenshot from this run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from deepseek_rag.serve import ServeSettings

from serve_helpers import running_server

API_KEY, READ_KEY = "browser-write-key", "browser-read-key"
HOSTILE = ('Clause 9 (hostile). <script>window.pwned = "script"</script> The tenant repairs the roof gutter. '
           '<img src=x onerror="window.pwned = \'img\'"> <b>bold?</b>')
DOCS = [
    {"id": "lease-2021.txt", "metadata": {"year": 2021}, "text": (
        "# Parties\nThis lease is made between Acme Properties (the landlord) and Globex Ltd (the tenant) for the "
        "office at 12 Harbour Street.\n\n# Term\nThe lease runs for five years from 1 March 2021. Either party may "
        "end it with ninety days written notice.\n\n# Repairs\nThe tenant repairs the roof and keeps the gutters "
        "clear. The landlord pays for the boiler and for structural repairs to the walls.\n\n# Rent\nRent is "
        "4,000 euros a month, due on the first day of each month, and rises with inflation every March.")},
    {"id": "nda.txt", "metadata": {"year": 2022}, "text": (
        "The receiving party keeps the information confidential for two years and uses it only to evaluate the "
        "proposed partnership. Information that is already public is not confidential.")},
    {"id": "hostile.html", "metadata": {"year": 2024}, "text": HOSTILE},
]


def browser_paths() -> tuple[str, str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("the inspector's browser test needs Chromium and its driver: apt-get install -y chromium "
                    "chromium-driver (.ci/run installs them)")
    return binary, driver


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    settings = ServeSettings(index=str(tmp_path_factory.mktemp("inspector") / "index"), model=str(tiny_model_dir),
                             api_key=API_KEY, read_key=READ_KEY, timeout_s=30)
    with running_server(settings) as url:
        httpx.post(f"{url}/v1/documents", json={"documents": DOCS}, headers={"Authorization": f"Bearer {API_KEY}"},
                   timeout=60).raise_for_status()
        yield url


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, seconds: float = 30):
    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def text_of(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).get_attribute("textContent")


def in_viewport(driver, element) -> bool:
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight;", element)


def test_the_inspector_in_a_real_browser(server, browser, tmp_path):
    driver = browser
    driver.get(server + "/")
    wait(driver, lambda d: "401" in text_of(d, "#index-info"))  # a read key is needed and not yet given
    assert driver.switch_to.active_element.get_attribute("id") == "query"  # the query box has the focus
    for control in driver.find_elements(By.CSS_SELECTOR, "input, select"):  # every control has a label
        assert driver.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']"), control

    key = driver.find_element(By.ID, "key")
    key.send_keys(READ_KEY, Keys.ENTER)
    wait(driver, lambda d: "3 documents" in text_of(d, "#index-info"))
    assert driver.execute_script("return sessionStorage.getItem('deepseek-rag-key')") == READ_KEY

    # ---- retrieve: typed, submitted with Enter; every hit highlighted inside its neighbour window
    Select(driver.find_element(By.ID, "mode")).select_by_value("sparse")
    top_k = driver.find_element(By.ID, "top-k")
    top_k.clear()
    top_k.send_keys("3")
    driver.find_element(By.ID, "query").send_keys("who repairs the roof", Keys.ENTER)
    wait(driver, lambda d: "hits" in text_of(d, "#search-status"))
    expected = httpx.post(f"{server}/v1/retrieve", json={"query": "who repairs the roof", "top_k": 3, "mode": "sparse"},
                          headers={"Authorization": f"Bearer {READ_KEY}"}).json()
    cards = driver.find_elements(By.CSS_SELECTOR, "#results > li.hit")
    assert len(cards) == len(expected["hits"]) == 3
    assert f"index_version {expected['index_version']}" in text_of(driver, "#search-status")
    texts = {d["id"]: d["text"] for d in DOCS}
    for card, hit in zip(cards, expected["hits"]):
        head = card.find_element(By.CSS_SELECTOR, ".hit-head").get_attribute("textContent")
        assert hit["doc_id"] in head and f"characters {hit['start']}–{hit['end']}" in head and "score" in head
        marked = card.find_element(By.CSS_SELECTOR, "p.context > mark").get_attribute("textContent")
        assert marked == hit["text"]
        context = card.find_element(By.CSS_SELECTOR, "p.context").get_attribute("textContent").strip("…")
        source = texts[hit["doc_id"]]
        assert context == source[max(0, hit["start"] - 300):hit["end"] + 300]  # the passage inside its window
    lease = next(c for c, h in zip(cards, expected["hits"]) if h["doc_id"] == "lease-2021.txt")
    assert "§ Repairs" in lease.get_attribute("textContent")

    # ---- hostile text is shown as text and runs nothing
    hostile = next(c for c, h in zip(cards, expected["hits"]) if h["doc_id"] == "hostile.html")
    shown = hostile.find_element(By.CSS_SELECTOR, "p.context").get_attribute("textContent")
    assert '<script>window.pwned = "script"</script>' in shown and "<img src=x onerror=" in shown
    assert driver.find_elements(By.CSS_SELECTOR, "#results script, #results img, #results b") == []
    assert driver.execute_script("return window.pwned") is None

    # ---- the document view: the whole text, the passage marked
    hostile.find_element(By.CSS_SELECTOR, "button.doc-link").send_keys(Keys.ENTER)  # keyboard, not a click
    wait(driver, lambda d: d.find_element(By.ID, "document-view").is_displayed())
    assert text_of(driver, "#document-text") == HOSTILE
    assert driver.find_elements(By.CSS_SELECTOR, "#document-view script, #document-view img") == []
    assert driver.switch_to.active_element.get_attribute("id") == "document-title"
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(driver, lambda d: not d.find_element(By.ID, "document-view").is_displayed())
    lease.find_element(By.CSS_SELECTOR, "button.doc-link").click()
    wait(driver, lambda d: "lease-2021.txt" in text_of(d, "#document-title"))
    lease_hit = next(h for h in expected["hits"] if h["doc_id"] == "lease-2021.txt")
    assert text_of(driver, "#document-mark") == lease_hit["text"]
    driver.find_element(By.ID, "document-close").click()

    # ---- ask: the answer streams in, then its citations link to their passages
    driver.execute_script("""window.__appends = 0;
        new MutationObserver((records) => { window.__appends += records.length; })
          .observe(document.getElementById('answer'), {childList: true});""")
    driver.find_element(By.ID, "question").send_keys("Who repairs the roof?", Keys.ENTER)
    wait(driver, lambda d: text_of(d, "#ask-status") == "done")
    answer = text_of(driver, "#answer")
    assert answer.startswith("Extractive answer") and driver.execute_script("return window.__appends") >= 3
    meta = text_of(driver, "#answer-meta")
    assert "arm default" in meta and "index_version 2" in meta and "extractive" in meta
    sources = driver.find_elements(By.CSS_SELECTOR, "#sources > li.hit")
    citations = driver.find_elements(By.CSS_SELECTOR, "#answer a.cite")
    assert sources and citations
    assert driver.find_elements(By.CSS_SELECTOR, "#answer script, #answer img, #sources script, #sources img") == []
    screenshot = tmp_path / "inspector.png"
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("DEEPSEEK_RAG_SCREENSHOT"):
        Path(os.environ["DEEPSEEK_RAG_SCREENSHOT"]).write_bytes(screenshot.read_bytes())

    driver.set_window_size(900, 500)  # a short window: the last cited passage starts out of sight
    citation = citations[-1]
    target = driver.find_element(By.ID, citation.get_attribute("href").rsplit("#", 1)[1])
    driver.execute_script("window.scrollTo(0, 0)")
    assert not in_viewport(driver, target)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", citation)
    citation.click()
    wait(driver, lambda d: in_viewport(d, target))
    assert driver.switch_to.active_element == target and "flash" in target.get_attribute("class")
    assert driver.execute_script("return window.pwned") is None

    errors = [entry for entry in driver.get_log("browser")
              if entry["level"] == "SEVERE" and "favicon" not in entry["message"] and "401" not in entry["message"]]
    assert errors == []  # no script error and no blocked-by-CSP message
