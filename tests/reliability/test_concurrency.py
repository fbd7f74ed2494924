"""Eight plans at once against one application database, on SQLite and on PostgreSQL.

Eight threads each run ``run_plan_in_process`` for their own plan, released together by a barrier; every plan's LLM calls go to the same stub model (and so share one executor,
its in-flight limit and its recorder). Each plan starts from the same finished upstream steps and runs
the last stretch of the pipeline (executive summary, schedule, and the fan-out steps Q&A and premortem,
then the report); two of the plans fail on purpose. Afterwards: no "database is locked" anywhere, no lost ``llm_interactions`` or
``plan_content`` row, and every plan's status is the one its run earned.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from dagster import DagsterEventType, DagsterInstance

import planexe_assets.steps as steps_pkg
from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, STEP_BY_NAME, StepError, step_file
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import missing_steps_with_downstream, pipeline_steps
from resources.config import runs_dir
from resources.database import get_database_service
from resources.llm_access import llm_access
from resources.plan_store import PlanStore
from tests.reliability.conftest import PROMPT
from tests.reliability.support import OfflineModel, assert_files_equal_rows, seed_steps, steps_before

PLANS = [f"crowd_{i}" for i in range(8)]
FAILING = {"crowd_2", "crowd_5"}
FAILING_STEP = "executive_summary"


def _downstream_of(name: str) -> set[str]:
    out = {name}
    for step in pipeline_steps():
        if any(d in out for d in step.deps):
            out.add(step.name)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_eight_plans_at_once(
    backend, request, monkeypatch, stub, stub_config, offline_template, isolated_home, caplog
):
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    monkeypatch.setenv("DATABASE_URL", url)
    db = get_database_service(url)
    stub_config(["m1"])
    stub.script("m1", then=OfflineModel(latency=lambda body: 0.01))

    seeded = steps_before(FAILING_STEP)
    store = PlanStore(db, runs_dir())
    for plan_id in PLANS:
        create_plan(db, PlanRequest(prompt=f"{PROMPT} ({plan_id})", model="auto", plan_id=plan_id))
        seed_steps(store, plan_id, offline_template, seeded, run_id="seed")
    todo = missing_steps_with_downstream(db, PLANS[0])
    assert todo[0] == FAILING_STEP and {"questions_and_answers", "premortem", "report"} <= set(todo)

    real = steps_pkg._REGISTRY[FAILING_STEP]

    def sometimes_failing(ctx, inputs):
        if ctx.plan_id in FAILING:
            raise StepError(f"injected failure for {ctx.plan_id}")
        return real(ctx, inputs)

    monkeypatch.setitem(steps_pkg._REGISTRY, FAILING_STEP, sometimes_failing)
    # One Dagster instance per thread: Dagster's own storage is not what this test is about (its
    # in-memory instance is not safe for concurrent runs, and a persistent one re-runs
    # logging.config.dictConfig for every run, which can deadlock threads of one process). Plans are
    # run by separate processes in production; here they share the application database only.
    instances = {plan_id: DagsterInstance.ephemeral() for plan_id in PLANS}
    barrier = threading.Barrier(len(PLANS))

    def run(plan_id: str):
        barrier.wait()
        return run_plan_in_process(plan_id, instances[plan_id], steps=todo, log_level="CRITICAL")

    caplog.set_level(logging.WARNING)
    with ThreadPoolExecutor(max_workers=len(PLANS)) as pool:
        outcomes = dict(zip(PLANS, pool.map(run, PLANS), strict=True))

    # No "database is locked" (or any other database error) anywhere: logs, recorder, step failures.
    assert not [r for r in caplog.records if "locked" in r.getMessage().lower()]
    recorder = llm_access(None, db).executor("auto").recorder
    assert recorder.failures == 0, "llm_interactions writes were lost"
    for plan_id, outcome in outcomes.items():
        for event in instances[plan_id].all_logs(outcome.run_id, of_type=DagsterEventType.STEP_FAILURE):
            text = event.dagster_event.event_specific_data.error.to_string()
            assert "locked" not in text.lower() and "DatabaseUnavailable" not in text, text[:2000]

    # No lost rows: one llm_interactions row per request the stub answered, each one completed, and
    # the per-plan roll-up agrees with the rows.
    rows = {plan_id: db.get_plan_interactions(plan_id) for plan_id in PLANS}
    assert sum(len(r) for r in rows.values()) == len(stub.seen("m1"))
    for plan_id, interactions in rows.items():
        assert interactions and all(i.status == "completed" for i in interactions), plan_id
        assert db.get_plan_metrics(plan_id).total_llm_calls == len(interactions), plan_id

    # Statuses as earned; each plan's files equal its rows; the failing plans lack exactly the
    # failed step and what depends on it.
    blocked = _downstream_of(FAILING_STEP)
    for plan_id, outcome in outcomes.items():
        plan = db.get_plan(plan_id)
        stored = assert_files_equal_rows(db, plan_id, isolated_home / "runs" / plan_id)
        assert plan.last_run_id == outcome.run_id
        if plan_id in FAILING:
            assert not outcome.success and outcome.failed_steps == [FAILING_STEP], (
                plan_id,
                outcome.failed_steps,
            )
            assert plan.status == "failed" and plan.error_message.startswith(
                f"{FAILING_STEP}: StepError: injected failure for {plan_id}"
            )
            assert PIPELINE_COMPLETE_FILENAME not in stored
            for name in todo:
                present = all(f in stored for f in STEP_BY_NAME[name].filenames)
                assert present == (name not in blocked), (plan_id, name)
        else:
            assert outcome.success, (plan_id, outcome.failed_steps)
            assert (
                plan.status == "completed" and plan.progress_percentage == 100 and plan.error_message is None
            )
            assert PIPELINE_COMPLETE_FILENAME in stored
            assert {stored[f].run_id for n in todo for f in STEP_BY_NAME[n].filenames} == {outcome.run_id}
        assert {stored[f].run_id for n in seeded for f in STEP_BY_NAME[n].filenames} == {"seed"}
        # Each plan's report is its own: no cross-talk between the concurrent runs.
        if plan_id not in FAILING:
            assert all(
                other not in stored[step_file("report")].content for other in PLANS if other != plan_id
            )
