"""N plans through the plan sensor on Celery workers (1 or 2) and on the thread executor, side by side.

Each configuration is a fresh deployment of ``planexe_assets/deploy/`` as separate processes
(``bench/celery_cluster.py``): PostgreSQL for both stores, the code server, the daemon, and for
Celery the workers (``--concurrency 4`` each) with their own ``PLANEXE_HOME``; the instance's ``llm``
pool limit is planexe_assets/deploy/dagster.postgres.yaml's (4). Measured from the Dagster event log of the runs:

- wall time from queueing the plans until every run has ended;
- per step on Celery: broker wait (the run process submitting the task -> a worker starting it; it
  includes waiting for a free worker process) and worker start (the worker starting the task -> the
  step's ``STEP_START``: the instance from its reference, the execution plan, the resources);
- the most LLM steps (assets in the ``llm`` pool) executing at once across all runs and workers,
  from their ``STEP_START``/end events (the pool's limit must hold), and the most requests the
  latency server had in flight (fan-out steps send several at once, so this may exceed the pool);
- the same limit seen from the other end: the latency server's in-flight log names the plan and step
  of every call (headers the LLM layer sends), so the distinct steps with a call in flight are
  counted at every moment, across both workers: their maximum, and their maximum in each tenth of
  the batch's time (the series over time).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.celery_cluster import CeleryDeployment, purge_broker_queue
from bench.environment import (
    BENCH_MODEL,
    create_postgres_database,
    drop_postgres_database,
    write_llm_config,
)

POOL_LIMIT = 4  # planexe_assets/deploy/dagster.postgres.yaml's concurrency.pools.default_limit
# Worker processes per Celery worker: two workers offer 8 step slots, more than the pool allows.
WORKER_CONCURRENCY = 4


@dataclass
class CeleryBatch:
    label: str
    plans: int
    wall_seconds: float = 0.0
    statuses: dict[str, str] = field(default_factory=dict)
    steps: int = 0
    broker_wait: list[float] = field(default_factory=list)
    worker_start: list[float] = field(default_factory=list)
    max_llm_steps: int = 0
    peak_requests: int = 0
    max_steps_at_server: int = 0
    steps_at_server_series: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.statuses) and all(s == "completed" for s in self.statuses.values())


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an end at t closes before a start at t opens)."""
    points = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda p: (p[0], p[1]),
    )
    open_now = best = 0
    for _, delta in points:
        open_now += delta
        best = max(best, open_now)
    return best


def steps_in_flight(calls: list[dict]) -> list[tuple[float, int]]:
    """From the latency server's call log: (time, distinct steps with a call in flight) after each
    change. A step is its (plan, stage); a fan-out step's parallel calls count once. A call still
    unanswered counts until the last moment of the log."""
    if not calls:
        return []
    last = max(max(c["start"], c["end"] or 0.0) for c in calls)
    events = sorted(
        [(c["start"], 1, (c.get("plan"), c.get("stage"))) for c in calls]
        + [(c["end"] if c["end"] is not None else last, -1, (c.get("plan"), c.get("stage"))) for c in calls],
        key=lambda e: (e[0], e[1]),  # an answer at t before a call arriving at t
    )
    open_calls: dict[tuple, int] = {}
    points: list[tuple[float, int]] = []
    for at, delta, step in events:
        open_calls[step] = open_calls.get(step, 0) + delta
        if open_calls[step] == 0:
            del open_calls[step]
        points.append((at, len(open_calls)))
    return points


def series_by_tenths(points: list[tuple[float, int]], buckets: int = 10) -> list[int]:
    """The most steps in flight within each of ``buckets`` equal slices of the log's time span."""
    if not points:
        return []
    start, end = points[0][0], points[-1][0]
    width = (end - start) / buckets or 1.0
    series = [0] * buckets
    level = 0
    for index, (at, count) in enumerate(points):
        # The level after this change holds until the next change: it counts in every slice it spans.
        until = points[index + 1][0] if index + 1 < len(points) else at
        first = min(int((at - start) / width), buckets - 1)
        last = min(int((until - start) / width), buckets - 1)
        level = count
        for slot in range(first, last + 1):
            series[slot] = max(series[slot], level)
    return series


def _event_kind(event, message: str) -> str | None:
    """Which of the moments the analysis times this event is: submitted, executing, start or end."""
    from dagster import DagsterEventType

    if event.event_type == DagsterEventType.ENGINE_EVENT:
        if "Submitting celery task" in message:
            return "submitted"
        if "in celery worker" in message:
            return "executing"  # a redelivered step: its last start counts
        return None
    if event.event_type == DagsterEventType.STEP_START:
        return "start"
    if event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
        return "end"
    return None


def _analyse_run(instance, run_id: str, llm_steps: set[str], batch: CeleryBatch, intervals: list) -> None:
    """One run's steps: broker wait and worker start per step, LLM step intervals, step count."""
    moments: dict[str, dict[str, float]] = {"submitted": {}, "executing": {}, "start": {}}
    for record in instance.all_logs(run_id):
        event, key = record.dagster_event, record.step_key
        if event is None or not key:
            continue
        # report_engine_event (the worker's) leaves user_message empty: the text is the event's.
        kind = _event_kind(event, event.message or record.user_message or "")
        if kind == "end":
            if key in llm_steps and key in moments["start"]:
                intervals.append((moments["start"][key], record.timestamp))
        elif kind is not None:
            moments[kind][key] = record.timestamp
            if kind == "start":
                batch.steps += 1
    submitted, started = moments["submitted"], moments["start"]
    for key, at in moments["executing"].items():
        if key in submitted:
            batch.broker_wait.append(at - submitted[key])
        if key in started:
            batch.worker_start.append(started[key] - at)


def analyse_runs(instance, run_ids: list[str], llm_steps: set[str], batch: CeleryBatch) -> None:
    intervals: list[tuple[float, float]] = []
    for run_id in run_ids:
        _analyse_run(instance, run_id, llm_steps, batch, intervals)
    batch.max_llm_steps = max_overlap(intervals)


def _start_deployment(
    label: str, *, workers: int, root: Path, app_url: str, dagster_url: str, llm_config: Path
):
    """The code server, ``workers`` Celery workers (when any) and the daemon, started and ready."""
    cluster = CeleryDeployment.prepare(
        root / label,
        app_db_url=app_url,
        dagster_postgres_url=dagster_url,
        llm_config=llm_config,
        pool_size=1,
        extra_env={"PLANEXE_PLAN_EXECUTOR": "celery" if workers else "threads"},
    )
    try:
        if workers:
            purge_broker_queue()
        cluster.start_code_server()
        started_workers = [
            cluster.start_worker(f"bench_worker_{i + 1}", concurrency=WORKER_CONCURRENCY)
            for i in range(workers)
        ]
        if started_workers:
            cluster.wait_for_workers(started_workers)
        cluster.start_daemon()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for_plans(cluster, db, instance, plan_ids: list[str], timeout: float) -> None:
    """Until every plan has ended and none has a run still going, or the timeout."""
    from planexe_assets.dagster_defs.runs import unfinished_runs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cluster.check_alive()
        statuses = {p: db.get_plan(p).status for p in plan_ids}
        ended = all(s in ("completed", "failed", "stopped") for s in statuses.values())
        if ended and not any(unfinished_runs(instance, p) for p in plan_ids):
            return
        time.sleep(1)


def _restore_environment(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run_configuration(
    label: str,
    *,
    plans: int,
    workers: int,
    root: Path,
    latency_server,
    prompt: str,
    in_flight: int,
    timeout: float,
) -> CeleryBatch:
    """One deployment: ``workers`` Celery workers (0: the thread executor), ``plans`` queued at once."""
    from dagster import DagsterInstance, RunsFilter

    from planexe_assets.lifecycle.plans import PlanRequest, create_plan
    from planexe_assets.lifecycle.runner import pipeline_steps
    from resources import migrate
    from resources.database import DatabaseService, make_engine

    batch = CeleryBatch(label, plans)
    app_url = create_postgres_database("planexe_bcel_app")
    dagster_url = create_postgres_database("planexe_bcel_dagster", driver="postgresql+psycopg2")
    cluster = None
    db = None
    # This process creates the plans (the model is checked then) and reads the instance.
    saved = {k: os.environ.get(k) for k in ("PLANEXE_LLM_CONFIG", "PLANEXE_DAGSTER_POSTGRES_URL")}
    try:
        migrate.upgrade(app_url)
        llm_config = write_llm_config(root / "llm_config.json", latency_server.base_url, in_flight)
        cluster = _start_deployment(
            label, workers=workers, root=root, app_url=app_url, dagster_url=dagster_url, llm_config=llm_config
        )
        db = DatabaseService(make_engine(app_url))
        plan_ids = [f"{label}_{i + 1}" for i in range(plans)]
        queued_at = time.monotonic()
        os.environ.update(
            {"PLANEXE_LLM_CONFIG": str(llm_config), "PLANEXE_DAGSTER_POSTGRES_URL": dagster_url}
        )
        for plan_id in plan_ids:
            create_plan(db, PlanRequest(prompt=prompt, model=BENCH_MODEL, fast=True, plan_id=plan_id))
        with DagsterInstance.from_config(str(cluster.dagster_home("control"))) as instance:
            _wait_for_plans(cluster, db, instance, plan_ids, timeout)
            batch.wall_seconds = time.monotonic() - queued_at
            batch.statuses = {p: db.get_plan(p).status for p in plan_ids}
            run_ids = [
                r.run_id
                for p in plan_ids
                for r in instance.get_runs(RunsFilter(tags={"dagster/partition": p}))
            ]
            llm_steps = {s.name for s in pipeline_steps() if s.uses_llm}
            analyse_runs(instance, run_ids, llm_steps, batch)
        batch.peak_requests = latency_server.stats()["peak_in_flight"]
        points = steps_in_flight(latency_server.calls())
        batch.max_steps_at_server = max((count for _, count in points), default=0)
        batch.steps_at_server_series = series_by_tenths(points)
    finally:
        _restore_environment(saved)
        if cluster is not None:
            cluster.stop()
            if workers:
                purge_broker_queue()
        if db is not None:
            db.close()
        drop_postgres_database(app_url)
        drop_postgres_database(dagster_url)
    return batch


def describe(batch: CeleryBatch) -> list[str]:
    wait, start = _median(batch.broker_wait), _median(batch.worker_start)
    return [
        batch.label,
        str(batch.plans),
        f"{batch.wall_seconds:.1f} s",
        f"{batch.wall_seconds / batch.plans:.1f} s",
        str(batch.steps),
        "–" if wait is None else f"{wait:.2f} s",
        "–" if start is None else f"{start:.2f} s",
        f"{batch.max_llm_steps} (limit {POOL_LIMIT})",
        f"{batch.max_steps_at_server} (limit {POOL_LIMIT})",
        " ".join(str(n) for n in batch.steps_at_server_series) or "–",
        str(batch.peak_requests),
        ", ".join(sorted(set(batch.statuses.values()))),
    ]


HEADER = [
    "executor",
    "plans",
    "wall",
    "per plan",
    "steps run",
    "broker wait (median)",
    "worker start (median)",
    "most LLM steps at once",
    "most steps calling the server at once",
    "steps calling, max per tenth of the run",
    "peak requests at server",
    "statuses",
]
