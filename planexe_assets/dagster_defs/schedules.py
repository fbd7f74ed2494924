"""The scheduled backfill: failed and stranded plans get their missing or failed steps re-materialized.

Dynamic partitions cannot use ``build_schedule_from_partitioned_job``, so this is a plain schedule
that yields one ``RunRequest(partition_key=plan_id, asset_selection=...)`` per plan to repair. The
selection is ``plan_sync.steps_to_redo``: the steps whose outputs are missing, the steps that failed
in the plan's latest run (even where an older output exists), and everything downstream of them,
never the whole plan.

A plan is a candidate when Dagster has run it before (plans imported from PlanExe or run only by
Luigi are left to ``planexe resume``) and no run of it is queued or in progress, and

- its status is ``failed``, or
- its status is ``running`` or ``pending`` but the run that claimed it (``last_run_id``) is a run of
  this instance that has ended: the process died before it could record the end.

``stopped`` plans were stopped on purpose and are left alone, and so are failed plans whose failure is
not ``recoverable`` (a permanent error: retrying cannot help until something changes). Each plan gets at most
``MAX_SCHEDULED_ATTEMPTS`` scheduled runs; after that it waits for a person (``planexe resume``).
Hourly by default, on when the daemon runs.
"""

from datetime import UTC, datetime

from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from planexe_assets.dagster_defs._internals import FINISHED_STATUSES, PARTITION_NAME_TAG
from planexe_assets.dagster_defs.asset_metadata import PROMPT_TAG, prompt_tag
from planexe_assets.dagster_defs.jobs import full_plan_job
from planexe_assets.dagster_defs.resources import DatabaseResource
from planexe_assets.dagster_defs.runs import LAUNCHED_BY_TAG, PLAN_ID_TAG, step_outcomes, unfinished_runs
from planexe_assets.lifecycle.plan_sync import steps_to_redo
from resources.models import Plan, PlanStatus

BACKFILL_SCHEDULE_NAME = "plan_backfill_schedule"
BACKFILL_CRON = "0 * * * *"
MAX_SCHEDULED_ATTEMPTS = 3
MAX_PLANS_PER_TICK = 10


def _run_status(instance: DagsterInstance, run_id: str | None):
    if not run_id:
        return None
    run = instance.get_run_by_id(run_id)
    return run.status if run is not None else None


def backfill_decision(instance: DagsterInstance, db, plan: Plan) -> tuple[list[str] | None, str]:
    """(steps to re-materialize, why) for one plan; steps None means: leave the plan alone."""
    plan_id = plan.plan_id
    runs = instance.get_run_records(RunsFilter(tags={PARTITION_NAME_TAG: plan_id}), limit=1)
    if not runs:
        return None, "never run by Dagster"
    if unfinished_runs(instance, plan_id):
        return None, "a run is queued or in progress"
    if plan.status in (PlanStatus.RUNNING, PlanStatus.PENDING):
        claimed = _run_status(instance, plan.last_run_id)
        if claimed is None:
            return (
                None,
                f"{plan.status} and claimed by {plan.last_run_id or 'nobody'}, not a run of this instance",
            )
        if claimed not in FINISHED_STATUSES:
            return None, f"its run {plan.last_run_id} is {claimed.value}"
    elif plan.status != PlanStatus.FAILED:
        return None, f"status {plan.status}"
    elif plan.recoverable is False:
        return (
            None,
            f"failed permanently at {plan.failed_step or 'its run'} ({plan.failure_reason}); it needs a change first",
        )
    attempts = instance.get_runs_count(
        RunsFilter(tags={PARTITION_NAME_TAG: plan_id, LAUNCHED_BY_TAG: BACKFILL_SCHEDULE_NAME})
    )
    if attempts >= MAX_SCHEDULED_ATTEMPTS:
        return None, f"{attempts} scheduled attempts already; run `planexe resume {plan_id}`"
    latest = runs[0].dagster_run
    failed = step_outcomes(instance, latest.run_id)[0] if latest.status == DagsterRunStatus.FAILURE else {}
    steps = steps_to_redo(db, plan_id, failed)
    if not steps:
        return None, "every step has its outputs and none failed in its latest run"
    return steps, f"{len(steps)} step(s) from {steps[0]}"


def backfill_requests(
    instance: DagsterInstance, db, scheduled_time: datetime | None, log=None
) -> list[RunRequest] | SkipReason:
    candidates = db.list_plans_by_status([PlanStatus.FAILED, PlanStatus.RUNNING, PlanStatus.PENDING])
    requests: list[RunRequest] = []
    skipped: list[str] = []
    stamp = (scheduled_time or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    for plan in candidates:
        if len(requests) >= MAX_PLANS_PER_TICK:
            break
        steps, why = backfill_decision(instance, db, plan)
        if steps is None:
            skipped.append(f"{plan.plan_id} ({why})")
            continue
        if log is not None:
            log.info(f"backfill of plan {plan.plan_id}: {why}: {', '.join(steps)}")
        requests.append(
            RunRequest(
                run_key=f"{plan.plan_id}@{stamp}",
                partition_key=plan.plan_id,
                asset_selection=[AssetKey(s) for s in steps],
                tags={
                    PLAN_ID_TAG: plan.plan_id,
                    LAUNCHED_BY_TAG: BACKFILL_SCHEDULE_NAME,
                    PROMPT_TAG: prompt_tag(plan.prompt),
                },
            )
        )
    if not requests:
        return SkipReason(
            "no plan to backfill" + (f"; left alone: {'; '.join(skipped[:20])}" if skipped else "")
        )
    return requests


@schedule(
    name=BACKFILL_SCHEDULE_NAME,
    cron_schedule=BACKFILL_CRON,
    job=full_plan_job,
    default_status=DefaultScheduleStatus.RUNNING,
    execution_timezone="UTC",
    description=(
        "Hourly: re-materializes failed or stranded plans, only their missing or failed assets and "
        f"what is downstream of them (at most {MAX_SCHEDULED_ATTEMPTS} scheduled attempts per plan)."
    ),
)
def plan_backfill_schedule(context: ScheduleEvaluationContext, database: DatabaseResource):
    return backfill_requests(
        context.instance, database.get_database_service(), context.scheduled_execution_time, log=context.log
    )


plan_schedules = [plan_backfill_schedule]
