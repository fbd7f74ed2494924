"""The ``create_plan`` job (the Launchpad's way to start a plan): validated like the CLI, a pending row
and a partition, then one run from the plan sensor."""

import pytest
from dagster import DagsterInvalidConfigError, build_sensor_context

from planexe_assets.dagster_defs.sensors import plan_launch_sensor
from planexe_assets.definitions import defs

PROMPT = "Open a vegan butcher shop in Copenhagen."


def _config(**values) -> dict:
    return {"ops": {"plan_request": {"config": {"prompt": PROMPT, "model": "offline", **values}}}}


def _execute(instance, config):
    job = defs.resolve_job_def("create_plan")
    return job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)


def test_a_plan_created_from_the_launchpad_is_queued_and_launched_once(
    app_db, resources, instance, isolated_home
):
    result = _execute(instance, _config(speed="fast", plan_id="from_ui", refuse_on_redline=True))
    assert result.success
    plan = app_db.get_plan("from_ui")
    assert plan.status == "pending" and plan.last_run_id is None
    assert plan.llm_model == "offline" and plan.speed_vs_detail == "fast_but_skip_details"
    assert plan.refuse_on_redline is True and plan.output_dir == str(isolated_home / "runs" / "from_ui")
    assert instance.get_dynamic_partitions("plans") == ["from_ui"]
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["planexe/plan_id"] == "from_ui" and run.tags["planexe/prompt"] == PROMPT
    [output] = [e for e in result.all_events if e.is_successful_output]
    metadata = output.event_specific_data.metadata
    assert metadata["plan_id"].value == "from_ui" and "plan_launch_sensor" in metadata["next"].value

    tick = plan_launch_sensor(build_sensor_context(instance=instance, resources=resources))
    [request] = tick.run_requests
    assert request.run_key == "from_ui" and request.partition_key == "from_ui"
    assert request.tags["planexe/prompt"] == PROMPT
    assert tick.dynamic_partitions_requests == []  # the job added the partition already


def test_defaults_are_all_details_auto_and_a_new_id(app_db, instance, monkeypatch):
    monkeypatch.setenv("PLANEXE_LLM_CONFIG", "")  # the packaged config
    result = _execute(instance, {"ops": {"plan_request": {"config": {"prompt": PROMPT, "model": "offline"}}}})
    assert result.success
    [plan] = app_db.list_plans()
    assert plan.speed_vs_detail == "all_details_but_slow" and plan.refuse_on_redline is False
    assert instance.get_dynamic_partitions("plans") == [plan.plan_id]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"plan_id": "../etc"}, "invalid plan id"),
        ({"prompt": "   "}, "the prompt is empty"),
        ({"model": "no-such-model"}, "unknown model 'no-such-model'"),
        ({"prompt": "x" * (64 * 1024 + 1)}, "the limit is 65,536 bytes"),
    ],
)
def test_a_bad_request_fails_the_run_with_the_reason_and_writes_nothing(app_db, instance, values, message):
    result = _execute(instance, _config(**values))
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    text = failure.step_failure_data.error.message + (
        failure.step_failure_data.user_failure_data.description or ""
    )
    assert "the plan was not created" in text and message in text
    assert app_db.list_plans() == [] and instance.get_dynamic_partitions("plans") == []


def test_an_existing_plan_id_is_refused(app_db, instance):
    assert _execute(instance, _config(plan_id="twice")).success
    second = _execute(instance, _config(plan_id="twice"))
    assert not second.success
    [failure] = [e for e in second.all_events if e.is_step_failure]
    assert "already exists" in failure.step_failure_data.user_failure_data.description


def test_the_definitions_load_as_a_code_location_does():
    """The code server validates the whole repository (e.g. unique op and job names)."""
    repository = defs.get_repository_def()
    assert {"create_plan", "full_plan_job"} <= {job.name for job in repository.get_all_jobs()}


def test_the_launchpad_rejects_an_unknown_speed_before_any_run(instance):
    with pytest.raises(DagsterInvalidConfigError, match="speed"):
        _execute(instance, _config(speed="turbo"))
