"""The application database unreachable at start or lost in the middle of a run (PostgreSQL).

The code under test reaches PostgreSQL through a TCP proxy on 127.0.0.1 (``tcp_proxy.py``); cutting
the proxy makes the database vanish for it (refused connections, broken sessions) while the server
keeps running. The test reads the database directly, around the proxy. Expected: a clear error and
no traceback, no plan state reported as complete, the run directory still equal to the rows, and the
plan finishing once the database is back.
"""

from __future__ import annotations

import threading
import time

import pytest
from dagster import DagsterEventType, DagsterInstance
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from planexe_assets.cli.app import app
from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, STEP_BY_NAME
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import missing_steps_with_downstream, pipeline_steps
from resources.config import runs_dir
from resources.database import DatabaseService, _services, get_database_service, make_engine
from resources.plan_store import PlanStore
from tests.reliability.conftest import PROMPT
from tests.reliability.support import (
    OfflineModel,
    assert_files_equal_rows,
    schema_name,
    seed_steps,
    steps_before,
)
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres
DB_PASSWORD = "pw-canary-51d3e8"


@pytest.fixture
def proxied(postgres_url, monkeypatch):
    """(proxy, URL through the proxy, a DatabaseService that bypasses it); DATABASE_URL = the proxy."""
    target = make_url(postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    # The server trusts local connections, so the password is never checked; it must never be shown.
    url = target.set(host="127.0.0.1", port=proxy.port, password=DB_PASSWORD).render_as_string(
        hide_password=False
    )
    monkeypatch.setenv("DATABASE_URL", url)
    direct = DatabaseService(make_engine(postgres_url))
    yield proxy, url, direct
    proxy.stop()
    direct.close()
    service = _services.pop(url, None)
    if service is not None:
        service.close()


def _said(result) -> str:
    return " ".join((result.output or "").split())


def test_database_unreachable_at_start(proxied, isolated_home):
    proxy, url, direct = proxied
    create_plan(get_database_service(url), PlanRequest(prompt=PROMPT, model="offline", plan_id="waiting"))
    proxy.cut()

    runner = CliRunner()
    shown = make_url(url).render_as_string(hide_password=True)
    for args in (
        ["plan", PROMPT, "--model", "offline", "--quiet"],
        ["resume", "waiting", "--quiet"],
        ["status", "waiting"],
        ["list"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert isinstance(result.exception, SystemExit), f"{args}: {result.exception!r}"  # no traceback
        said = _said(result)
        assert "cannot reach the database" in said and shown in said, said
        assert "Connection refused" in said or "connection failed" in said, said
        assert DB_PASSWORD not in said

    # A run launched anyway (a sensor, the UI): it fails, raises nothing, and reports nothing complete.
    instance = DagsterInstance.ephemeral()
    outcome = run_plan_in_process("waiting", instance, log_level="CRITICAL")
    assert not outcome.success
    errors = _run_errors(instance, outcome.run_id)
    assert "DatabaseUnavailable" in errors and DB_PASSWORD not in errors

    proxy.restore()
    plan = direct.get_plan("waiting")
    assert plan.status == "pending" and plan.completed_at is None
    assert direct.get_plan_content("waiting") == []
    assert not (isolated_home / "runs" / "waiting").exists() or not any(
        (isolated_home / "runs" / "waiting").iterdir()
    )
    assert missing_steps_with_downstream(direct, "waiting") == [s.name for s in pipeline_steps()]
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "waiting" in listed.output


@pytest.mark.slow
def test_database_lost_mid_run_then_back(proxied, stub, stub_config, offline_template, isolated_home):
    proxy, url, direct = proxied
    stub_config(["m1"])
    slow = {"on": True}
    stub.script(
        "m1",
        then=OfflineModel(
            latency=lambda body: 0.25 if slow["on"] and schema_name(body) == "ReviewBullets" else 0.0
        ),
    )
    db = get_database_service(url)
    create_plan(db, PlanRequest(prompt=PROMPT, model="auto", plan_id="outage"))
    seeded = steps_before("review_plan")
    seed_steps(PlanStore(db, runs_dir()), "outage", offline_template, seeded, run_id="seed")
    run_dir = isolated_home / "runs" / "outage"

    holder: dict = {}
    worker = threading.Thread(
        target=lambda: holder.setdefault("result", CliRunner().invoke(app, ["resume", "outage", "--quiet"])),
        daemon=True,
    )
    worker.start()
    deadline = time.monotonic() + 120
    while len(direct.get_plan_interactions("outage", stage="review_plan")) < 2:
        assert worker.is_alive(), holder["result"].output
        assert time.monotonic() < deadline, "review_plan never started"
        time.sleep(0.05)
    proxy.cut()
    slow["on"] = False
    worker.join(timeout=180)
    assert not worker.is_alive(), "the run hung after losing the database"

    result = holder["result"]
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    said = _said(result)
    assert "is unavailable" in said and "planexe resume outage" in said, said
    assert DB_PASSWORD not in result.output

    plan = direct.get_plan("outage")
    assert plan.status != "completed" and plan.completed_at is None and (plan.progress_percentage or 0) < 100
    stored = {r.filename for r in direct.get_plan_content("outage")}
    assert PIPELINE_COMPLETE_FILENAME not in stored
    assert not set(STEP_BY_NAME["review_plan"].filenames) & stored
    assert_files_equal_rows(direct, "outage", run_dir)

    proxy.restore()
    again = CliRunner().invoke(app, ["resume", "outage", "--quiet"])
    assert again.exit_code == 0, again.output
    plan = direct.get_plan("outage")
    assert plan.status == "completed" and plan.error_message is None and plan.progress_percentage == 100
    rows = assert_files_equal_rows(direct, "outage", run_dir)
    assert PIPELINE_COMPLETE_FILENAME in rows
    for name in seeded:
        assert {rows[f].run_id for f in STEP_BY_NAME[name].filenames} == {"seed"}, f"{name} was redone"
    assert missing_steps_with_downstream(direct, "outage") == []


def _run_errors(instance, run_id: str) -> str:
    """Every error a run reported (resource set-up, steps, the run itself), as one text."""
    texts = []
    for kind in (
        DagsterEventType.RESOURCE_INIT_FAILURE,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.RUN_FAILURE,
    ):
        for entry in instance.all_logs(run_id, of_type=kind):
            error = getattr(entry.dagster_event.event_specific_data, "error", None)
            if error is not None:
                texts.append(error.to_string())
    return "\n".join(texts)


def test_failure_events_name_the_unavailable_database(proxied):
    """What the Dagster UI shows for a run that cannot reach the database: the (password-free) URL and why."""
    proxy, url, _ = proxied
    create_plan(get_database_service(url), PlanRequest(prompt=PROMPT, model="offline", plan_id="events"))
    proxy.cut()
    instance = DagsterInstance.ephemeral()
    outcome = run_plan_in_process("events", instance, steps=["setup"], log_level="CRITICAL")
    assert not outcome.success
    text = _run_errors(instance, outcome.run_id)
    assert "DatabaseUnavailable" in text and make_url(url).render_as_string(hide_password=True) in text
    assert "Connection refused" in text and DB_PASSWORD not in text
