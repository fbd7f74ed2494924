"""The Dagster UI as a user drives it, live: headless Chromium (Selenium + chromedriver) on ``dagster dev``.

``dagster dev`` (webserver and daemon) runs on a free port of 127.0.0.1 with the default instance
configuration (``planexe_assets/deploy/dagster.local.yaml``: the project's pooled SQLite storage, the run queue,
the ``llm`` pool) and the project's definitions, served through ``tests/support/
prompt_edit_definitions.py`` so that one test can edit a prompt and reload the code location.

1. In the ``create_plan`` job's Launchpad the test types the plan request into the config editor
   and clicks Launch Run; the plan sensor then launches the plan's run.
2. It opens that run's page while the run is queued and, without ever reloading, polls the page:
   the status must move on to Success and the step list must reach every step of the plan, as the
   events arrive (Dagster's event-log watcher must see the run worker's writes; before the storage
   fix the page froze or missed the last steps).
3. It edits the ``identify_purpose`` prompt, reloads the code location and checks that the plan's
   partition of that asset shows "Unsynced", with exactly it and its downstream assets stale.

Screenshots are saved when ``PLANEXE_SCREENSHOT_DIR`` is set. Chromium and chromedriver come from
Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them); without them the
module is skipped with that reason, except in CI, where it fails.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from planexe_assets.dagster_defs.instance_config import LOCAL_CONFIG
from planexe_assets.lifecycle.runner import pipeline_steps
from resources import migrate
from resources.database import DatabaseService, make_engine

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
LOCATION = "planexe_assets.definitions"
PLAN_ID = "live_plan"
PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: str, root: Path, db: DatabaseService, env: dict[str, str]):
        self.base = base
        self.root = root
        self.db = db
        self.env = env

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload["errors"]
        return payload["data"]

    def plan_runs(self, plan_id: str) -> list[dict]:
        data = self.graphql(
            """query($plan: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $plan}]}) {
                 ... on Runs { results { runId status jobName } } } }""",
            {"plan": plan_id},
        )
        return data["runsOrError"]["results"]

    def location_loaded(self) -> bool:
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
        )
        entries = {e["name"]: e["loadStatus"] for e in data["workspaceOrError"]["locationEntries"]}
        return entries.get(LOCATION) == "LOADED"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("live_ui")
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_bytes(LOCAL_CONFIG.read_bytes())
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: tests.support.prompt_edit_definitions\n"
        f"      attribute: defs\n      location_name: {LOCATION}\n      working_directory: {REPO}\n",
        encoding="utf-8",
    )
    url = f"sqlite:///{root / 'app.db'}"
    migrate.upgrade(url)
    env = {
        **os.environ,
        "PLANEXE_HOME": str(root / "planexe_home"),
        "DAGSTER_HOME": str(dagster_home),
        "DATABASE_URL": url,
        "PLANEXE_PLAN_SENSOR_INTERVAL": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    port = _free_port()
    log = open(root / "dagster_dev.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    handle = Server(f"http://127.0.0.1:{port}", root, DatabaseService(make_engine(url)), env)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, (root / "dagster_dev.log").read_text()[-3000:]
            try:
                if handle.location_loaded():
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, AssertionError):
                pass
            assert time.monotonic() < deadline, "dagster dev did not load the code location within 300 s"
            time.sleep(1)
        handle.graphql("mutation { setNuxSeen }")  # the first-visit dialog would cover the pages
        yield handle
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        log.close()
        handle.db.close()


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        _missing(
            "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does this)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("needs selenium (pip install -c requirements.lock -e '.[dev]')")
    options = webdriver.ChromeOptions()
    profile = tempfile.mkdtemp(prefix="planexe-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1600,1000",
    ):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _page_text(driver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def _wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(interval)


def _screenshot(driver, name: str) -> None:
    folder = os.environ.get("PLANEXE_SCREENSHOT_DIR")
    path = Path(folder or tempfile.gettempdir()) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not folder:
        path.unlink()


RUN_STATUS = re.compile(r"\nRuns\n/\n[0-9a-f]{8}\n([A-Z][a-z]+)\n")
SUCCEEDED = re.compile(r"\nSucceeded \((\d+)\)")


def _run_page_state(driver) -> tuple[str | None, int | None]:
    """(the status shown in the run page's header, the step list's "Succeeded (N)")."""
    text = "\n" + _page_text(driver)
    status, succeeded = RUN_STATUS.search(text), SUCCEEDED.search(text)
    return (status.group(1) if status else None, int(succeeded.group(1)) if succeeded else None)


def test_a_plan_from_the_launchpad_runs_and_its_run_page_updates_live(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{server.base}/locations/{LOCATION}/jobs/create_plan/playground")
    _wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, ".CodeMirror"), 60, "the Launchpad's config editor"
    )
    config = (
        "ops:\n  plan_request:\n    config:\n"
        f"      prompt: {PROMPT}\n      model: offline\n      speed: fast\n      plan_id: {PLAN_ID}\n"
    )
    # What typing into the editor does: the Launchpad validates the new text against the job's schema.
    browser.execute_script("document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0])", config)
    _wait_for(lambda: "No errors" in _page_text(browser), 30, "the Launchpad to accept the config")
    _screenshot(browser, "launchpad_create_plan")

    def launch() -> bool:  # the button is enabled once the Launchpad has validated the config
        buttons = [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Launch Run"]
        if buttons and buttons[0].is_enabled():
            buttons[0].click()
            time.sleep(1)
        return "/runs/" in browser.current_url

    _wait_for(launch, 60, "Launch Run to open the create_plan run's page", interval=1)
    _wait_for(lambda: _run_page_state(browser)[0] == "Success", 120, "the create_plan run to succeed")
    plan = server.db.get_plan(PLAN_ID)
    assert (
        plan is not None and plan.llm_model == "offline" and plan.speed_vs_detail == "fast_but_skip_details"
    )

    # The plan sensor launches the plan: open its run's page as soon as the run exists.
    [run] = _wait_for(lambda: server.plan_runs(PLAN_ID), 120, "plan_launch_sensor to launch the plan")
    assert run["jobName"] == "full_plan_job"
    browser.get(f"{server.base}/runs/{run['runId']}")
    total = 2 * len(pipeline_steps())  # every asset and its checks step
    seen: list[tuple[str | None, int | None]] = []
    shot_mid_run = False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = _run_page_state(browser)
        if not seen or state != seen[-1]:
            seen.append(state)
        if (
            not shot_mid_run
            and state[0] == "Started"
            and state[1]
            and 0.25 * total <= state[1] <= 0.6 * total
        ):
            _screenshot(browser, "run_page_mid_run")
            shot_mid_run = True
        if state == ("Success", total):
            break
        status = server.graphql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status endTime } } }",
            {"id": run["runId"]},
        )["runOrError"]
        if status["status"] in ("FAILURE", "CANCELED"):
            pytest.fail(f"the plan's run ended {status['status']}; page states: {seen}")
        if status["status"] == "SUCCESS" and time.time() - status["endTime"] > 20:
            pytest.fail(f"the run ended 20 s ago but its page shows {state}; page states: {seen}")
        time.sleep(0.4)
    else:
        pytest.fail(f"the run page never reached Success with {total} steps; page states: {seen}")
    statuses = [s for s, _ in seen if s]
    assert statuses[-1] == "Success" and "Started" in statuses, seen
    counts = [n for s, n in seen if s == "Started" and n is not None]
    assert len(set(counts)) >= 3 and counts == sorted(counts), f"steps did not arrive live: {seen}"
    assert server.db.get_plan(PLAN_ID).status == "completed"


def test_an_edited_prompt_makes_the_plans_asset_unsynced(server, browser):
    plan = server.db.get_plan(PLAN_ID)
    assert plan is not None and plan.status == "completed", "needs the plan of the previous test"
    from planexe_assets.steps import purpose
    from tests.support.prompt_edit_definitions import EDITED_PROMPT_FILE

    edited = Path(server.env["PLANEXE_HOME"]) / EDITED_PROMPT_FILE
    edited.write_text(
        purpose.PURPOSE_SYSTEM_PROMPT + "\nKeep the topic under five words.\n", encoding="utf-8"
    )
    result = server.graphql(
        "mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }",
        {"name": LOCATION},
    )
    assert result["reloadRepositoryLocation"]["__typename"] == "WorkspaceLocationEntry"
    _wait_for(server.location_loaded, 180, "the code location to reload")

    nodes = server.graphql(
        """query($plan: String) { assetNodes { assetKey { path }
             staleStatus(partition: $plan) staleCauses(partition: $plan) { reason category } } }""",
        {"plan": PLAN_ID},
    )["assetNodes"]
    stale = {n["assetKey"]["path"][-1] for n in nodes if n["staleStatus"] == "STALE"}
    downstream: set[str] = set()
    for step in pipeline_steps():
        if "identify_purpose" in step.deps or downstream & set(step.deps):
            downstream.add(step.name)
    assert stale == {"identify_purpose"} | downstream
    [identify] = [n for n in nodes if n["assetKey"]["path"] == ["identify_purpose"]]
    assert identify["staleCauses"] == [{"reason": "has a new code version", "category": "CODE"}]

    browser.get(f"{server.base}/assets/identify_purpose?view=partitions&partition={PLAN_ID}")

    def unsynced() -> str | None:  # the tag, and the metadata with its (lazily rendered) preview
        text = _page_text(browser)
        return text if "Unsynced" in text and "002-6-identify_purpose.md · Markdown" in text else None

    text = _wait_for(unsynced, 90, "the plan's partition to show Unsynced")
    assert PLAN_ID in text and "openai.calls" in text and "planexe.llm_attempts" in text
    _screenshot(browser, "stale_asset_after_prompt_edit")
