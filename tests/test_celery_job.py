"""``full_plan_celery_job`` as defined (no broker needed): its executor and configuration, the plan
sensor's choice of job, and the benchmark's measure of concurrent LLM steps. The job running on real
workers is ``tests/test_distributed.py``."""

from pathlib import Path

import pytest
import yaml
from dagster import build_sensor_context

from bench.celery_plans import max_overlap
from planexe_assets.dagster_defs.celery_job import (
    CELERY_JOB_NAME,
    CELERY_SETTINGS,
    PLAN_EXECUTOR_ENV,
    PlanExecutorError,
    plan_launch_job_name,
)
from planexe_assets.dagster_defs.jobs import FULL_PLAN_JOB_NAME
from planexe_assets.dagster_defs.sensors import plan_launch_sensor
from planexe_assets.lifecycle.plans import PlanRequest, create_plan

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "planexe_assets" / "deploy"


def test_the_celery_job_runs_every_asset_on_the_celery_executor():
    from planexe_assets.definitions import defs

    job = defs.resolve_job_def(CELERY_JOB_NAME)
    threads = defs.resolve_job_def(FULL_PLAN_JOB_NAME)
    assert job.executor_def.name == "celery"
    assert {n.name for n in job.graph.node_defs} == {n.name for n in threads.graph.node_defs}
    # Each plan's run gets the broker from the environment of the run's process, late acks on.
    config = job.partitioned_config.get_run_config_for_partition_key("any_plan")
    assert config["execution"]["config"] == {
        "broker": {"env": "PLANEXE_CELERY_BROKER_URL"},
        "backend": "rpc://",
        "config_source": CELERY_SETTINGS,
    }


def test_workers_and_the_run_process_share_the_celery_settings():
    worker = yaml.safe_load((DEPLOY_DIR / "celery_worker.yaml").read_text(encoding="utf-8"))
    config = worker["execution"]["config"]
    assert config["broker"] == {"env": "PLANEXE_CELERY_BROKER_URL"}
    assert config["config_source"] == CELERY_SETTINGS
    assert CELERY_SETTINGS["task_acks_late"] and CELERY_SETTINGS["task_reject_on_worker_lost"]
    workspace = yaml.safe_load((DEPLOY_DIR / "workspace.grpc.yaml").read_text(encoding="utf-8"))
    assert workspace["load_from"][0]["grpc_server"]["location_name"] == "planexe_assets.definitions"


@pytest.mark.parametrize(
    ("value", "job"),
    [(None, FULL_PLAN_JOB_NAME), ("threads", FULL_PLAN_JOB_NAME), ("Celery", CELERY_JOB_NAME)],
)
def test_plan_executor_setting_picks_the_job(monkeypatch, value, job):
    if value is None:
        monkeypatch.delenv(PLAN_EXECUTOR_ENV, raising=False)
    else:
        monkeypatch.setenv(PLAN_EXECUTOR_ENV, value)
    assert plan_launch_job_name() == job


def test_an_unknown_plan_executor_is_refused(monkeypatch):
    monkeypatch.setenv(PLAN_EXECUTOR_ENV, "k8s")
    with pytest.raises(PlanExecutorError, match="PLANEXE_PLAN_EXECUTOR='k8s' is not one of threads, celery"):
        plan_launch_job_name()


def test_the_plan_sensor_launches_queued_plans_with_the_celery_job(app_db, resources, instance, monkeypatch):
    monkeypatch.setenv(PLAN_EXECUTOR_ENV, "celery")
    create_plan(
        app_db, PlanRequest(prompt="Open a bakery in Aarhus.", model="offline", plan_id="queued_celery")
    )
    result = plan_launch_sensor(build_sensor_context(instance=instance, resources=resources))
    [request] = result.run_requests
    assert request.job_name == CELERY_JOB_NAME and request.partition_key == "queued_celery"


def test_max_overlap_counts_intervals_open_at_once():
    assert max_overlap([]) == 0
    assert max_overlap([(0, 2), (1, 3), (2, 4)]) == 2  # one ends at 2 as the next starts
    assert max_overlap([(0, 10), (1, 2), (1.5, 3), (1.8, 9)]) == 4
