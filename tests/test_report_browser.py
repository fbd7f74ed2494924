"""The final report of an offline plan, opened in headless Chromium: every section is there.

Chromium comes from the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them when missing). Without it the test is skipped with that reason, except in CI (``CI=true``),
where it fails.
"""

import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import pytest
from dagster import DagsterInstance

from planexe_assets.launch import run_plan_in_process
from planexe_assets.plans import PlanRequest, create_plan
from resources.database import get_database_service

pytestmark = pytest.mark.slow

# SPEC §6: the report's 20 sections, in order.
SECTION_TITLES = [
    "Executive Summary", "Gantt Overview", "Gantt Interactive", "Pitch", "Project Plan",
    "Strategic Decisions", "Scenarios", "Assumptions", "Governance", "Related Resources",
    "Data Collection", "Documents to Create and Find", "SWOT Analysis", "Team", "Expert Criticism",
    "Work Breakdown Structure", "Review Plan", "Questions & Answers", "Premortem", "Initial Prompt Vetted",
]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,2400",
]


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("needs chromium: apt-get install -y chromium chromium-driver")
    return path


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
    create_plan(db, PlanRequest(prompt="Open a vegan butcher shop in Copenhagen", model="offline", fast=True, plan_id="report_plan"))
    outcome = run_plan_in_process("report_plan", DagsterInstance.ephemeral())
    assert outcome.success, outcome.failed_steps
    report = isolated_home / "runs" / "report_plan" / "029-report.html"
    assert report.exists()

    profile = tmp_path / "profile"
    dom = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120,
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
        [chromium, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 2400)
    assert len(data) > 60_000  # a rendered page of text, not a blank one
    if os.environ.get("PLANEXE_SCREENSHOT_DIR"):
        shutil.copyfile(shot, os.path.join(os.environ["PLANEXE_SCREENSHOT_DIR"], "report.png"))
