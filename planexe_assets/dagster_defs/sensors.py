"""Sensors: queued plans become runs; ended runs keep the ``plans`` table true.

``plan_launch_sensor``
    Any client may queue a plan by inserting a ``plans`` row with status ``pending`` and no
    ``last_run_id``: ``planexe plan --queue``, another service, or plain SQL::

        INSERT INTO plans (plan_id, prompt, llm_model, status) VALUES ('p1', 'Open a bakery', 'auto', 'pending');

    The ``create_plan`` job (the UI's Launchpad) queues plans the same way.

    Each tick the sensor checks every such row (id, prompt, mode, model and its API key), adds the
    plan as a partition of ``plans`` and requests one ``full_plan_job`` run (``full_plan_celery_job``
    when ``PLANEXE_PLAN_EXECUTOR=celery``: each step a task on a Celery worker) with ``run_key`` = the
    plan id: Dagster never launches two runs with the same key from this sensor, so a plan is not
    run twice by accident, however often it stays ``pending`` (e.g. while its run waits in the
    queue). A row that cannot run is marked ``failed`` with the reason, before any run exists. Plans
    created to run right away (``planexe plan``, the Luigi entry point) are stored with
    ``last_run_id`` already set, so the sensor leaves them alone. A partition without a plan row
    (added by hand in the UI, or left by a deleted plan) is reported in the tick's log and removed
    when it is still there on the next tick (``OrphanPartitions``).

``plan_run_failure_sensor`` / ``plan_run_canceled_sensor`` / ``plan_run_success_sensor``
    When a run of a plan ends (launched from the UI, the daemon, ``dagster job execute``, a
    backfill), the plan's row is reconciled with what is stored (``plan_sync.reconcile_after_run``):
    a run killed or canceled mid-step cannot record that itself, so the sensor sets ``failed`` or
    ``stopped`` with the failing steps' errors, closes LLM attempts left ``pending``, recomputes
    ``plan_metrics`` from ``llm_interactions`` and frees ``llm`` pool slots the run still held.
    Only the plan's latest run is applied: an older run's end never overwrites a newer run's state.

All four are on by default when the daemon runs (``planexe ui`` / ``dagster dev`` or
``dagster-daemon run``). ``PLANEXE_PLAN_SENSOR_INTERVAL`` (seconds, default 30) sets how often the
launch sensor looks for queued plans.
"""

import json
import os

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from planexe_assets.dagster_defs._internals import PARTITION_NAME_TAG
from planexe_assets.dagster_defs.asset_metadata import PROMPT_TAG, prompt_tag
from planexe_assets.dagster_defs.celery_job import celery_jobs, plan_launch_job_name
from planexe_assets.dagster_defs.jobs import full_plan_job
from planexe_assets.dagster_defs.partitions import PLANS_PARTITIONS_NAME, plans_partitions
from planexe_assets.dagster_defs.resources import DatabaseResource
from planexe_assets.dagster_defs.runs import (
    LAUNCHED_BY_TAG,
    PLAN_ID_TAG,
    latest_run_id,
    release_pool_slots,
    step_outcomes,
    unfinished_runs,
)
from planexe_assets.lifecycle.plan_sync import (
    RUN_CANCELED,
    RUN_FAILURE,
    RUN_SUCCESS,
    RunEnd,
    queued_plan_problem,
    reconcile_after_run,
    refuse_queued_plan,
    utc_naive_from_timestamp,
)
from resources.config import ConfigError, runs_dir
from resources.models import PlanStatus
from resources.plan_ids import run_dir_for

LAUNCH_SENSOR_NAME = "plan_launch_sensor"
INTERVAL_ENV = "PLANEXE_PLAN_SENSOR_INTERVAL"
DEFAULT_INTERVAL_SECONDS = 30
# Run requests per tick; the rest wait for the next tick (the run queue caps what runs at once).
MAX_LAUNCHES_PER_TICK = 25


def sensor_interval_seconds() -> int:
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_SECONDS
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{INTERVAL_ENV}={raw!r} is not a whole number of seconds") from None
    if not 1 <= value <= 86400:
        raise ConfigError(f"{INTERVAL_ENV}={raw!r} is out of range; use 1 to 86400 seconds")
    return value


# -- queued plans -> runs -------------------------------------------------------------------------------
@sensor(
    name=LAUNCH_SENSOR_NAME,
    # full_plan_celery_job when PLANEXE_PLAN_EXECUTOR=celery (celery_job.plan_launch_job_name)
    jobs=[full_plan_job, *celery_jobs()],
    minimum_interval_seconds=sensor_interval_seconds(),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Launches plans queued with status 'pending' (planexe plan --queue, SQL, other services): "
        "adds each as a partition and requests one run with run_key = plan id."
    ),
)
def plan_launch_sensor(context: SensorEvaluationContext, database: DatabaseResource):
    db = database.get_database_service()
    instance = context.instance
    known = set(instance.get_dynamic_partitions(PLANS_PARTITIONS_NAME))
    orphans = OrphanPartitions.check(context, db, known)
    queued = [p for p in db.list_plans_by_status([PlanStatus.PENDING]) if p.last_run_id is None]
    job_name = plan_launch_job_name()  # a bad PLANEXE_PLAN_EXECUTOR fails the tick, saying why
    if not queued:
        return SensorResult(
            skip_reason=orphans.note("no queued plans (status 'pending' without a claiming run)"),
            dynamic_partitions_requests=orphans.requests(),
            cursor=orphans.cursor,
        )

    requests: list[RunRequest] = []
    new_partitions: list[str] = []
    refused: list[str] = []
    busy: list[str] = []
    for plan in queued:
        if len(requests) >= MAX_LAUNCHES_PER_TICK:
            break
        problem = queued_plan_problem(plan)
        if problem is not None:
            refuse_queued_plan(db, plan.plan_id, problem)
            refused.append(plan.plan_id)
            context.log.warning(f"plan {plan.plan_id!r} not launched: {problem}")
            continue
        if unfinished_runs(instance, plan.plan_id):
            busy.append(plan.plan_id)  # already launched and waiting in the queue, or being run
            continue
        if not plan.output_dir:  # rows inserted by SQL may leave it empty
            db.update_plan(plan.plan_id, {"output_dir": str(run_dir_for(plan.plan_id, runs_dir()))})
        if plan.plan_id not in known:
            new_partitions.append(plan.plan_id)
        requests.append(_launch_request(plan, job_name))
    if requests:
        context.log.info(
            f"launching {len(requests)} queued plan(s): {', '.join(r.partition_key for r in requests)}"
        )
    partition_requests = [plans_partitions.build_add_request(new_partitions)] if new_partitions else []
    partition_requests += orphans.requests()
    if not requests:
        return SensorResult(
            skip_reason=orphans.note(_nothing_launched(refused, busy)),
            dynamic_partitions_requests=partition_requests,
            cursor=orphans.cursor,
        )
    return SensorResult(
        run_requests=requests, dynamic_partitions_requests=partition_requests, cursor=orphans.cursor
    )


def _launch_request(plan, job_name: str) -> RunRequest:
    """One run of the plan's partition with ``job_name`` (``celery_job.plan_launch_job_name``); the
    plan id is the run key, so a plan is launched once."""
    return RunRequest(
        run_key=plan.plan_id,
        job_name=job_name,
        partition_key=plan.plan_id,
        tags={
            PLAN_ID_TAG: plan.plan_id,
            LAUNCHED_BY_TAG: LAUNCH_SENSOR_NAME,
            PROMPT_TAG: prompt_tag(plan.prompt),
        },
    )


def _nothing_launched(refused: list[str], busy: list[str]) -> str:
    """Why a tick with queued plans launched none: refused plans, plans already in flight."""
    reason = []
    if refused:
        reason.append(f"refused {len(refused)}: {', '.join(refused)}")
    if busy:
        reason.append(f"already running or queued: {', '.join(busy)}")
    return "; ".join(reason) or "nothing to launch"


class OrphanPartitions:
    """Partitions of ``plans`` with no plan row: added by hand (the UI's "Add partition", the API)
    or left behind by a deleted plan. A run of one fails at once (``run_partitions``); the sensor
    reports them and removes each one it has seen on two consecutive ticks without a run in flight
    (a client that adds the partition just before the row is not cut short). The cursor remembers
    the ones seen last tick."""

    def __init__(self, found: list[str], removable: list[str], cursor: str):
        self.found = found
        self.removable = removable
        self.cursor = cursor

    @classmethod
    def check(cls, context: SensorEvaluationContext, db, known: set[str]) -> "OrphanPartitions":
        found = sorted(known - db.existing_plan_ids(known)) if known else []
        try:
            seen_before = set(json.loads(context.cursor or "{}").get("orphan_partitions", []))
        except (ValueError, AttributeError):
            seen_before = set()
        removable = [p for p in found if p in seen_before and not unfinished_runs(context.instance, p)]
        waiting = [p for p in found if p not in removable]
        if removable:
            context.log.warning(
                f"removing partition(s) without a plan row: {', '.join(removable)} (added by hand, or their "
                "plan was deleted; create plans with the create_plan job or `planexe plan`)"
            )
        if waiting:
            context.log.warning(
                f"partition(s) without a plan row: {', '.join(waiting)}; removed on the next tick unless "
                "a plan row appears (create it with the create_plan job or `planexe plan`)"
            )
        return cls(found, removable, json.dumps({"orphan_partitions": waiting}))

    def requests(self) -> list:
        return [plans_partitions.build_delete_request(self.removable)] if self.removable else []

    def note(self, reason: str) -> str:
        parts = [reason]
        if self.removable:
            parts.append(f"removed partition(s) without a plan row: {', '.join(self.removable)}")
        waiting = [p for p in self.found if p not in self.removable]
        if waiting:
            parts.append(f"partition(s) without a plan row, removed next tick: {', '.join(waiting)}")
        return "; ".join(parts)


# -- ended runs -> plans table ----------------------------------------------------------------------------
def sync_plan_after_run(context: RunStatusSensorContext, database: DatabaseResource, outcome: str):
    """Shared body of the run-status sensors; returns a SkipReason when the run is not applied."""
    run = context.dagster_run
    plan_id = run.tags.get(PARTITION_NAME_TAG)
    if not plan_id:
        return SkipReason(f"run {run.run_id} has no plan partition")
    instance = context.instance
    if outcome != RUN_SUCCESS:
        release_pool_slots(instance, run.run_id)
    latest = latest_run_id(instance, plan_id)
    if latest is not None and latest != run.run_id:
        return SkipReason(f"run {run.run_id} of plan {plan_id} is not its latest run ({latest})")
    record = instance.get_run_record_by_id(run.run_id)
    failed, interrupted = step_outcomes(instance, run.run_id)
    message = None
    if outcome == RUN_FAILURE and context.dagster_event is not None:
        message = context.dagster_event.message
    end = RunEnd(
        run_id=run.run_id,
        outcome=outcome,
        ended_at=utc_naive_from_timestamp(record.end_time if record is not None else None),
        message=message,
        failed_steps=failed,
        interrupted_steps=interrupted,
    )
    result = reconcile_after_run(database.get_database_service(), plan_id, end)
    if result is None:
        return SkipReason(f"run {run.run_id}: no plan {plan_id} in the application database")
    context.log.info(
        f"plan {plan_id} after run {run.run_id} ({outcome}): {result.status_before} -> {result.status}; "
        f"{result.done}/{result.total} steps; {result.llm_calls} LLM calls; {result.orphans_closed} open attempt(s) closed"
    )
    return None


@run_failure_sensor(
    name="plan_run_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks a plan failed (with its failing steps' errors) when its latest run fails.",
)
def plan_run_failure_sensor(context: RunFailureSensorContext, database: DatabaseResource):
    return sync_plan_after_run(context, database, RUN_FAILURE)


@run_status_sensor(
    run_status=DagsterRunStatus.CANCELED,
    name="plan_run_canceled_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks a plan stopped when its latest run is canceled; closes its open LLM attempts.",
)
def plan_run_canceled_sensor(context: RunStatusSensorContext, database: DatabaseResource):
    return sync_plan_after_run(context, database, RUN_CANCELED)


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    name="plan_run_success_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Checks a plan's status and usage totals against what is stored after its latest run succeeds.",
)
def plan_run_success_sensor(context: RunStatusSensorContext, database: DatabaseResource):
    return sync_plan_after_run(context, database, RUN_SUCCESS)


plan_sensors = [
    plan_launch_sensor,
    plan_run_failure_sensor,
    plan_run_canceled_sensor,
    plan_run_success_sensor,
]
