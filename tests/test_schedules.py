"""The backfill schedule and the LLM retry policy, on ephemeral Dagster instances.

The schedule's choice of plans and steps is checked against real (short) failed runs; one slow test
runs a whole plan that fails late and then executes the schedule's request to completion.
"""

from datetime import UTC, datetime

import pytest
from dagster import (
    AssetKey,
    Backoff,
    DagsterEventType,
    DagsterRunStatus,
    Jitter,
    RunRequest,
    SkipReason,
    build_schedule_context,
)
from dagster._core.test_utils import create_run_for_test, instance_for_test

import planexe_assets.steps as steps_pkg
from planexe_assets.core import STEP_BY_NAME, FailureKind, PipelineStopRequested, StepError, step_file
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.dagster_defs.runs import LAUNCHED_BY_TAG
from planexe_assets.dagster_defs.schedules import (
    BACKFILL_SCHEDULE_NAME,
    MAX_SCHEDULED_ATTEMPTS,
    backfill_requests,
    plan_backfill_schedule,
)
from planexe_assets.dagster_defs.step_policies import llm_retry_policy
from planexe_assets.definitions import defs
from planexe_assets.lifecycle.plan_sync import revive_plan_for_retry, steps_to_redo
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import missing_steps_with_downstream, pipeline_steps
from resources.config import ConfigError

PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."
EARLY_STEPS = ["start_time", "setup", "identify_purpose"]
TICK = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)


@pytest.fixture
def persistent_instance():
    """Schedule contexts need an instance they can re-open by reference: a temporary SQLite one."""
    with instance_for_test() as inst:
        yield inst


@pytest.fixture
def registry():
    steps_pkg.implemented_steps()  # import every stage module before patching the registry
    return steps_pkg._REGISTRY


def new_plan(db, plan_id, status=None, last_run_id=None):
    create_plan(db, PlanRequest(prompt=PROMPT, model="offline", plan_id=plan_id))
    changes = {k: v for k, v in {"status": status, "last_run_id": last_run_id}.items() if v is not None}
    if changes:
        db.update_plan(plan_id, changes)


def partition_run(instance, plan_id, status, **tags):
    return create_run_for_test(
        instance, job_name="full_plan_job", status=status, tags={"dagster/partition": plan_id, **tags}
    )


def tick(instance, resources):
    context = build_schedule_context(instance=instance, scheduled_execution_time=TICK, resources=resources)
    return plan_backfill_schedule(context)


def selection(request: RunRequest) -> list[str]:
    return [key.to_user_string() for key in request.asset_selection]


def test_schedule_picks_failed_and_stranded_plans_and_only_their_broken_steps(
    app_db, resources, persistent_instance, registry, monkeypatch
):
    instance = persistent_instance
    real = registry["identify_purpose"]

    def broken(ctx, inputs):
        raise StepError("identify_purpose: every model failed (injected outage)", kind=FailureKind.TRANSIENT)

    def rejected(ctx, inputs):
        raise StepError("identify_purpose: HTTP 400: the prompt is longer than the context window")

    # 1. failed in its first run: everything not stored is redone, nothing that is.
    new_plan(app_db, "failed_early")
    monkeypatch.setitem(registry, "identify_purpose", broken)
    assert not run_plan_in_process("failed_early", instance, steps=EARLY_STEPS, log_level="ERROR").success

    # 2. a re-run of a stored step failed: that step is redone although its old outputs exist.
    new_plan(app_db, "rerun_failed")
    monkeypatch.setitem(registry, "identify_purpose", real)
    assert run_plan_in_process("rerun_failed", instance, steps=EARLY_STEPS, log_level="ERROR").success
    monkeypatch.setitem(registry, "identify_purpose", broken)
    assert not run_plan_in_process(
        "rerun_failed", instance, steps=["identify_purpose"], log_level="ERROR"
    ).success
    assert app_db.get_plan("rerun_failed").status == "failed"

    # Left alone: failed for good (a permanent error; resuming needs a change first).
    new_plan(app_db, "permanent")
    monkeypatch.setitem(registry, "identify_purpose", rejected)
    assert not run_plan_in_process("permanent", instance, steps=EARLY_STEPS, log_level="ERROR").success
    row = app_db.get_plan("permanent")
    assert (row.status, row.failed_step, row.recoverable) == ("failed", "identify_purpose", False)
    assert "context window" in row.failure_reason

    # 3. stranded: the row says running, but the run that claimed it has ended.
    ended = partition_run(instance, "stranded", DagsterRunStatus.FAILURE)
    new_plan(app_db, "stranded", status="running", last_run_id=ended.run_id)

    # Left alone:
    new_plan(app_db, "queued")  # pending, unclaimed: the launch sensor's job
    new_plan(app_db, "stopped", status="stopped")
    partition_run(instance, "stopped", DagsterRunStatus.CANCELED)
    new_plan(app_db, "imported", status="failed")  # never run by Dagster
    new_plan(app_db, "in_progress", status="failed")
    partition_run(instance, "in_progress", DagsterRunStatus.STARTED)
    new_plan(app_db, "luigi_owned", status="running", last_run_id="luigi-0123abcd")
    partition_run(instance, "luigi_owned", DagsterRunStatus.SUCCESS)
    new_plan(app_db, "gave_up", status="failed")
    for _ in range(MAX_SCHEDULED_ATTEMPTS):
        partition_run(
            instance, "gave_up", DagsterRunStatus.FAILURE, **{LAUNCHED_BY_TAG: BACKFILL_SCHEDULE_NAME}
        )

    requests = tick(instance, resources)
    assert isinstance(requests, list)
    by_plan = {r.partition_key: r for r in requests}
    assert set(by_plan) == {"failed_early", "rerun_failed", "stranded"}
    for plan_id, request in by_plan.items():
        assert request.run_key == f"{plan_id}@20260301T140000"
        assert request.tags == {
            "planexe/plan_id": plan_id,
            LAUNCHED_BY_TAG: BACKFILL_SCHEDULE_NAME,
            "planexe/prompt": app_db.get_plan(plan_id).prompt,
        }

    early = selection(by_plan["failed_early"])
    assert early == missing_steps_with_downstream(app_db, "failed_early")
    # Every step after setup is redone, in table order (the 2026 screening first, then the gate ...).
    assert early[0] == "screen_planning_prompt" and {"redline_gate", "identify_purpose"} <= set(early)
    assert "start_time" not in early and "setup" not in early

    rerun = selection(by_plan["rerun_failed"])
    assert "identify_purpose" in rerun and "identify_purpose" not in missing_steps_with_downstream(
        app_db, "rerun_failed"
    )
    assert "setup" not in rerun and "start_time" not in rerun
    assert rerun == steps_to_redo(app_db, "rerun_failed", ["identify_purpose"])

    assert selection(by_plan["stranded"]) == [s.name for s in pipeline_steps()]


def test_nothing_to_backfill_is_a_skip_that_names_the_plans_left_alone(
    app_db, resources, persistent_instance
):
    new_plan(app_db, "imported", status="failed")
    result = tick(persistent_instance, resources)
    assert isinstance(result, SkipReason)
    assert "imported (never run by Dagster)" in result.skip_message


def test_steps_to_redo_ignores_unknown_names_and_keeps_table_order(app_db):
    new_plan(app_db, "p")
    everything = [s.name for s in pipeline_steps()]
    assert steps_to_redo(app_db, "p", ["no_such_step"]) == everything


# -- retry policy and pool ------------------------------------------------------------------------------
def test_llm_assets_have_the_pool_and_an_exponential_retry_policy():
    for step in pipeline_steps():
        op = defs.get_assets_def(step.name).op
        if step.uses_llm:
            assert op.pool == "llm", step.name
            assert (
                op.retry_policy.backoff == Backoff.EXPONENTIAL and op.retry_policy.jitter == Jitter.PLUS_MINUS
            )
            assert op.retry_policy.max_retries == 2
        else:
            assert op.pool is None and op.retry_policy is None, step.name


def test_retry_policy_settings(monkeypatch):
    monkeypatch.setenv("PLANEXE_LLM_STEP_RETRIES", "4")
    monkeypatch.setenv("PLANEXE_LLM_STEP_RETRY_DELAY", "12.5")
    policy = llm_retry_policy()
    assert (policy.max_retries, policy.delay) == (4, 12.5)
    monkeypatch.setenv("PLANEXE_LLM_STEP_RETRIES", "0")
    assert llm_retry_policy() is None
    for name, bad in [
        ("PLANEXE_LLM_STEP_RETRIES", "two"),
        ("PLANEXE_LLM_STEP_RETRIES", "11"),
        ("PLANEXE_LLM_STEP_RETRY_DELAY", "-1"),
    ]:
        monkeypatch.setenv("PLANEXE_LLM_STEP_RETRIES", "2")
        monkeypatch.setenv("PLANEXE_LLM_STEP_RETRY_DELAY", "1")
        monkeypatch.setenv(name, bad)
        with pytest.raises(ConfigError, match=name):
            llm_retry_policy()


def _retries(instance, run_id):
    return [
        r.dagster_event.step_key
        for r in instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    ]


@pytest.fixture
def plan_statuses():
    """Every status written to a plans row, in order, per plan (an ORM listener sees each UPDATE)."""
    from sqlalchemy import event

    from resources.models import Plan

    seen: dict[str, list[str]] = {}

    def record(_mapper, _connection, target):
        seen.setdefault(target.plan_id, []).append(target.status)

    event.listen(Plan, "after_update", record)
    yield seen
    event.remove(Plan, "after_update", record)


def test_a_flaky_llm_step_is_retried_and_the_plan_is_never_failed(
    app_db, instance, registry, monkeypatch, plan_statuses
):
    real = registry["identify_purpose"]
    calls = []

    def flaky(ctx, inputs):
        calls.append(1)
        if len(calls) == 1:
            raise StepError(
                "identify_purpose: every model failed (injected, once)", kind=FailureKind.TRANSIENT
            )
        return real(ctx, inputs)

    monkeypatch.setitem(registry, "identify_purpose", flaky)
    new_plan(app_db, "flaky")
    outcome = run_plan_in_process("flaky", instance, steps=EARLY_STEPS, log_level="ERROR")
    assert outcome.success and len(calls) == 2
    assert _retries(instance, outcome.run_id) == ["identify_purpose"]
    # Not even for a moment: the failed attempt was followed by a retry, so no update said "failed".
    assert plan_statuses["flaky"] and "failed" not in plan_statuses["flaky"], plan_statuses["flaky"]
    plan = app_db.get_plan("flaky")
    assert plan.status == "running" and plan.error_message is None  # 3 steps done, no failure left
    assert plan.failure_reason is None and plan.recoverable is None
    assert app_db.get_plan_content_by_filename("flaky", step_file("identify_purpose", "markdown")) is not None


def test_only_the_last_attempt_of_a_failing_step_fails_the_plan(
    app_db, instance, registry, monkeypatch, plan_statuses
):
    calls = []

    def down(ctx, inputs):
        calls.append(1)
        raise StepError(
            "identify_purpose: every model failed (connection refused)", kind=FailureKind.TRANSIENT
        )

    monkeypatch.setitem(registry, "identify_purpose", down)
    new_plan(app_db, "down")
    outcome = run_plan_in_process("down", instance, steps=EARLY_STEPS, log_level="ERROR")
    policy = llm_retry_policy()
    assert not outcome.success and len(calls) == 1 + policy.max_retries
    assert _retries(instance, outcome.run_id) == ["identify_purpose"] * policy.max_retries
    statuses = plan_statuses["down"]
    assert statuses.count("failed") >= 1 and "failed" not in statuses[: statuses.index("failed")]
    first_failed = statuses.index("failed")
    assert set(statuses[first_failed:]) == {"failed"}, statuses  # never running again in this run
    plan = app_db.get_plan("down")
    assert (plan.status, plan.failed_step, plan.recoverable) == ("failed", "identify_purpose", True)
    assert plan.failure_reason.startswith("StepError: identify_purpose: every model failed")


def test_a_stop_request_is_never_retried(app_db, instance, registry, monkeypatch):
    calls = []

    def stopping(ctx, inputs):
        calls.append(1)
        raise PipelineStopRequested("stop flag set by the user")

    monkeypatch.setitem(registry, "identify_purpose", stopping)
    new_plan(app_db, "halted")
    outcome = run_plan_in_process("halted", instance, steps=EARLY_STEPS, log_level="ERROR")
    assert not outcome.success and len(calls) == 1
    assert _retries(instance, outcome.run_id) == []
    assert app_db.get_plan("halted").status == "stopped"


def test_revive_only_undoes_the_retried_steps_own_failure(app_db):
    new_plan(app_db, "r", status="failed", last_run_id="run-1")
    app_db.update_plan("r", {"error_message": "plan_type: StepError: boom"})
    assert not revive_plan_for_retry(app_db, "r", "identify_purpose", "run-1")  # another step's failure
    assert not revive_plan_for_retry(app_db, "r", "plan_type", "run-2")  # another run's failure
    assert app_db.get_plan("r").status == "failed"
    assert revive_plan_for_retry(app_db, "r", "plan_type", "run-1")
    plan = app_db.get_plan("r")
    assert plan.status == "running" and plan.error_message is None


# -- the whole loop, once -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_backfill_request_finishes_a_plan_that_failed_late(
    app_db, resources, instance, registry, monkeypatch
):
    real = registry["premortem"]

    def broken(ctx, inputs):
        raise StepError("premortem: every model failed (injected outage)", kind=FailureKind.TRANSIENT)

    monkeypatch.setitem(registry, "premortem", broken)
    new_plan(app_db, "late")
    first = run_plan_in_process("late", instance, log_level="ERROR")
    assert not first.success and first.failed_steps == ["premortem"]
    stored_before = {r.filename: r.content_hash for r in app_db.get_plan_content("late")}

    # What the schedule's tick computes (the tick itself needs a persistent instance; this one is
    # in memory to keep the whole-plan run short).
    [request] = backfill_requests(instance, app_db, TICK)
    # The premortem, and what waits for it: the self audit (2026) and the report.
    assert selection(request) == ["premortem", "self_audit", "report"]

    monkeypatch.setitem(registry, "premortem", real)
    second = run_plan_in_process(
        "late", instance, steps=selection(request), tags=dict(request.tags), log_level="ERROR"
    )
    assert second.success
    materialized = {
        r.dagster_event.asset_key
        for r in instance.all_logs(second.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert materialized == {AssetKey("premortem"), AssetKey("self_audit"), AssetKey("report")}
    plan = app_db.get_plan("late")
    assert plan.status == "completed" and plan.progress_percentage == 100 and plan.error_message is None
    stored_after = {r.filename: r.content_hash for r in app_db.get_plan_content("late")}
    redone = {name for step in ("premortem", "self_audit", "report") for name in STEP_BY_NAME[step].filenames}
    assert redone <= set(stored_after) and not redone & set(stored_before)
    assert {n: stored_after[n] for n in stored_before} == stored_before, (
        "steps outside the selection were rewritten"
    )
    assert isinstance(backfill_requests(instance, app_db, TICK), SkipReason)
