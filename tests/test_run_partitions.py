"""A run's plan gets its partition at run start when it has a row; a plan without a row is refused."""

import pytest
from dagster import (
    AssetSelection,
    DagsterInstance,
    DagsterRun,
    Definitions,
    define_asset_job,
    in_process_executor,
)

from planexe_assets.core import step_file
from planexe_assets.dagster_defs.io_manager import PlanContentIOManager
from planexe_assets.dagster_defs.resources import DatabaseResource, LLMResource
from planexe_assets.dagster_defs.run_partitions import PlanNotRunnable, check_run_plan, ensure_run_partition
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from resources.database import DatabaseService, make_engine

PROMPT = "Open a vegan butcher shop in Copenhagen."


@pytest.fixture
def db(sqlite_url):
    service = DatabaseService(make_engine(sqlite_url))
    yield service
    service.close()


def _run(plan_id: str | None) -> DagsterRun:
    tags = {"dagster/partition": plan_id} if plan_id is not None else {}
    return DagsterRun(job_name="full_plan_job", run_id="r-1", tags=tags)


@pytest.mark.parametrize("check", [check_run_plan, ensure_run_partition])
def test_a_plan_row_without_a_partition_gets_one_and_the_run_its_prompt_tag(db, tmp_path, check):
    from dagster._core.test_utils import create_run_for_test

    create_plan(
        db,
        PlanRequest(prompt=PROMPT + "\n  Vegan only.", model="offline", plan_id="has_row"),
        runs_root=tmp_path,
    )
    instance = DagsterInstance.ephemeral()
    run = create_run_for_test(instance, job_name="full_plan_job", tags={"dagster/partition": "has_row"})
    assert check(instance, run, db) == "has_row"
    assert instance.get_dynamic_partitions("plans") == ["has_row"]
    assert instance.get_run_by_id(run.run_id).tags["planexe/prompt"] == PROMPT + " Vegan only."
    run = instance.get_run_by_id(run.run_id)
    assert check(instance, run, db) == "has_row"  # idempotent
    assert instance.get_dynamic_partitions("plans") == ["has_row"]


@pytest.mark.parametrize(
    "plan_id, message",
    [("no_row", "which has no row in plans; create the plan first"), ("../etc", "invalid plan id")],
)
def test_a_partition_key_without_a_plan_is_refused(db, plan_id, message):
    instance = DagsterInstance.ephemeral()
    with pytest.raises(PlanNotRunnable, match=message.replace("(", r"\(")):
        check_run_plan(instance, _run(plan_id), db)
    # The resource-time registration never raises (the executor refused the run already).
    assert ensure_run_partition(instance, _run(plan_id), db) is None
    assert instance.get_dynamic_partitions("plans") == []


@pytest.mark.parametrize("check", [check_run_plan, ensure_run_partition])
def test_runs_without_a_partition_are_left_alone(db, check):
    instance = DagsterInstance.ephemeral()
    assert check(instance, _run(None), db) is None
    assert check(None, None, db) is None


@pytest.mark.parametrize("executor", ["threads", "in_process"])
def test_our_executors_refuse_a_plan_without_a_row_once_before_resources(app_db, executor):
    """The run fails with the message once (the run's failure), before resources are set up or any
    step starts; nothing is written, no partition is added."""
    from dagster import DagsterEventType

    from planexe_assets.dagster_defs.launch import execute_plan_run

    instance = DagsterInstance.ephemeral()
    result = execute_plan_run(instance, "ghost", executor_choice=executor)
    assert not result.success
    events = [e for e in instance.all_logs(result.run_id) if e.dagster_event is not None]
    kinds = [e.dagster_event.event_type for e in events]
    assert DagsterEventType.STEP_START not in kinds and DagsterEventType.RESOURCE_INIT_STARTED not in kinds
    said = [e.dagster_event.message or "" for e in events] + [
        e.dagster_event.event_specific_data.error.to_string()
        for e in events
        if e.dagster_event.event_type == DagsterEventType.RUN_FAILURE
        and e.dagster_event.event_specific_data.error
    ]
    assert sum("create the plan first" in text for text in said) == 1, said
    assert not instance.has_dynamic_partition("plans", "ghost")


def test_a_run_tagged_with_an_unregistered_plan_runs(sqlite_url, tmp_path):
    """What `dagster job execute --tags '{"dagster/partition": ...}'` does, on an ephemeral instance."""
    database = DatabaseResource(url=sqlite_url)
    service = database.get_database_service()
    create_plan(
        service, PlanRequest(prompt=PROMPT, model="offline", plan_id="late_partition"), runs_root=tmp_path
    )
    from planexe_assets.definitions import defs

    job = define_asset_job(
        "setup_only", AssetSelection.assets("start_time", "setup"), executor_def=in_process_executor
    )
    scoped = Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=[job],
        resources={
            "database": database,
            "llm": LLMResource(),
            "plan_content_io_manager": PlanContentIOManager(database=database, runs_root=str(tmp_path)),
        },
    )
    instance = DagsterInstance.ephemeral()
    result = scoped.resolve_job_def("setup_only").execute_in_process(
        instance=instance, tags={"dagster/partition": "late_partition"}, raise_on_error=False
    )
    assert result.success
    assert instance.has_dynamic_partition("plans", "late_partition")
    assert (tmp_path / "late_partition" / step_file("setup")).read_text(encoding="utf-8") == PROMPT

    refused = scoped.resolve_job_def("setup_only").execute_in_process(
        instance=instance, tags={"dagster/partition": "nobody"}, raise_on_error=False
    )
    assert not refused.success
    assert not refused.get_asset_materialization_events()
    assert not instance.has_dynamic_partition("plans", "nobody")
    assert not (tmp_path / "nobody").exists()
