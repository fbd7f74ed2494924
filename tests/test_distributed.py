"""Past one machine, for real: ``full_plan_celery_job`` on two Celery workers.

The deployment is production-shaped and made of separate processes (``bench/celery_cluster.py``,
configured by ``planexe_assets/deploy/``): the code location as its own gRPC server (``dagster code-server start``),
``dagster-daemon`` against PostgreSQL storage (``planexe_assets/deploy/dagster.postgres.yaml``), RabbitMQ as
broker, and two ``dagster-celery worker start`` processes, each with its own ``PLANEXE_HOME`` (no
shared run directories) and the same application database on PostgreSQL. Three plans are queued
as ``pending`` rows; the plan sensor launches them with ``PLANEXE_PLAN_EXECUTOR=celery`` against the
local latency server (``bench/latency_server.py``, the offline faker's short lists).

While the plans run, one worker is killed with SIGKILL (it and its pool processes, as a lost
machine) in the middle of a step. Then: every plan completes (the killed worker's steps go back to
the broker, since messages are acknowledged late, and the other worker runs them; a plan that
failed instead is completed by ``planexe resume``), the steps ran on both workers (each
materialization records its worker: host, pid, ``PLANEXE_HOME``), the rows are complete and
unduplicated, and every asset check passed.

Needs PostgreSQL (``PLANEXE_TEST_POSTGRES_URL``) and RabbitMQ (``PLANEXE_TEST_CELERY_BROKER_URL``,
default ``pyamqp://guest:guest@127.0.0.1:5672//``); ``.ci/run`` starts both. Skipped, saying which
is missing, without them.
"""

import re
import time
from collections import Counter, defaultdict

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from bench.celery_cluster import CeleryDeployment, broker_problem, purge_broker_queue
from bench.environment import BENCH_MODEL, latency_server, write_llm_config
from planexe_assets.dagster_defs.celery_job import CELERY_JOB_NAME
from planexe_assets.dagster_defs.checks import FILES_CHECK, JSON_CHECK, VERDICTS_CHECK, step_has_json
from planexe_assets.dagster_defs.runs import unfinished_runs
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import pipeline_steps
from planexe_assets.steps.constraint_matrix import CONSTRAINT_CHECK_STEPS
from resources import migrate
from resources.database import DatabaseService, make_engine, sha256_text
from tests.conftest import create_postgres_database, drop_postgres_database

pytestmark = [pytest.mark.distributed, pytest.mark.postgres, pytest.mark.slow]

PLANS = {
    "celery_1": "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats.",
    "celery_2": "Build a community solar co-operative for 300 households in Aarhus.",
    "celery_3": "Launch a bicycle courier service for pharmacies in Lyon.",
}
DEADLINE_SECONDS = 900
# Each LLM call waits this long at the latency server: steps overlap, so one is in flight on the
# worker when it is killed.
LATENCY = "fixed:0.5"


@pytest.fixture
def broker():
    problem = broker_problem()
    if problem is not None:
        pytest.skip(
            f"the distributed test needs RabbitMQ (PLANEXE_TEST_CELERY_BROKER_URL; .ci/run starts it): {problem}"
        )
    purge_broker_queue()


@pytest.fixture
def deployment(postgres_server, broker, tmp_path, monkeypatch):
    app_url = create_postgres_database(postgres_server, "planexe_cel_app")
    dagster_url = create_postgres_database(postgres_server, "planexe_cel_dagster")
    cluster = None
    db = None
    try:
        migrate.upgrade(app_url)
        storage_url = (
            make_url(dagster_url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        )
        with latency_server(LATENCY, 1.0, shape="faker") as server:
            llm_config = write_llm_config(tmp_path / "llm_config.json", server.base_url, in_flight=16)
            cluster = CeleryDeployment.prepare(
                tmp_path / "deployment",
                app_db_url=app_url,
                dagster_postgres_url=storage_url,
                llm_config=llm_config,
                pool_size=1,
            )
            for key in ("DATABASE_URL", "PLANEXE_DAGSTER_POSTGRES_URL", "PLANEXE_LLM_CONFIG"):
                monkeypatch.setenv(key, cluster.env[key])
            monkeypatch.setenv("DAGSTER_HOME", str(cluster.dagster_home("control")))
            monkeypatch.setenv("PLANEXE_HOME", str(tmp_path / "client"))
            db = DatabaseService(make_engine(app_url))
            yield {"cluster": cluster, "db": db, "server": server, "tmp": tmp_path}
    finally:
        if cluster is not None:
            cluster.stop()
            purge_broker_queue()
        if db is not None:
            db.close()
        from resources.database import _services

        service = _services.pop(app_url, None)
        if service is not None:
            service.close()
        drop_postgres_database(postgres_server, app_url)
        drop_postgres_database(postgres_server, dagster_url)


def _logs(cluster) -> str:
    return "\n\n".join(f"== {p.name} ==\n{p.log_tail(2500)}" for p in cluster.processes)


TASK_LINE = re.compile(r"Task execute_plan\[([0-9a-f-]+)\] (received|succeeded|failed|retry)")


def _tasks(worker) -> dict[str, str]:
    """Celery task id -> its last state in the worker's log (received, succeeded, failed)."""
    states: dict[str, str] = {}
    for task_id, state in TASK_LINE.findall(worker.log_tail(10_000_000)):
        states[task_id] = state
    return states


def _plan_runs(instance, plan_id):
    from dagster import RunsFilter

    return instance.get_runs(RunsFilter(tags={"dagster/partition": plan_id}))


def _worker_of_materializations(instance, run_ids) -> Counter:
    """PLANEXE_HOME of the process that wrote each materialization (the ``worker`` metadata)."""
    from dagster import DagsterEventType

    homes: Counter = Counter()
    for run_id in run_ids:
        for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            worker = record.dagster_event.step_materialization_data.materialization.metadata["worker"].value
            homes[worker.split(":", 2)[2]] += 1
    return homes


def _latest_check_results(instance, plan_id) -> dict:
    """(asset, check) -> passed, from the plan's runs, the latest evaluation of each check winning."""
    from dagster import DagsterEventType

    results: dict = {}
    runs = sorted(
        _plan_runs(instance, plan_id), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp
    )
    for run in runs:
        for record in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
            data = record.dagster_event.event_specific_data
            results[(data.asset_key.path[-1], data.check_name)] = data.passed
    return results


def test_three_plans_on_two_celery_workers_survive_a_killed_worker(deployment):
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

    cluster, db = deployment["cluster"], deployment["db"]
    started = time.monotonic()
    cluster.start_code_server()
    worker_a = cluster.start_worker("worker_a", concurrency=2)
    worker_b = cluster.start_worker("worker_b", concurrency=2)
    cluster.wait_for_workers([worker_a, worker_b])
    cluster.start_daemon()
    for plan_id, prompt in PLANS.items():
        create_plan(db, PlanRequest(prompt=prompt, model=BENCH_MODEL, fast=True, plan_id=plan_id))

    instance = DagsterInstance.get()
    killed_tasks: set[str] = set()
    deadline = time.monotonic() + DEADLINE_SECONDS
    # Kill worker A once both workers have finished some steps and A is in the middle of one (its
    # log says it received a step's task and has not finished it).
    while not killed_tasks:
        assert time.monotonic() < deadline, "worker A was never caught mid-step\n" + _logs(cluster)
        cluster.check_alive()
        a, b = _tasks(worker_a), _tasks(worker_b)
        done_a = sum(state == "succeeded" for state in a.values())
        done_b = sum(state == "succeeded" for state in b.values())
        in_flight = {task for task, state in a.items() if state == "received"}
        if done_a >= 5 and done_b >= 5 and in_flight:
            worker_a.kill_hard()
            killed_tasks = in_flight
        time.sleep(0.2)
    killed_at = time.monotonic() - started

    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        cluster.check_alive()
        statuses = {p: db.get_plan(p).status for p in PLANS}
        # The plan row says completed with its last step; the run ends after that step's checks.
        ended = all(s in ("completed", "failed", "stopped") for s in statuses.values())
        if ended and not any(unfinished_runs(instance, p) for p in PLANS):
            break
        time.sleep(1)
    else:
        pytest.fail(f"plans not finished after {DEADLINE_SECONDS}s: {statuses}\n{_logs(cluster)}")
    finished_at = time.monotonic() - started

    # A plan the kill made fail is completed by `planexe resume` (on this machine, threads executor).
    resumed = [p for p, s in statuses.items() if s != "completed"]
    for plan_id in resumed:
        from planexe_assets.cli.app import app

        out = CliRunner().invoke(app, ["resume", plan_id, "--quiet"])
        assert out.exit_code == 0, out.output
    print(
        f"\nthree plans on two Celery workers: worker A killed at {killed_at:.0f}s mid-step "
        f"({len(killed_tasks)} step task(s) in flight), all ended at {finished_at:.0f}s; "
        f"statuses {statuses}; resumed {resumed or 'none'}"
    )
    cluster.stop()

    expected_files = {name for step in pipeline_steps() for name in step.filenames}
    expected_checks = (
        {(s.name, FILES_CHECK) for s in pipeline_steps()}
        | {(s.name, JSON_CHECK) for s in pipeline_steps() if step_has_json(s)}
        | {(name, VERDICTS_CHECK) for name in CONSTRAINT_CHECK_STEPS}
    )
    all_homes: Counter = Counter()
    for plan_id in PLANS:
        plan = db.get_plan(plan_id)
        assert plan.status == "completed" and plan.progress_percentage == 100, (
            plan_id,
            plan.status,
            plan.error_message,
        )
        runs = _plan_runs(instance, plan_id)
        launched = [r for r in runs if r.job_name == CELERY_JOB_NAME]
        assert len(launched) == 1, [(r.job_name, r.status) for r in runs]  # one run from the sensor
        assert launched[0].tags["dagster/run_key"] == plan_id
        if plan_id not in resumed:
            assert launched[0].status == DagsterRunStatus.SUCCESS
        all_homes += _worker_of_materializations(instance, [r.run_id for r in runs])

        # Every output file has exactly one row, whose content is its sha256.
        rows = db.get_plan_content(plan_id)
        names = [r.filename for r in rows]
        assert len(names) == len(set(names))
        assert expected_files <= set(names), sorted(expected_files - set(names))
        assert all(r.content_hash == sha256_text(r.content) for r in rows)
        # Every check passed, where it last ran.
        checks = _latest_check_results(instance, plan_id)
        assert set(checks) == expected_checks, sorted(expected_checks ^ set(checks))
        # A constraint verdict check warns about the plan's content (a violated constraint), not its data.
        assert [k for k, passed in checks.items() if not passed and k[1] != VERDICTS_CHECK] == []

    # The steps ran on both workers (and, after a resume, on this process).
    homes = {str(cluster.planexe_home("worker_a")), str(cluster.planexe_home("worker_b"))}
    assert homes <= set(all_homes), all_homes
    # Nothing lost: the broker gave each step task worker A died with to worker B, which finished it
    # (same Celery task id), unless its plan failed and `planexe resume` redid it.
    redelivered = {task: state for task, state in _tasks(worker_b).items() if task in killed_tasks}
    print(f"redelivered to worker B: {redelivered}")
    if not resumed:
        assert redelivered == dict.fromkeys(killed_tasks, "succeeded"), (killed_tasks, redelivered)
    with db.engine.connect() as conn:
        for table, key in [
            ("plan_content", "plan_id, filename"),
            ("plan_files", "plan_id, filename"),
            ("plans", "plan_id"),
        ]:
            dupes = conn.execute(
                text(f"SELECT {key}, count(*) FROM {table} GROUP BY {key} HAVING count(*) > 1")
            ).all()
            assert dupes == [], (table, dupes)
    # Dagster ran each step of a run to success once, or twice when it was one of the killed tasks:
    # Celery acknowledges late, so a step that worker A finished just before SIGKILL but had not yet
    # acknowledged is delivered again and re-run (at least once; its writes are upserts, so the rows
    # above stay single).
    successes: dict[str, Counter] = defaultdict(Counter)
    for plan_id in PLANS:
        for run in _plan_runs(instance, plan_id):
            for record in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_SUCCESS):
                successes[run.run_id][record.step_key] += 1
    counts = [n for counter in successes.values() for n in counter.values()]
    assert all(1 <= n <= 2 for n in counts), successes
    assert sum(n - 1 for n in counts) <= len(killed_tasks), (killed_tasks, successes)
