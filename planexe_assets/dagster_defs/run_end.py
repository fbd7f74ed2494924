"""Ending a run started by ``planexe plan`` / ``planexe resume``: Dagster's run and the plan row agree.

The CLI's plan worker (``planexe_assets.cli.plan_worker``) calls ``settle_run`` when its run has ended,
and when it gives up waiting for the steps in flight after a stop; the CLI calls it when the worker
died without doing so (killed, crashed). It is idempotent, and safe to call from either side:

- a run that is still STARTED / CANCELING is ended through the public instance API: CANCELED when a
  stop was requested (``stopped_by``), FAILURE otherwise (``died``: what happened to its process);
- its ``llm`` pool slots are freed;
- the plan row is reconciled with what is stored (``plan_sync.reconcile_after_run``, as the run-status
  sensors do): a canceled run leaves the plan ``stopped``, a failed one ``failed`` with its failure
  fields, open LLM attempts are closed, ``plan_metrics`` recomputed;
- a run that never got created (stopped or dead before it started) leaves the plan ``stopped`` or
  ``failed`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import DagsterInstance, DagsterRunStatus

from planexe_assets.dagster_defs.runs import latest_run_id, release_pool_slots, step_outcomes
from planexe_assets.lifecycle.plan_sync import (
    RUN_CANCELED,
    RUN_FAILURE,
    RUN_SUCCESS,
    RunEnd,
    reconcile_after_run,
    settle_runless,
    utc_naive_from_timestamp,
)

_OUTCOME = {
    DagsterRunStatus.SUCCESS: RUN_SUCCESS,
    DagsterRunStatus.FAILURE: RUN_FAILURE,
    DagsterRunStatus.CANCELED: RUN_CANCELED,
}


@dataclass(frozen=True)
class Settled:
    run_status: DagsterRunStatus | None  # None: the run was never created
    plan_status: str | None  # None: the plan has no row


def settle_run(
    instance: DagsterInstance,
    db,
    plan_id: str,
    run_id: str,
    *,
    stopped_by: str | None = None,
    died: str | None = None,
) -> Settled:
    """End ``run_id`` in Dagster if it has not ended, free its pool slots, and bring the plan row in line."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return Settled(None, settle_runless(db, plan_id, run_id, stopped_by, died))
    if not run.is_finished:
        if stopped_by is not None:
            if run.status != DagsterRunStatus.CANCELING:
                instance.report_run_canceling(run, message=f"Stop requested ({stopped_by}).")
            instance.report_run_canceled(
                instance.get_run_by_id(run_id) or run,
                message=f"Run stopped ({stopped_by}); the steps still in flight were abandoned.",
            )
        else:
            instance.report_run_failed(
                run, message=f"The run's process ended before the run did: {died or 'unknown cause'}."
            )
    release_pool_slots(instance, run_id)
    record = instance.get_run_record_by_id(run_id)
    status = record.dagster_run.status
    plan = db.get_plan(plan_id)
    if plan is None:
        return Settled(status, None)
    if not _is_latest_run(instance, plan_id, run_id):
        return Settled(status, plan.status)  # a newer run owns the plan row now
    failed, interrupted = step_outcomes(instance, run_id)
    outcome = _OUTCOME.get(status, RUN_FAILURE)
    if stopped_by is not None and outcome == RUN_FAILURE and not failed:
        # Interrupted before Dagster knew it was a stop (a stop that arrived as the run started).
        outcome = RUN_CANCELED
    end = RunEnd(
        run_id=run_id,
        outcome=outcome,
        ended_at=utc_naive_from_timestamp(record.end_time),
        message=died,
        failed_steps=failed,
        interrupted_steps=interrupted,
        stopped_by=stopped_by,
    )
    result = reconcile_after_run(db, plan_id, end)
    return Settled(status, result.status if result is not None else None)


def _is_latest_run(instance: DagsterInstance, plan_id: str, run_id: str) -> bool:
    latest = latest_run_id(instance, plan_id)
    return latest is None or latest == run_id
