"""``planexe plan`` / ``planexe resume`` as a person sees them: in a real terminal (a pty of 80 columns
that is the command's controlling terminal, so Ctrl-C is the terminal's SIGINT) and with the output
piped, against a slow OpenAI-compatible endpoint (``bench.latency_server``, 0.4 s per call).

- the progress moves while the plan runs: the completed-asset count rises through several values
  (it used to stay at 0 of all until the end), in the terminal and as plain lines when piped, on SQLite
  and on PostgreSQL;
- Ctrl-C stops the plan cleanly: one line says so and how to resume, exit 130, no traceback, the plan
  ``stopped``, the Dagster run CANCELED, every file with its row; ``planexe resume`` finishes it.
  SIGTERM does the same with exit 143; a second Ctrl-C stops at once;
- ids and paths are never broken across lines.

The figures each test saw (distinct counts, time between redraws) are printed; run with ``-s``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from bench.latency_server import LatencyModel, LatencyServer
from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, STEPS
from resources.database import DatabaseService, make_engine, sha256_text
from resources.plan_store import TEMP_PREFIX
from tests.support.terminal import Terminal, strip_ansi

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
PLANEXE = [
    sys.executable,
    "-c",
    "import sys; from planexe_assets.cli.app import app; sys.argv[0] = 'planexe'; app()",
]
PROMPT = "Open a bakery in Oslo"
TOTAL = len(STEPS)
COUNT = re.compile(rf"(\d+)/{TOTAL} assets")


@pytest.fixture(scope="module")
def endpoint():
    """The benchmark's latency server, 0.4 s per call, in this process (the plan worker calls it)."""
    server = LatencyServer(LatencyModel.parse("fixed:0.4"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}/v1"
    server.shutdown()
    server.server_close()


def llm_config(path: Path, base_url: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "slow": {
                    "comment": "bench.latency_server",
                    "class": "OpenAILike",
                    "priority": 1,
                    "arguments": {
                        "model": "m",
                        "api_base": base_url,
                        "api_key": "x",
                        "max_in_flight": 8,
                        "timeout": 60,
                    },
                }
            }
        ),
        encoding="utf-8",
    )
    return path


class Home:
    """A PLANEXE_HOME with its own Dagster home, a migrated database and the slow model configured."""

    def __init__(self, root: Path, url: str, base_url: str):
        self.root = root
        self.planexe_home = root / "home"
        self.dagster_home = root / "dagster"
        self.url = url
        self.env = {
            **os.environ,
            "PLANEXE_HOME": str(self.planexe_home),
            "DAGSTER_HOME": str(self.dagster_home),
            "DATABASE_URL": url,
            "PLANEXE_LLM_CONFIG": str(llm_config(root / "llm_config.json", base_url)),
        }
        self.env.pop("PLANEXE_TEST_POSTGRES_URL", None)
        self.db = DatabaseService(make_engine(url))

    def terminal(self, *args: str, columns: int = 80) -> Terminal:
        return Terminal([*PLANEXE, *args], self.env, REPO, columns=columns)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*PLANEXE, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_config(str(self.dagster_home))

    def run_of(self, plan_id: str):
        with self.instance() as instance:
            [record] = instance.get_run_records(RunsFilter(tags={"dagster/partition": plan_id}), limit=1)
            return record.dagster_run

    def assert_files_match_rows(self, plan_id: str) -> None:
        """Every file of the run directory has its plan_content row, with the same sha256."""
        rows = {r.filename: r for r in self.db.get_plan_content(plan_id)}
        run_dir = self.planexe_home / "runs" / plan_id
        files = [p for p in run_dir.iterdir() if not p.name.startswith(TEMP_PREFIX)]
        assert files, "the run directory is empty"
        for path in files:
            assert path.name in rows, f"{path.name} has no plan_content row"
            assert sha256_text(path.read_text(encoding="utf-8")) == rows[path.name].content_hash, path.name

    def close(self) -> None:
        self.db.close()


@pytest.fixture
def home(tmp_path, sqlite_url, endpoint):
    made = Home(tmp_path, sqlite_url, endpoint)
    yield made
    made.close()


@pytest.fixture
def postgres_home(tmp_path, postgres_url, endpoint):
    made = Home(tmp_path, postgres_url, endpoint)
    yield made
    made.close()


def counts_while_running(terminal: Terminal) -> list[tuple[float, int]]:
    """(seconds since start, completed-asset count) of every redraw, in order."""
    seen = []
    for at, chunk in terminal.chunks:
        for value in COUNT.findall(strip_ansi(chunk)):
            seen.append((at, int(value)))
    return seen


def report(name: str, seen: list[tuple[float, int]]) -> dict:
    values = [v for _, v in seen]
    distinct = sorted(set(values))
    gaps = [b - a for (a, _), (b, _) in zip(seen, seen[1:], strict=False)]
    figures = {
        "redraws": len(seen),
        "distinct_counts": len(distinct),
        "counts": distinct,
        "median_seconds_between_redraws": round(statistics.median(gaps), 3) if gaps else None,
        "max_seconds_between_redraws": round(max(gaps), 3) if gaps else None,
        "seconds": round(seen[-1][0], 1) if seen else None,
    }
    print(f"\n{name}: {json.dumps(figures)}")
    return figures


def assert_rises(seen: list[tuple[float, int]]) -> None:
    running = sorted({v for _, v in seen if v < TOTAL})
    assert len(running) >= 3, f"the completed-asset count showed only {running} before the end"
    values = [v for _, v in seen]
    assert values == sorted(values), "the count went backwards"


def _plan_in_a_terminal(home: Home, plan_id: str) -> None:
    terminal = home.terminal("plan", PROMPT, "--model", "slow", "--fast", "--plan-id", plan_id)
    try:
        code = terminal.wait(timeout=600)
    finally:
        terminal.kill()
    said = terminal.plain
    assert code == 0, said[-3000:]
    seen = counts_while_running(terminal)
    report(f"terminal, {home.url.split(':')[0]}", seen)
    assert_rises(seen)
    assert seen[-1][1] == TOTAL
    assert "LLM calls:" in said and "attempts" in said
    assert "Traceback" not in said
    # Ids and paths are whole: Rich never broke them (the terminal may wrap them for display).
    run_dir = str(home.planexe_home / "runs" / plan_id)
    assert f"run directory: {run_dir}" in said
    run = home.run_of(plan_id)
    assert f"plan {plan_id} completed ({TOTAL} of {TOTAL} steps); Dagster run {run.run_id}" in said
    assert run.status == DagsterRunStatus.SUCCESS
    home.assert_files_match_rows(plan_id)


def test_progress_moves_in_a_terminal(home):
    _plan_in_a_terminal(home, "live_sqlite")


@pytest.mark.postgres
def test_progress_moves_in_a_terminal_on_postgres(postgres_home):
    _plan_in_a_terminal(postgres_home, "live_pg")


def _stop_with(home: Home, plan_id: str, stop, expected_exit: int, after: int = 8) -> Terminal:
    terminal = home.terminal("plan", PROMPT, "--model", "slow", "--fast", "--plan-id", plan_id)
    try:
        terminal.wait_for(
            lambda text: any(int(v) >= after for v in COUNT.findall(text)),
            timeout=300,
            what=f"{after} assets done",
        )
        stop(terminal)
        code = terminal.wait(timeout=120)
    finally:
        terminal.kill()
    said = terminal.plain
    assert code == expected_exit, said[-3000:]
    assert "Traceback" not in said, said[-3000:]
    line = f"plan {plan_id} stopped; resume it with: planexe resume {plan_id}"
    assert said.count(line) == 1, said[-3000:]
    plan = home.db.get_plan(plan_id)
    assert plan.status == "stopped" and plan.recoverable is True, (plan.status, plan.failure_reason)
    assert (plan.progress_percentage or 0) < 100 and PIPELINE_COMPLETE_FILENAME not in {
        r.filename for r in home.db.get_plan_content(plan_id)
    }
    assert home.run_of(plan_id).status == DagsterRunStatus.CANCELED
    assert not [c for c in home.db.get_plan_interactions(plan_id) if c.status == "pending"]
    home.assert_files_match_rows(plan_id)
    return terminal


def test_ctrl_c_stops_the_plan_and_resume_finishes_it_with_plain_lines(home):
    terminal = _stop_with(home, "interrupted", lambda t: t.type("\x03"), expected_exit=130)
    assert "Ctrl-C in planexe plan" in home.db.get_plan("interrupted").failure_reason
    report("terminal until Ctrl-C", counts_while_running(terminal))
    stored_before = {r.filename: r.run_id for r in home.db.get_plan_content("interrupted")}

    # Piped (not a terminal): plain lines, one per change, nothing broken across lines.
    started = time.monotonic()
    resumed = subprocess.Popen(
        [*PLANEXE, "resume", "interrupted"],
        cwd=REPO,
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, str]] = []
    for line in resumed.stdout:
        lines.append((time.monotonic() - started, line.rstrip("\n")))
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert not any("\x1b" in line for _, line in lines), "escape sequences in piped output"
    seen = [(at, int(v)) for at, line in lines for v in COUNT.findall(line)]
    figures = report("piped resume", seen)
    assert_rises(seen)
    assert figures["redraws"] == len([line for _, line in lines if COUNT.search(line)])  # one count per line
    run = home.run_of("interrupted")
    said = [line for _, line in lines]
    assert f"plan interrupted completed ({TOTAL} of {TOTAL} steps); Dagster run {run.run_id}" in said
    assert f"run directory: {home.planexe_home / 'runs' / 'interrupted'}" in said
    plan = home.db.get_plan("interrupted")
    assert plan.status == "completed" and plan.failure_reason is None and plan.recoverable is None
    after = {r.filename: r.run_id for r in home.db.get_plan_content("interrupted")}
    assert all(after[name] == run_id for name, run_id in stored_before.items()), "resume redid stored steps"
    home.assert_files_match_rows("interrupted")


def test_sigterm_stops_the_plan(home):
    _stop_with(home, "terminated", lambda t: t.process.send_signal(signal.SIGTERM), expected_exit=143)
    assert "SIGTERM in planexe plan" in home.db.get_plan("terminated").failure_reason


def test_a_second_ctrl_c_stops_at_once(home, tmp_path):
    """Steps in flight that would take long (5 s per call, a 60 s grace period): the first Ctrl-C
    waits for them, the second kills the worker; the end is recorded the same way."""
    server = LatencyServer(LatencyModel.parse("fixed:5"))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        llm_config(tmp_path / "slower.json", f"http://127.0.0.1:{server.port}/v1")
        home.env["PLANEXE_LLM_CONFIG"] = str(tmp_path / "slower.json")
        home.env["PLANEXE_STOP_GRACE_SECONDS"] = "60"

        def twice(terminal: Terminal) -> None:
            terminal.type("\x03")
            terminal.wait_for(lambda text: "stopping" in text, timeout=30, what="the stopping notice")
            time.sleep(1)
            started = time.monotonic()
            terminal.type("\x03")
            terminal.process.wait(timeout=30)
            assert time.monotonic() - started < 20, "the second Ctrl-C did not stop at once"

        _stop_with(home, "forced", twice, expected_exit=130, after=2)
    finally:
        server.shutdown()
        server.server_close()
