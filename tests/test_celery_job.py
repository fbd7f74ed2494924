"""``full_plan_celery_job`` as defined (no broker needed): its executor and configuration, the plan
sensor's choice of job, and the benchmark's measure of concurrent LLM steps. The job running on real
workers is ``tests/test_distributed.py``."""

import json
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


def test_steps_in_flight_counts_each_step_once_however_many_calls():
    from bench.celery_plans import series_by_tenths, steps_in_flight

    calls = [
        {"plan": "p1", "stage": "wbs", "start": 0.0, "end": 4.0},
        {"plan": "p1", "stage": "wbs", "start": 0.5, "end": 3.0},  # a fan-out: the same step
        {"plan": "p2", "stage": "wbs", "start": 1.0, "end": 2.0},  # another plan's step
        {"plan": "p1", "stage": "swot", "start": 2.0, "end": 6.0},  # starts as p2's call ends
        {"plan": "p3", "stage": "review", "start": 9.0, "end": None},  # unanswered: counts to the end
    ]
    points = steps_in_flight(calls)
    assert max(n for _, n in points) == 2
    assert points[-1] == (9.0, 0)
    assert series_by_tenths(points) == [1, 2, 2, 2, 2, 1, 1, 0, 0, 1]  # tenths of 0.9 s
    assert steps_in_flight([]) == [] and series_by_tenths([]) == []


def test_latency_server_logs_the_plan_and_step_of_every_call():
    """The in-flight log the benchmark reads: the LLM layer's headers name each call's plan and step."""
    import threading
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from pydantic import BaseModel

    from bench.celery_plans import steps_in_flight
    from bench.latency_server import LatencyModel, LatencyServer
    from resources.llm import LLMExecutor, MemoryRecorder
    from tests.llm.conftest import stub_entries

    class Answer(BaseModel):
        text: str

    server = LatencyServer(LatencyModel.parse("fixed:0.5"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = SimpleNamespace(base_url=f"http://127.0.0.1:{server.port}/v1")
        entries = stub_entries(url, {"bench": {"api_key": None, "max_in_flight": 8}})
        executor = LLMExecutor(entries, recorder=MemoryRecorder(), seed=7)
        fan_out = executor.for_step("p1", "wbs_level3")
        single = executor.for_step("p2", "swot_analysis")
        messages = [{"role": "user", "content": "Say something."}]
        with ThreadPoolExecutor(4) as pool:
            calls = [
                pool.submit(fan_out.structured, [*messages, {"role": "user", "content": str(i)}], Answer)
                for i in range(3)
            ]
            calls.append(pool.submit(single.structured, messages, Answer))
            for call in calls:
                call.result()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/calls", timeout=5) as answer:
            log = json.loads(answer.read())["calls"]
    finally:
        server.shutdown()
        server.server_close()
    assert sorted((c["plan"], c["stage"]) for c in log) == [
        ("p1", "wbs_level3"),
        ("p1", "wbs_level3"),
        ("p1", "wbs_level3"),
        ("p2", "swot_analysis"),
    ]
    assert all(c["end"] - c["start"] >= 0.45 for c in log)
    assert max(n for _, n in steps_in_flight(log)) == 2  # four requests at once, but two steps
