"""The plan sensors on an ephemeral Dagster instance: queued plans become run requests (once, with
run_key = plan id), and ended runs bring ``plans``/``plan_metrics``/``llm_interactions`` in line.

Runs here materialize two or three early steps of a plan, not whole plans: fast.
"""

from datetime import timedelta

import pytest
from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    SensorResult,
    SkipReason,
    build_run_status_sensor_context,
    build_sensor_context,
)
from dagster._core.test_utils import create_run_for_test, instance_for_test
from sqlalchemy import text
from typer.testing import CliRunner

import planexe_assets.steps as steps_pkg
from planexe_assets.cli.app import app
from planexe_assets.core import StepError
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.dagster_defs.runs import LAUNCHED_BY_TAG
from planexe_assets.dagster_defs.sensors import (
    LAUNCH_SENSOR_NAME,
    plan_launch_sensor,
    plan_run_canceled_sensor,
    plan_run_failure_sensor,
    plan_run_success_sensor,
    sensor_interval_seconds,
)
from planexe_assets.lifecycle.plan_sync import RUN_CANCELED, RunEnd, reconcile_after_run
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from resources.config import ConfigError
from resources.models import utcnow

PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."
EARLY_STEPS = ["start_time", "setup", "identify_purpose"]


def insert_plan_sql(db, plan_id, prompt=PROMPT, model="offline", output_dir=None, mode=None):
    """What another service does: a bare INSERT, no Python validation."""
    columns = {"plan_id": plan_id, "prompt": prompt, "llm_model": model, "status": "pending"}
    if output_dir is not None:
        columns["output_dir"] = output_dir
    if mode is not None:
        columns["speed_vs_detail"] = mode
    names = ", ".join(columns)
    values = ", ".join(f":{k}" for k in columns)
    with db.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO plans ({names}) VALUES ({values})"), columns)


def evaluate_launch(instance, resources) -> SensorResult:
    result = plan_launch_sensor(build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, SensorResult)
    return result


def assert_skipped(result) -> None:
    """A tick that launches nothing: a SensorResult with a skip reason and no requests."""
    assert isinstance(result, SensorResult) and result.run_requests == []
    assert result.skip_reason is not None and result.dynamic_partitions_requests == []


def broken_step(name):
    def broken(ctx, inputs):
        raise StepError(f"{name}: every model failed (injected outage)")

    return broken


# -- the launch sensor ------------------------------------------------------------------------------------
def test_queued_plans_from_cli_and_sql_are_partitioned_and_requested(
    app_db, resources, instance, isolated_home
):
    queued = CliRunner().invoke(
        app, ["plan", PROMPT, "--model", "offline", "--plan-id", "from_cli", "--queue"]
    )
    assert queued.exit_code == 0, queued.output
    assert "queued" in queued.output
    cli_plan = app_db.get_plan("from_cli")
    assert cli_plan.status == "pending" and cli_plan.last_run_id is None
    assert not (isolated_home / "dagster").exists(), "--queue must not start or touch Dagster"

    insert_plan_sql(app_db, "from_sql")  # no output_dir: the sensor fills it in
    create_plan(
        app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="claimed", claimed_by_run="run-123")
    )
    app_db.create_plan({"plan_id": "done_already", "prompt": PROMPT, "status": "completed"})

    result = evaluate_launch(instance, resources)
    requests = {r.partition_key: r for r in result.run_requests}
    assert set(requests) == {"from_cli", "from_sql"}
    for plan_id, request in requests.items():
        assert request.run_key == plan_id
        assert (
            request.tags[LAUNCHED_BY_TAG] == LAUNCH_SENSOR_NAME and request.tags["planexe/plan_id"] == plan_id
        )
    [partitions] = result.dynamic_partitions_requests
    assert partitions.partitions_def_name == "plans"
    assert sorted(partitions.partition_keys) == ["from_cli", "from_sql"]
    assert app_db.get_plan("from_sql").output_dir == str(isolated_home / "runs" / "from_sql")
    assert app_db.get_plan("claimed").status == "pending", "a claimed plan is left to its claimer"

    # Next tick, before Dagster has launched anything: the same run keys (Dagster drops repeats), and
    # partitions that exist by now are not requested again.
    instance.add_dynamic_partitions("plans", ["from_cli", "from_sql"])
    again = evaluate_launch(instance, resources)
    assert sorted(r.run_key for r in again.run_requests) == ["from_cli", "from_sql"]
    assert again.dynamic_partitions_requests == []

    # A plan whose run is queued or in progress is not requested again.
    create_run_for_test(
        instance,
        job_name="full_plan_job",
        status=DagsterRunStatus.STARTED,
        tags={"dagster/partition": "from_cli"},
    )
    third = evaluate_launch(instance, resources)
    assert [r.run_key for r in third.run_requests] == ["from_sql"]


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"plan_id": "bad model", "model": "offline"}, "invalid plan id"),
        ({"plan_id": "no_model", "model": "no-such-model"}, "unknown model"),
        ({"plan_id": "empty_prompt", "prompt": "   "}, "prompt is empty"),
        ({"plan_id": "bad_mode", "mode": "turbo"}, "speed_vs_detail 'turbo'"),
    ],
)
def test_unusable_queued_rows_are_failed_with_the_reason(app_db, resources, instance, row, reason):
    insert_plan_sql(
        app_db,
        row["plan_id"],
        prompt=row.get("prompt", PROMPT),
        model=row.get("model", "offline"),
        mode=row.get("mode"),
    )
    result = evaluate_launch(instance, resources)
    assert result.run_requests == []
    assert result.skip_reason is not None and row["plan_id"] in result.skip_reason.skip_message
    plan = app_db.get_plan(row["plan_id"])
    assert plan.status == "failed" and plan.error_message.startswith("not launched:")
    assert reason in " ".join(plan.error_message.split())
    assert plan.completed_at is not None
    # Refused once: the next tick has nothing to do.
    assert_skipped(plan_launch_sensor(build_sensor_context(instance=instance, resources=resources)))


def test_no_queued_plans_is_a_skip(app_db, resources, instance):
    assert_skipped(plan_launch_sensor(build_sensor_context(instance=instance, resources=resources)))


def test_a_partition_without_a_plan_row_is_reported_then_removed(app_db, resources, instance):
    """Added by hand in the UI (or left by a deleted plan): reported on the first tick, removed on the
    second when no row appeared; a row that appears in between keeps it."""
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="real", claimed_by_run="r-1"))
    instance.add_dynamic_partitions("plans", ["real", "by_hand", "row_comes_late"])
    first = plan_launch_sensor(build_sensor_context(instance=instance, resources=resources))
    assert first.dynamic_partitions_requests == []
    assert (
        "partition(s) without a plan row, removed next tick: by_hand, row_comes_late"
        in first.skip_reason.skip_message
    )

    create_plan(
        app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="row_comes_late", claimed_by_run="r-2")
    )
    second = plan_launch_sensor(
        build_sensor_context(instance=instance, resources=resources, cursor=first.cursor)
    )
    [delete] = second.dynamic_partitions_requests
    assert type(delete).__name__ == "DeleteDynamicPartitionsRequest"
    assert delete.partitions_def_name == "plans" and list(delete.partition_keys) == ["by_hand"]
    assert "removed partition(s) without a plan row: by_hand" in second.skip_reason.skip_message
    instance.delete_dynamic_partition("plans", "by_hand")  # what the daemon does with the request
    third = plan_launch_sensor(
        build_sensor_context(instance=instance, resources=resources, cursor=second.cursor)
    )
    assert_skipped(third)
    assert sorted(instance.get_dynamic_partitions("plans")) == ["real", "row_comes_late"]


def test_an_orphan_partition_with_a_run_in_flight_is_kept(app_db, resources, instance):
    instance.add_dynamic_partitions("plans", ["by_hand"])
    create_run_for_test(
        instance,
        job_name="full_plan_job",
        status=DagsterRunStatus.STARTED,
        tags={"dagster/partition": "by_hand"},
    )
    first = plan_launch_sensor(build_sensor_context(instance=instance, resources=resources))
    second = plan_launch_sensor(
        build_sensor_context(instance=instance, resources=resources, cursor=first.cursor)
    )
    assert second.dynamic_partitions_requests == []  # its run fails at start, saying what to do


def test_sensor_interval_setting(monkeypatch):
    monkeypatch.setenv("PLANEXE_PLAN_SENSOR_INTERVAL", "7")
    assert sensor_interval_seconds() == 7
    for bad in ("0", "soon", "100000"):
        monkeypatch.setenv("PLANEXE_PLAN_SENSOR_INTERVAL", bad)
        with pytest.raises(ConfigError, match="PLANEXE_PLAN_SENSOR_INTERVAL"):
            sensor_interval_seconds()


# -- the run-status sensors -------------------------------------------------------------------------------
def _event(instance, run_id, event_type):
    [record] = instance.all_logs(run_id, of_type=event_type)
    return record.dagster_event


def _status_context(instance, run_id, event_type, resources):
    return build_run_status_sensor_context(
        sensor_name="plan_sync",
        dagster_event=_event(instance, run_id, event_type),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources=resources,
    )


def _pending_attempt(db, plan_id, started_at, stage="identify_purpose"):
    return db.create_llm_interaction(
        {
            "plan_id": plan_id,
            "llm_model": "offline",
            "stage": stage,
            "prompt_text": "p",
            "status": "pending",
            "started_at": started_at,
        }
    )


def test_failed_run_outside_the_cli_marks_the_plan_failed(app_db, resources, instance, monkeypatch):
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="killed"))
    steps_pkg.implemented_steps()
    monkeypatch.setitem(steps_pkg._REGISTRY, "identify_purpose", broken_step("identify_purpose"))
    outcome = run_plan_in_process("killed", instance, steps=EARLY_STEPS, log_level="ERROR")
    assert not outcome.success and outcome.failed_steps == ["identify_purpose"]

    # As if the run worker had died before the runner could record anything: the row still says
    # running, an LLM attempt is open, the usage totals are off.
    app_db.update_plan(
        "killed", {"status": "running", "error_message": None, "last_run_id": "some-older-run"}
    )
    orphan = _pending_attempt(app_db, "killed", utcnow() - timedelta(minutes=1))
    app_db.create_llm_interaction(
        {
            "plan_id": "killed",
            "llm_model": "offline",
            "stage": "setup",
            "prompt_text": "p",
            "status": "completed",
            "total_tokens": 40,
            "response_metadata": {"cost_usd": 0.25},
        }
    )
    app_db.create_plan_metrics(
        {"plan_id": "killed", "total_llm_calls": 99, "total_tokens_used": 5, "total_cost_usd": 0.0}
    )

    context = _status_context(instance, outcome.run_id, DagsterEventType.RUN_FAILURE, resources)
    assert plan_run_failure_sensor(context.for_run_failure()) is None

    plan = app_db.get_plan("killed")
    assert plan.status == "failed" and plan.completed_at is not None
    assert outcome.run_id in plan.error_message
    assert (
        "identify_purpose: StepError: identify_purpose: every model failed (injected outage)"
        in plan.error_message
    )
    assert plan.progress_message.startswith("2 of ")
    assert plan.failed_step == "identify_purpose" and plan.recoverable is True
    assert plan.failure_reason.startswith("StepError: identify_purpose: every model failed")
    [closed] = [i for i in app_db.get_plan_interactions("killed") if i.id == orphan.id]
    assert (
        closed.status == "failed"
        and closed.error_code == "run_ended"
        and outcome.run_id in closed.error_message
        and closed.response_metadata == {"failure_kind": "transient"}  # every failed row has its kind
    )
    metrics = app_db.get_plan_metrics("killed")
    assert (metrics.total_llm_calls, metrics.total_tokens_used, metrics.total_cost_usd) == (2, 40, 0.25)
    assert metrics.completed_llm_calls == 1  # the closed orphan was an attempt, not a completed call

    # Applying the same end again changes nothing.
    assert plan_run_failure_sensor(context.for_run_failure()) is None
    assert app_db.get_plan("killed").error_message == plan.error_message


def test_runner_message_of_the_same_run_is_kept(app_db, resources, instance, monkeypatch):
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="precise"))
    steps_pkg.implemented_steps()
    monkeypatch.setitem(steps_pkg._REGISTRY, "identify_purpose", broken_step("identify_purpose"))
    outcome = run_plan_in_process("precise", instance, steps=EARLY_STEPS, log_level="ERROR")
    before = app_db.get_plan("precise")
    assert before.status == "failed" and before.last_run_id == outcome.run_id
    context = _status_context(instance, outcome.run_id, DagsterEventType.RUN_FAILURE, resources)
    plan_run_failure_sensor(context.for_run_failure())
    assert app_db.get_plan("precise").error_message == before.error_message


def test_canceled_run_marks_the_plan_stopped_and_frees_pool_slots(app_db, resources):
    # A SQLite instance (pools are not enforced by the in-memory storage of an ephemeral one).
    with instance_for_test() as instance:
        _cancel_scenario(app_db, resources, instance)


def _cancel_scenario(app_db, resources, instance):
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="stopped"))
    run = create_run_for_test(
        instance,
        job_name="full_plan_job",
        status=DagsterRunStatus.STARTED,
        tags={"dagster/partition": "stopped"},
    )
    app_db.update_plan("stopped", {"status": "running", "last_run_id": run.run_id})
    orphan = _pending_attempt(app_db, "stopped", utcnow() - timedelta(seconds=5))
    instance.event_log_storage.set_concurrency_slots("llm", 1)
    assert instance.event_log_storage.claim_concurrency_slot("llm", run.run_id, "identify_purpose").is_claimed
    instance.report_run_canceled(run)

    context = _status_context(instance, run.run_id, DagsterEventType.RUN_CANCELED, resources)
    assert plan_run_canceled_sensor(context) is None
    plan = app_db.get_plan("stopped")
    assert plan.status == "stopped" and run.run_id in plan.error_message and "0 of " in plan.error_message
    assert plan.recoverable is True and plan.failure_reason.startswith("stopped")
    assert [i.status for i in app_db.get_plan_interactions("stopped") if i.id == orphan.id] == ["failed"]
    assert app_db.get_plan_metrics("stopped").total_llm_calls == 1
    pool = instance.event_log_storage.get_concurrency_info("llm")
    assert pool.active_slot_count == 0, "the canceled run's slot is back in the pool"


def test_an_older_runs_end_does_not_overwrite_a_newer_run(app_db, resources, instance):
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="busy"))
    old = create_run_for_test(
        instance,
        job_name="full_plan_job",
        status=DagsterRunStatus.STARTED,
        tags={"dagster/partition": "busy"},
    )
    instance.report_run_canceled(old)
    new = create_run_for_test(
        instance,
        job_name="full_plan_job",
        status=DagsterRunStatus.STARTED,
        tags={"dagster/partition": "busy"},
    )
    app_db.update_plan("busy", {"status": "running", "last_run_id": new.run_id})
    result = plan_run_canceled_sensor(
        _status_context(instance, old.run_id, DagsterEventType.RUN_CANCELED, resources)
    )
    assert isinstance(result, SkipReason) and "not its latest run" in result.skip_message
    assert app_db.get_plan("busy").status == "running"


def test_successful_partial_run_leaves_an_incomplete_plan_failed_not_running(app_db, resources, instance):
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="partial"))
    outcome = run_plan_in_process("partial", instance, steps=EARLY_STEPS, log_level="ERROR")
    assert outcome.success
    assert app_db.get_plan("partial").status == "running"
    plan_run_success_sensor(
        _status_context(instance, outcome.run_id, DagsterEventType.RUN_SUCCESS, resources)
    )
    plan = app_db.get_plan("partial")
    assert plan.status == "failed" and plan.error_message.startswith("incomplete:")
    assert "first: " in plan.error_message and "planexe resume partial" in plan.error_message
    metrics = app_db.get_plan_metrics("partial")
    assert metrics.total_llm_calls == len(app_db.get_plan_interactions("partial")) >= 1


def test_run_end_outcome_is_validated(app_db):
    with pytest.raises(ValueError, match="outcome"):
        RunEnd(run_id="r", outcome="exploded", ended_at=utcnow())
    assert (
        reconcile_after_run(app_db, "nobody", RunEnd(run_id="r", outcome=RUN_CANCELED, ended_at=utcnow()))
        is None
    )


def test_a_plan_run_right_away_is_claimed_by_its_own_run_id(app_db, resources, instance):
    """What `planexe plan` (without --queue) and the Luigi entry point do: the row is stored claimed by
    the run that is about to execute it, the sensor leaves it alone, and the run uses that id."""
    create_plan(
        app_db,
        PlanRequest(
            prompt=PROMPT,
            model="offline",
            plan_id="now",
            claimed_by_run="6d1f5c1e-0000-4000-8000-000000000001",
        ),
    )
    assert_skipped(plan_launch_sensor(build_sensor_context(instance=instance, resources=resources)))
    outcome = run_plan_in_process(
        "now",
        instance,
        steps=["start_time"],
        log_level="ERROR",
        run_id="6d1f5c1e-0000-4000-8000-000000000001",
    )
    assert outcome.success and outcome.run_id == "6d1f5c1e-0000-4000-8000-000000000001"
    plan = app_db.get_plan("now")
    assert plan.status == "running" and plan.last_run_id == outcome.run_id


def test_a_refused_plan_stays_refused_whatever_its_run_did(app_db):
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="gated"))
    app_db.update_plan(
        "gated", {"status": "refused", "error_message": "refused by the redline gate", "last_run_id": "r1"}
    )
    for outcome in ("failure", "canceled", "success"):
        result = reconcile_after_run(app_db, "gated", RunEnd(run_id="r1", outcome=outcome, ended_at=utcnow()))
        assert result.status == "refused"
    assert app_db.get_plan("gated").error_message == "refused by the redline gate"
