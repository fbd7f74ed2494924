"""``refresh_plan`` and ``plan_refresh_sensor``: the plan-level "Materialize stale" (the staleness
itself, with a real prompt change, is tested in tests/test_versions.py)."""

import pytest
from dagster import DagsterEventType, SkipReason, build_run_status_sensor_context

from planexe_assets.dagster_defs.refresh import plan_refresh_sensor
from planexe_assets.definitions import defs
from planexe_assets.lifecycle.plans import PlanRequest, create_plan


def _refresh(instance, plan_id: str, launch: bool = True):
    job = defs.resolve_job_def("refresh_plan")
    config = {"ops": {"refresh_request": {"config": {"plan_id": plan_id, "launch": launch}}}}
    return job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)


def _tick(instance, run_id):
    [event] = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_SUCCESS).records
    return plan_refresh_sensor(
        build_run_status_sensor_context(
            sensor_name="plan_refresh_sensor",
            dagster_event=event.event_log_entry.dagster_event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(run_id),
            repository_def=defs.get_repository_def(),
        )
    )


@pytest.mark.parametrize(
    "plan_id, message",
    [
        ("../x", "invalid plan id"),
        ("nobody", "it has no row in plans"),
        ("never_ran", "it has never run in Dagster"),
    ],
)
def test_a_plan_that_cannot_be_refreshed_fails_with_the_reason(app_db, instance, plan_id, message):
    create_plan(app_db, PlanRequest(prompt="Open a bakery.", model="offline", plan_id="never_ran"))
    result = _refresh(instance, plan_id)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert message in failure.step_failure_data.user_failure_data.description


def test_a_plan_with_nothing_stale_or_a_dry_run_launches_nothing(app_db, instance):
    create_plan(app_db, PlanRequest(prompt="Open a bakery.", model="offline", plan_id="fresh"))
    instance.add_dynamic_partitions("plans", ["fresh"])
    result = _refresh(instance, "fresh")  # never materialized: missing, not stale
    assert result.success and result.output_for_node("refresh_request") == []
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["planexe/plan_id"] == "fresh" and run.tags["planexe/prompt"] == "Open a bakery."
    tick = _tick(instance, result.run_id)
    assert isinstance(tick, SkipReason) and "up to date" in tick.skip_message
    dry = _refresh(instance, "fresh", launch=False)
    tick = _tick(instance, dry.run_id)
    assert isinstance(tick, SkipReason) and "dry run" in tick.skip_message
