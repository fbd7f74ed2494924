"""The report and the other HTML pages, opened in headless Chromium as a reader would.

- An offline plan run through Dagster: the report has every section, and every HTML page the
  pipeline writes (the Gantt pages, the Q&A page, the report) carries the one shared stylesheet.
- The report of a recorded real run (tests/fixtures/planexe_runs), driven through chromedriver
  (Selenium): a contents link opens and scrolls to its section, a deep link ``#section`` opens it
  on load and on a later hash change, the contents are a sticky sidebar on a wide window and a plain
  list on a narrow one, "Back to top" works, each Gantt frame is as tall as its chart, the WBS table
  scrolls sideways inside its section, and without JavaScript the links still scroll.

Chromium comes from the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them when missing). Without them the tests are skipped with that reason, except in CI
(``CI=true``), where they fail. ``PLANEXE_SCREENSHOT_DIR`` keeps the screenshots taken on the way.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from dagster import DagsterInstance

from planexe_assets.core import step_file
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.steps.report import SECTION_IDS
from resources.database import get_database_service

pytestmark = pytest.mark.slow

# The report's 22 sections, in order: upstream's 2026 report, then Constraints.
SECTION_TITLES = [
    "Executive Summary",
    "Gantt Interactive",
    "Pitch",
    "Project Plan",
    "Strategic Decisions",
    "Scenarios",
    "Assumptions",
    "Governance",
    "Related Resources",
    "Data Collection",
    "Documents to Create and Find",
    "SWOT Analysis",
    "Team",
    "Expert Criticism",
    "Work Breakdown Structure",
    "Review Plan",
    "Questions & Answers",
    "Premortem",
    "Self Audit",
    "Initial Prompt Vetted",
    "Prompt Adherence",
    "Constraints",
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The first line of the shared stylesheet (planexe_assets/templates/planexe.css).
SHARED_STYLESHEET = "/* The one stylesheet of every HTML page the pipeline writes"
HTML_OUTPUTS = [
    step_file("schedule", "mermaid_html"),
    step_file("schedule", "dhtmlx_html"),
    step_file("questions_and_answers", "html"),
    step_file("report"),
]
WIDE = (1400, 1000)
NARROW = (700, 1000)


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} in CI (.ci/run installs chromium and chromium-driver)")
    pytest.skip(f"needs {reason}: apt-get install -y chromium chromium-driver")


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        _missing("chromium")
    return path


def _screenshot_dir() -> Path | None:
    folder = os.environ.get("PLANEXE_SCREENSHOT_DIR")
    return Path(folder) if folder else None


class _Summaries(HTMLParser):
    """The text of every <summary> of a <details> section, in document order."""

    def __init__(self):
        super().__init__()
        self.titles: list[str] = []
        self._in_summary = False

    def handle_starttag(self, tag, attrs):
        if tag == "summary":
            self._in_summary = True
            self.titles.append("")

    def handle_endtag(self, tag):
        if tag == "summary":
            self._in_summary = False

    def handle_data(self, data):
        if self._in_summary:
            self.titles[-1] += data


def test_report_opens_in_chromium_with_every_section(sqlite_url, monkeypatch, isolated_home, tmp_path):
    chromium = _chromium()
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    db = get_database_service(sqlite_url)
    create_plan(
        db,
        PlanRequest(
            prompt="Open a vegan butcher shop in Copenhagen",
            model="offline",
            fast=True,
            plan_id="report_plan",
        ),
    )
    outcome = run_plan_in_process("report_plan", DagsterInstance.ephemeral())
    assert outcome.success, outcome.failed_steps
    run_dir = isolated_home / "runs" / "report_plan"
    report = run_dir / step_file("report")
    assert report.exists()

    # Every HTML page of the run is one self-contained document with the shared stylesheet inlined
    # in its head (the report's Gantt frames carry their pages' own copy).
    for name in HTML_OUTPUTS:
        page = (run_dir / name).read_text(encoding="utf-8")
        head = page[: page.index("</head>")]
        assert page.startswith("<!DOCTYPE html>") and head.count(SHARED_STYLESHEET) == 1, name
        assert "<link" not in page and "<script src" not in page, name

    profile = tmp_path / "profile"
    dom = subprocess.run(
        [
            chromium,
            *FLAGS,
            "--window-size=1400,2400",
            f"--user-data-dir={profile}",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Summaries()
    parser.feed(dom.stdout)
    found = [" ".join(t.split()) for t in parser.titles]
    # The report's own sections, in order (the Gantt pages embedded in iframes are separate documents).
    positions = [found.index(title) for title in SECTION_TITLES]
    assert positions == sorted(positions), found

    shot = tmp_path / "report.png"
    done = subprocess.run(
        [
            chromium,
            *FLAGS,
            "--window-size=1400,2400",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 2400)
    assert len(data) > 60_000  # a rendered page of text, not a blank one
    if _screenshot_dir():
        shutil.copyfile(shot, _screenshot_dir() / "report.png")


# ---------------------------------------------------------------------------------------------------
# Navigation, driven through chromedriver
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded_pages(tmp_path_factory) -> Path:
    """A run directory with the report, Gantt and Q&A pages of the recorded Hong Kong run, made by
    our own steps from the run's real model outputs."""
    from tests.steps.test_report import REPORT, _report, recorded_report_inputs

    inputs = recorded_report_inputs("20260310_hong_kong_game")
    folder = tmp_path_factory.mktemp("recorded_run")
    for upstream in inputs.values():
        for name, text in upstream.contents.items():
            if name.endswith(".html"):
                (folder / name).write_text(text, encoding="utf-8")
    (folder / REPORT).write_text(_report(inputs).files[REPORT], encoding="utf-8")
    return folder


def _new_driver(*, javascript: bool = True):
    _chromium()
    chromedriver = shutil.which("chromedriver")
    if chromedriver is None:
        _missing("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # pragma: no cover - selenium is a dev dependency
        pytest.fail("selenium is missing: pip install -c requirements.lock -e '.[dev]'")
    options = Options()
    options.binary_location = shutil.which("chromium")
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='planexe-chromium-')}")
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _new_driver()
    yield driver
    driver.quit()


def _open(driver, page: Path, fragment: str = "", size: tuple[int, int] = WIDE) -> None:
    driver.set_window_size(*size)
    driver.get("about:blank")  # a new document every time, even for the same file
    driver.get(page.as_uri() + fragment)
    _settle(driver)


def _settle(driver, timeout: float = 10.0) -> None:
    """Wait until the page stops scrolling (smooth scrolling takes a moment)."""
    deadline = time.monotonic() + timeout
    last, still = None, 0
    while time.monotonic() < deadline:
        now = driver.execute_script("return [window.scrollX, window.scrollY, document.readyState]")
        still = still + 1 if now == last and now[2] == "complete" else 0
        if still >= 3:
            return
        last = now
        time.sleep(0.1)
    raise AssertionError(f"the page kept scrolling: {last}")


def _wait(driver, script: str, timeout: float = 10.0):
    """Poll a JavaScript expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _section_state(driver, section_id: str) -> dict:
    return driver.execute_script(
        """
        const s = document.getElementById(arguments[0]);
        const r = s.getBoundingClientRect();
        const bottom = Math.ceil(window.scrollY + window.innerHeight) >= document.documentElement.scrollHeight - 1;
        return {open: s.open, top: r.top, height: window.innerHeight, hash: location.hash, atBottom: bottom};
        """,
        section_id,
    )


def _assert_shown(state: dict) -> None:
    """Open, its heading inside the window, at the top (or as far as the page can scroll)."""
    assert state["open"], state
    assert 0 <= state["top"] < state["height"] - 40, state
    assert state["top"] < 40 or state["atBottom"], state


def _shot(driver, name: str) -> None:
    folder = _screenshot_dir()
    if folder:
        driver.save_screenshot(str(folder / name))


def test_contents_link_opens_and_scrolls_to_its_section(browser, recorded_pages):
    report = recorded_pages / step_file("report")
    _open(browser, report)
    for section_id in ("work-breakdown-structure", "premortem", "team"):
        assert _section_state(browser, section_id)["open"] is False
        browser.find_element("css selector", f"nav.toc a[href='#{section_id}']").click()
        _settle(browser)
        state = _section_state(browser, section_id)
        _assert_shown(state)
        assert state["hash"] == f"#{section_id}"
    _shot(browser, "report-contents-link.png")
    # The reader closes the section and follows the same link again: it opens again.
    browser.execute_script(
        "document.getElementById('team').open = false; window.scrollTo({top: 0, behavior: 'instant'});"
    )
    browser.find_element("css selector", "nav.toc a[href='#team']").click()
    _settle(browser)
    _assert_shown(_section_state(browser, "team"))
    # The marked contents entry follows the reading position.
    assert (
        browser.find_element("css selector", "nav.toc a[aria-current='true']")
        .get_attribute("href")
        .endswith("#team")
    )


@pytest.mark.parametrize("section_id", ["premortem", "work-breakdown-structure", "questions-answers"])
def test_deep_link_opens_its_section_on_load_and_on_hash_change(browser, recorded_pages, section_id):
    report = recorded_pages / step_file("report")
    _open(browser, report, f"#{section_id}")
    _assert_shown(_section_state(browser, section_id))
    # A later change of the address's fragment (typed, or a link from elsewhere) opens that one too.
    browser.execute_script("location.hash = '#swot-analysis';")
    _settle(browser)
    _assert_shown(_section_state(browser, "swot-analysis"))
    assert _section_state(browser, section_id)["open"] is True  # nothing else was closed


def test_every_contents_entry_links_a_section_by_its_readable_id(browser, recorded_pages):
    _open(browser, recorded_pages / step_file("report"))
    hrefs = browser.execute_script(
        "return [...document.querySelectorAll('nav.toc ol a')].map(a => a.getAttribute('href'));"
    )
    assert hrefs == [f"#{i}" for i in SECTION_IDS]
    ids = browser.execute_script("return [...document.querySelectorAll('details.section')].map(d => d.id);")
    assert ids == list(SECTION_IDS)


def test_contents_are_a_sticky_sidebar_when_wide_and_a_plain_list_when_narrow(browser, recorded_pages):
    report = recorded_pages / step_file("report")
    _open(browser, report)
    _shot(browser, "report-top.png")
    layout = browser.execute_script(
        """
        const nav = document.getElementById('contents'), main = document.getElementById('main');
        window.scrollTo({top: document.documentElement.scrollHeight, behavior: 'instant'});
        const n = nav.getBoundingClientRect(), m = main.getBoundingClientRect();
        return {position: getComputedStyle(nav).position, navTop: n.top, navBottom: n.bottom,
                navRight: n.right, mainLeft: m.left, scrolled: window.scrollY, height: window.innerHeight};
        """
    )
    assert layout["position"] == "sticky"
    assert layout["scrolled"] > 500
    assert 0 <= layout["navTop"] <= 40 and layout["navBottom"] <= layout["height"]  # still in view
    assert layout["navRight"] <= layout["mainLeft"]  # beside the sections

    _open(browser, report, size=NARROW)
    layout = browser.execute_script(
        """
        const nav = document.getElementById('contents'), main = document.getElementById('main');
        const n = nav.getBoundingClientRect(), m = main.getBoundingClientRect();
        return {position: getComputedStyle(nav).position, navBottom: n.bottom, mainTop: m.top,
                links: nav.querySelectorAll('ol a').length};
        """
    )
    assert layout["position"] == "static"
    assert layout["navBottom"] <= layout["mainTop"] and layout["links"] == 22  # a list above the sections
    _shot(browser, "report-narrow.png")


def test_back_to_top_appears_once_scrolled_and_goes_to_the_top(browser, recorded_pages):
    _open(browser, recorded_pages / step_file("report"), "#review-plan")
    control = browser.find_element("css selector", "a.back-to-top")
    assert _wait(browser, "getComputedStyle(document.querySelector('a.back-to-top')).opacity === '1'")
    control.click()
    _settle(browser)
    assert browser.execute_script("return window.scrollY") == 0
    assert _wait(browser, "getComputedStyle(document.querySelector('a.back-to-top')).opacity === '0'")


def _frame_heights(browser, frame_index: int) -> tuple[float, dict]:
    """The Gantt frame's own height, and the heights of the page and chart inside it."""
    frame = browser.find_elements("css selector", "iframe.gantt-frame")[frame_index]
    outer = browser.execute_script("return arguments[0].getBoundingClientRect().height", frame)
    browser.switch_to.frame(frame)
    try:
        inner = browser.execute_script(
            """
            const chart = document.querySelector('.gantt') || document.querySelector('.chart');
            return {content: document.documentElement.getBoundingClientRect().height,
                    scrollable: document.scrollingElement.scrollHeight - window.innerHeight,
                    embedded: document.documentElement.classList.contains('embedded'),
                    chartClipped: chart.scrollHeight - chart.clientHeight,
                    headerShown: getComputedStyle(document.querySelector('.page-header')).display !== 'none'};
            """
        )
    finally:
        browser.switch_to.default_content()
    return outer, inner


@pytest.mark.parametrize(("section_id", "frame_index"), [("gantt-interactive", 0)])
def test_gantt_frame_is_as_tall_as_its_chart(browser, recorded_pages, section_id, frame_index):
    _open(browser, recorded_pages / step_file("report"), f"#{section_id}")
    frame_selector = f"document.querySelectorAll('iframe.gantt-frame')[{frame_index}]"
    assert _wait(browser, f"{frame_selector}.hasAttribute('data-sized')"), "the frame never got its height"
    # The chart may still be laying out (a loaded machine draws late): the frame follows each height
    # message, so poll until it has caught up instead of trusting one fixed pause.
    deadline = time.monotonic() + 15
    while True:
        outer, inner = _frame_heights(browser, frame_index)
        if outer >= inner["content"] - 1 and inner["scrollable"] <= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    frame = browser.find_elements("css selector", "iframe.gantt-frame")[frame_index]
    assert inner["embedded"] and not inner["headerShown"]
    # The frame holds the whole page, the page holds the whole chart: nothing scrolls inside.
    assert outer >= inner["content"] - 1 and inner["scrollable"] <= 1 and inner["chartClipped"] <= 1, (
        outer,
        inner,
    )
    assert outer > 900  # 60+ rows: far taller than the old fixed 640 px frame
    if section_id == "gantt-interactive":
        _shot(browser, "report-gantt.png")
        # Collapsing the tree makes the chart shorter, and the frame follows.
        browser.switch_to.frame(frame)
        try:
            browser.find_element("css selector", "button[data-action='collapse']").click()
        finally:
            browser.switch_to.default_content()
        assert _wait(browser, f"{frame_selector}.getBoundingClientRect().height < {outer} - 300")


def test_wbs_table_scrolls_sideways_inside_its_section(browser, recorded_pages):
    _open(browser, recorded_pages / step_file("report"), "#work-breakdown-structure", size=(640, 900))
    box = browser.execute_script(
        """
        const section = document.getElementById('work-breakdown-structure');
        const scroller = section.querySelector('.table-scroll');
        const table = scroller.querySelector('table');
        return {overflow: getComputedStyle(scroller).overflowX, scrollWidth: scroller.scrollWidth,
                clientWidth: scroller.clientWidth, tableWidth: table.getBoundingClientRect().width,
                sectionRight: section.getBoundingClientRect().right,
                pageOverflow: document.documentElement.scrollWidth - window.innerWidth};
        """
    )
    assert box["overflow"] == "auto"
    assert box["scrollWidth"] > box["clientWidth"], box  # wider than the section: it scrolls
    assert box["pageOverflow"] <= 0, box  # the page itself does not get wider
    # Scrolled to the end, the last column (the task ids) is fully inside the container.
    last = browser.execute_script(
        """
        const scroller = document.querySelector('#work-breakdown-structure .table-scroll');
        scroller.scrollLeft = scroller.scrollWidth;
        const th = scroller.querySelector('thead th:last-child');
        return {text: th.textContent, right: th.getBoundingClientRect().right,
                edge: scroller.getBoundingClientRect().right};
        """
    )
    assert last["text"] == "Task ID" and last["right"] <= last["edge"] + 1, last
    # A long table scrolls down inside the section too, its header row kept in view, so the sideways
    # scrollbar is never 160 rows away.
    tall = browser.execute_script(
        """
        const scroller = document.querySelector('#work-breakdown-structure .table-scroll');
        scroller.scrollTop = 600;
        const th = scroller.querySelector('thead th');
        return {scrollTop: scroller.scrollTop, height: scroller.getBoundingClientRect().height,
                window: window.innerHeight, headTop: th.getBoundingClientRect().top,
                top: scroller.getBoundingClientRect().top};
        """
    )
    assert tall["scrollTop"] == 600 and tall["height"] <= tall["window"], tall
    assert abs(tall["headTop"] - tall["top"]) <= 2, tall
    browser.execute_script(
        "document.querySelector('#work-breakdown-structure .table-scroll').scrollLeft = 0;"
    )
    _shot(browser, "report-wbs.png")


def test_questions_page_is_styled_like_the_report(browser, recorded_pages):
    def look(page: Path) -> dict:
        _open(browser, page)
        return browser.execute_script(
            """
            const h1 = document.querySelector('.page-header h1');
            const css = [...document.querySelectorAll('style')].map(s => s.textContent).join('');
            return {font: getComputedStyle(document.body).fontFamily,
                    background: getComputedStyle(document.body).backgroundColor,
                    h1: getComputedStyle(h1).color, h1Size: getComputedStyle(h1).fontSize,
                    shared: css.includes(arguments[0])};
            """,
            SHARED_STYLESHEET,
        )

    report = look(recorded_pages / step_file("report"))
    qa = look(recorded_pages / step_file("questions_and_answers", "html"))
    assert qa == report and qa["shared"]
    _shot(browser, "questions-and-answers.png")
    card = browser.execute_script(
        "const a = document.querySelector('article.card'); return a && getComputedStyle(a).backgroundColor;"
    )
    assert card == "rgb(255, 255, 255)"
    for name in (step_file("schedule", "mermaid_html"), step_file("schedule", "dhtmlx_html")):
        page = look(recorded_pages / name)
        assert page["font"] == report["font"] and page["h1"] == report["h1"] and page["shared"], name


def test_without_javascript_the_links_still_scroll(recorded_pages):
    driver = _new_driver(javascript=False)
    try:
        report = recorded_pages / step_file("report")
        _open(driver, report)
        assert driver.execute_script("return document.documentElement.className") == ""  # no script ran
        driver.find_element("css selector", "nav.toc a[href='#strategic-decisions']").click()
        _settle(driver)
        state = _section_state(driver, "strategic-decisions")
        assert state["hash"] == "#strategic-decisions"
        assert 0 <= state["top"] < 40 or state["atBottom"], state  # scrolled to it (closed: no script)
        # The back-to-top control is a plain link, visible without the script.
        assert (
            driver.execute_script("return getComputedStyle(document.querySelector('a.back-to-top')).opacity")
            == "1"
        )
    finally:
        driver.quit()
