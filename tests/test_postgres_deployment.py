"""The PostgreSQL deployment end to end: application tables and Dagster's storage in two databases of
the machine's PostgreSQL, ``planexe_assets/deploy/dagster.postgres.yaml`` as the instance, ``dagster-daemon run`` as
a subprocess. Three offline plans queued by three kinds of client are launched by the plan sensor
through the run queue and must all complete: one run each, no lock errors, no duplicate rows, the
statuses and usage totals right. A fourth queued row names an unknown model and must be refused
without a run.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster_postgres.run_storage import PostgresRunStorage
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from planexe_assets.cli.app import app
from planexe_assets.dagster_defs.instance_config import DAGSTER_POSTGRES_URL_ENV, install_instance_config
from planexe_assets.dagster_defs.runs import LAUNCHED_BY_TAG
from planexe_assets.dagster_defs.sensors import LAUNCH_SENSOR_NAME
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import pipeline_steps
from resources import migrate
from resources.database import DatabaseService, make_engine, sha256_text
from tests.conftest import create_postgres_database, drop_postgres_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
PROMPTS = {
    "pg_cli": "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats.",
    "pg_sql": "Build a community solar co-operative for 300 households in Aarhus.",
    "pg_service": "Launch a bicycle courier service for pharmacies in Lyon.",
}
REFUSED = "pg_unknown_model"
DEADLINE_SECONDS = 600
LOCK_ERRORS = (
    "deadlock detected",
    "could not obtain lock",
    "lock timeout",
    "database is locked",
    "locknotavailable",
)


@pytest.fixture
def deployment(postgres_server, tmp_path, isolated_home, monkeypatch):
    app_url = create_postgres_database(postgres_server, "planexe_app")
    dagster_url = create_postgres_database(postgres_server, "planexe_dagster")
    try:
        migrate.upgrade(app_url)
        home = tmp_path / "dagster_home"
        assert install_instance_config(home, "postgres") == home / "dagster.yaml"
        storage_url = (
            make_url(dagster_url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        )
        env = {
            "DAGSTER_HOME": str(home),
            DAGSTER_POSTGRES_URL_ENV: storage_url,
            "DATABASE_URL": app_url,
            "PLANEXE_HOME": str(isolated_home),
            "PLANEXE_PLAN_SENSOR_INTERVAL": "3",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        db = DatabaseService(make_engine(app_url))
        yield {
            "db": db,
            "home": home,
            "app_url": app_url,
            "dagster_url": dagster_url,
            "log": tmp_path / "daemon.log",
        }
        db.close()
    finally:
        from resources.database import _services

        service = _services.pop(app_url, None)
        if service is not None:
            service.close()
        drop_postgres_database(postgres_server, app_url)
        drop_postgres_database(postgres_server, dagster_url)


def queue_three_plans(db):
    # 1. the CLI, without running it
    out = CliRunner().invoke(
        app, ["plan", PROMPTS["pg_cli"], "--model", "offline", "--plan-id", "pg_cli", "--queue", "--fast"]
    )
    assert out.exit_code == 0, out.output
    # 2. another program, plain SQL
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO plans (plan_id, prompt, llm_model, status, speed_vs_detail) VALUES (:p, :t, 'offline', 'pending', 'fast_but_skip_details')"
            ),
            {"p": "pg_sql", "t": PROMPTS["pg_sql"]},
        )
        conn.execute(
            text(
                "INSERT INTO plans (plan_id, prompt, llm_model, status) VALUES (:p, 'Plan a thing', 'gpt-nonexistent', 'pending')"
            ),
            {"p": REFUSED},
        )
    # 3. a service using the Python API
    create_plan(
        db, PlanRequest(prompt=PROMPTS["pg_service"], model="offline", fast=True, plan_id="pg_service")
    )


def start_daemon(log) -> subprocess.Popen:
    daemon = Path(sys.executable).with_name("dagster-daemon")
    # The instance's storage class lives in this repository: importable whether or not it is installed.
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    return subprocess.Popen(
        [str(daemon), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its code server and run workers share the group: one signal stops all
    )


def stop_daemon(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    try:  # run workers left in the group (there should be none once every run has ended)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for_plans(db, process, log_path) -> dict:
    deadline = time.monotonic() + DEADLINE_SECONDS
    ids = [*PROMPTS, REFUSED]
    while time.monotonic() < deadline:
        statuses = {p: db.get_plan(p).status for p in ids}
        if all(s in ("completed", "failed", "stopped") for s in statuses.values()):
            return statuses
        if process.poll() is not None:
            pytest.fail(f"dagster-daemon exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        time.sleep(2)
    pytest.fail(f"plans not finished after {DEADLINE_SECONDS}s: {statuses}\n{log_path.read_text()[-4000:]}")


def test_sensor_launches_three_queued_plans_through_the_daemon_on_postgresql(deployment):
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

    db = deployment["db"]
    queue_three_plans(db)
    started = time.monotonic()
    with open(deployment["log"], "wb") as log_file:
        process = start_daemon(log_file)
        try:
            statuses = wait_for_plans(db, process, deployment["log"])
        finally:
            stop_daemon(process)
    elapsed = time.monotonic() - started
    log = deployment["log"].read_text(errors="replace")
    print(f"three plans through the daemon on PostgreSQL: {elapsed:.0f}s")

    # Statuses: the three plans completed; the unusable row was refused, never run.
    assert statuses == {
        "pg_cli": "completed",
        "pg_sql": "completed",
        "pg_service": "completed",
        REFUSED: "failed",
    }, log[-4000:]
    refused = db.get_plan(REFUSED)
    assert refused.error_message.startswith("not launched:") and "gpt-nonexistent" in refused.error_message

    expected_files = {name for step in pipeline_steps() for name in step.filenames}
    with DagsterInstance.from_config(str(deployment["home"])) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.get_runs_count(RunsFilter(tags={"dagster/partition": REFUSED})) == 0
        for plan_id in PROMPTS:
            plan = db.get_plan(plan_id)
            assert plan.progress_percentage == 100 and plan.error_message is None, plan_id
            # Exactly one run per plan, launched by the sensor with the plan id as run key.
            [run] = instance.get_runs(RunsFilter(tags={"dagster/partition": plan_id}))
            failures = [
                f"{e.step_key or 'run'}: {e.dagster_event.event_type_value}: {e.user_message}"
                for e in instance.all_logs(run.run_id)
                if e.dagster_event and e.dagster_event.is_failure
            ]
            assert run.status == DagsterRunStatus.SUCCESS, failures
            assert run.tags["dagster/run_key"] == plan_id
            assert (
                run.tags[LAUNCHED_BY_TAG] == LAUNCH_SENSOR_NAME
                and run.tags["dagster/sensor_name"] == LAUNCH_SENSOR_NAME
            )
            assert plan.last_run_id == run.run_id
            events = instance.all_logs(run.run_id)
            assert not [
                e
                for e in events
                if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_FAILURE
            ]
            messages = " ".join((e.user_message or "") for e in events).lower()
            assert not [m for m in LOCK_ERRORS if m in messages], plan_id

            # Files and rows agree; the usage totals are the sum of the recorded attempts.
            rows = {r.filename: r for r in db.get_plan_content(plan_id)}
            assert expected_files <= set(rows)
            run_dir = Path(plan.output_dir)
            for name, row in rows.items():
                assert (run_dir / name).read_bytes() == row.content.encode("utf-8"), name
                assert row.content_hash == sha256_text(row.content) and row.run_id == run.run_id
            interactions = db.get_plan_interactions(plan_id)
            assert interactions and all(i.status == "completed" for i in interactions)
            metrics = db.get_plan_metrics(plan_id)
            assert metrics.total_llm_calls == len(interactions)
            assert metrics.total_tokens_used == sum(i.total_tokens or 0 for i in interactions)

    # No duplicate rows anywhere, no lock errors in the daemon or on the server.
    with db.engine.connect() as conn:
        for table, key in [
            ("plan_content", "plan_id, filename"),
            ("plan_files", "plan_id, filename"),
            ("plan_metrics", "plan_id"),
            ("plans", "plan_id"),
        ]:
            dupes = conn.execute(
                text(f"SELECT {key}, count(*) FROM {table} GROUP BY {key} HAVING count(*) > 1")
            ).all()
            assert dupes == [], (table, dupes)
    assert not [m for m in LOCK_ERRORS if m in log.lower()], log[-4000:]
    server = create_engine(deployment["app_url"])
    with server.connect() as conn:
        names = [make_url(deployment["app_url"]).database, make_url(deployment["dagster_url"]).database]
        deadlocks = conn.execute(
            text("SELECT coalesce(sum(deadlocks), 0) FROM pg_stat_database WHERE datname = ANY(:names)"),
            {"names": names},
        ).scalar()
    server.dispose()
    assert deadlocks == 0
