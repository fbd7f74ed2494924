"""The Dagster UI, as a user opens it: webserver on 127.0.0.1, GraphQL, and headless Chromium.

One offline plan is made with ``planexe plan`` (a subprocess, DAGSTER_HOME/PLANEXE_HOME/DATABASE_URL in
a temporary directory), then ``dagster-webserver -w workspace.yaml`` is started on a free port. Through
GraphQL (HTTP POST to ``/graphql``) the test checks that all the assets are there with their lineage
(each asset's upstream keys are its step's ``requires()``), that each is materialised for the plan's
partition by the plan's run, and that both asset checks succeeded for that partition. Headless
Chromium then opens the global asset graph and the plan's partition of one asset: the rendered page
must name what it should (``--dump-dom``) and the screenshots must be real PNGs of a rendered page.

Chromium comes from the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them
when missing). Without it the browser part is skipped with that reason, except in CI (``CI=true``),
where it fails. Set ``PLANEXE_SCREENSHOT_DIR`` to keep the screenshots.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from planexe_assets.core import STEPS, step_file
from planexe_assets.dagster_defs.checks import FILES_CHECK, JSON_CHECK, VERDICTS_CHECK, step_has_json
from planexe_assets.lifecycle.runner import pipeline_steps
from planexe_assets.steps.constraint_matrix import CONSTRAINT_CHECK_STEPS
from resources import migrate
from resources.database import DatabaseService, make_engine

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The `planexe` console script's entry point, run by this interpreter (in a development checkout the
# script may live outside the virtualenv's bin directory).
PLANEXE = [sys.executable, "-c", "from planexe_assets.cli.app import app; app(prog_name='planexe')"]
PLAN_ID = "web_plan"
PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
    # The UI is a JavaScript app that loads its data over GraphQL after the page loads: give it
    # (virtual) time to render before the screenshot or the DOM dump is taken.
    "--virtual-time-budget=30000",
]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(process: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True, and everything it started."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class UI:
    def __init__(self, base: str):
        self.base = base

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload["errors"]
        return payload["data"]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("webserver")
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(REPO / "planexe_assets" / "deploy" / "dagster.local.yaml", dagster_home / "dagster.yaml")
    url = f"sqlite:///{root / 'app.db'}"
    migrate.upgrade(url)
    env = {
        **os.environ,
        "PLANEXE_HOME": str(root / "planexe_home"),
        "DAGSTER_HOME": str(dagster_home),
        "DATABASE_URL": url,
    }
    made = subprocess.run(
        [*PLANEXE, "plan", PROMPT, "--model", "offline", "--fast", "--plan-id", PLAN_ID, "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert made.returncode == 0, (made.stdout + made.stderr)[-3000:]
    db = DatabaseService(make_engine(url))
    plan = db.get_plan(PLAN_ID)
    db.close()
    assert plan.status == "completed"

    port = _free_port()
    log = open(root / "webserver.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (
                "the webserver exited: " + (root / "webserver.log").read_text()[-3000:]
            )
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "the webserver did not answer within 300 s"
            time.sleep(1)
        # The code location loads in the background: wait until the assets are there.
        handle = UI(base)
        while not handle.graphql("{ assetNodes { id } }")["assetNodes"]:
            assert time.monotonic() < deadline, "the code location did not load"
            time.sleep(1)
        yield {"ui": handle, "base": base, "run_id": plan.last_run_id, "root": root}
    finally:
        _stop_group(server)
        log.close()


def test_graphql_has_every_asset_with_its_lineage_and_partition(ui):
    nodes = ui["ui"].graphql(
        """{ assetNodes { assetKey { path } dependencyKeys { path } groupName isPartitioned
             partitionDefinition { name type } } }"""
    )["assetNodes"]
    steps = {s.name: s for s in pipeline_steps()}
    assert len(steps) == len(STEPS)
    by_name = {node["assetKey"]["path"][-1]: node for node in nodes}
    assert set(by_name) == set(steps)
    for name, node in by_name.items():
        assert {k["path"][-1] for k in node["dependencyKeys"]} == set(steps[name].deps), name
        assert node["groupName"] == steps[name].group
        assert node["isPartitioned"] and node["partitionDefinition"]["name"] == "plans"
    edges = sum(len(node["dependencyKeys"]) for node in nodes)
    assert edges == sum(len(s.deps) for s in steps.values())


def test_graphql_shows_every_asset_and_check_done_for_the_plan(ui):
    nodes = ui["ui"].graphql(
        """query($partitions: [String!]!) { assetNodes {
             assetKey { path }
             latestMaterializationByPartition(partitions: $partitions) { partition runId }
             assetChecksOrError { __typename ... on AssetChecks { checks { name blocking
               partitionStatuses { __typename ... on AssetCheckDefaultPartitionStatuses {
                 succeededPartitions failedPartitions } } } } } } }""",
        {"partitions": [PLAN_ID]},
    )["assetNodes"]
    assert len(nodes) == len(STEPS)
    for node in nodes:
        name = node["assetKey"]["path"][-1]
        [latest] = node["latestMaterializationByPartition"]
        assert latest is not None, f"{name} is not materialised for {PLAN_ID}"
        assert latest["partition"] == PLAN_ID and latest["runId"] == ui["run_id"], name
        checks = {c["name"]: c for c in node["assetChecksOrError"]["checks"]}
        step = next(s for s in pipeline_steps() if s.name == name)
        expected = {FILES_CHECK, JSON_CHECK} if step_has_json(step) else {FILES_CHECK}
        if name in CONSTRAINT_CHECK_STEPS:
            expected.add(VERDICTS_CHECK)
        assert set(checks) == expected, name
        for check_name, check in checks.items():
            statuses = check["partitionStatuses"]
            if check_name == VERDICTS_CHECK:
                # A warning about the plan's content (a violated constraint), not about the stored data:
                # evaluated for the plan, passed or warned.
                assert not check["blocking"], name
                assert PLAN_ID in statuses["succeededPartitions"] + statuses["failedPartitions"], (
                    name,
                    check,
                )
                continue
            assert PLAN_ID in statuses["succeededPartitions"] and not statuses["failedPartitions"], (
                name,
                check,
            )


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        reason = "chromium is not installed: apt-get update && apt-get install -y chromium chromium-driver (.ci/run does this)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _browse(chromium: str, profile: Path, url: str, *output: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *output, url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _look(ui, tmp_path, chromium: str, url: str, name: str) -> tuple[Path, str]:
    """Screenshot and rendered DOM of ``url``, each in a fresh browser profile."""
    shot = tmp_path / f"{name}.png"
    _browse(chromium, tmp_path / f"profile-{name}-1", url, f"--screenshot={shot}")
    dom = _browse(chromium, tmp_path / f"profile-{name}-2", url, "--dump-dom").stdout
    keep = os.environ.get("PLANEXE_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(keep) / shot.name)
    assert _png_size(shot) == (1600, 1000)
    # Measured on this UI: a blank page is about 7 KB and the page frame with a loading spinner about
    # 50 KB; the rendered asset graph and the partition page are well above 100 KB.
    assert shot.stat().st_size > 80_000, f"{shot} is only {shot.stat().st_size} bytes"
    return shot, dom


def test_browser_shows_the_asset_graph_and_the_plans_partition(ui, tmp_path):
    chromium = _chromium()
    # The first visit to a new Dagster instance opens a "join the community" dialog over the page;
    # dismiss it the way its Skip button does.
    assert ui["ui"].graphql("mutation { setNuxSeen }")["setNuxSeen"] is True

    _, graph_dom = _look(ui, tmp_path, chromium, f"{ui['base']}/asset-groups", "asset_graph")
    assert "Global asset lineage" in graph_dom
    groups = {s.group for s in pipeline_steps()}
    # The side panel lists every group; the graph canvas draws the groups in view as nodes (each a
    # div with data-tooltip=<group>) joined by SVG edge paths.
    missing = sorted(g for g in groups if f'title="{g}"' not in graph_dom)
    assert missing == [], f"groups missing from the lineage panel: {missing}"
    assert "AssetGraphExplorer_svgContainer" in graph_dom, "no graph canvas was rendered"
    drawn = set(re.findall(r'data-tooltip="([^"]+)"', graph_dom)) & groups
    assert {"setup", "strategy_levers", "planning"} <= drawn, f"graph nodes drawn: {sorted(drawn)}"
    assert graph_dom.count("<path") >= 20, "the lineage edges were not drawn"

    url = f"{ui['base']}/assets/plan_type?view=partitions&partition={PLAN_ID}"
    _, partition_dom = _look(ui, tmp_path, chromium, url, "plan_partition")
    for expected in (
        PLAN_ID,
        "Materialized",
        step_file("plan_type", "raw"),
        step_file("plan_type", "markdown"),
        ui["run_id"][:8],
    ):
        assert expected in partition_dom, expected
