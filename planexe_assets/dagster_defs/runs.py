"""A plan's runs in the Dagster instance: the instance itself, partitions, pool slots, run facts.

What the sensors, the backfill schedule, the refresh job, the CLI's plan worker and the importer
need to know or change about a plan's runs, through the public ``DagsterInstance`` API (and the
partition tag from ``_internals``):

- ``default_instance`` / ``ensure_dagster_home``: the instance of this process, its home prepared
  (``instance_config.prepare_dagster_home``);
- ``add_plan_partition``: the plan as a partition of ``plans``;
- ``release_pool_slots``: the ``llm`` pool slots a finished or dead run still holds;
- ``unfinished_runs``, ``latest_run_id``, ``step_outcomes``: how the plan's runs stand and ended.
"""

from __future__ import annotations

import uuid

from dagster import DagsterEventType, DagsterInstance, RunsFilter

from planexe_assets.dagster_defs._internals import NOT_FINISHED_STATUSES, PARTITION_NAME_TAG
from planexe_assets.dagster_defs.instance_config import prepare_dagster_home
from planexe_assets.dagster_defs.partitions import PLANS_PARTITIONS_NAME

PLAN_ID_TAG = "planexe/plan_id"
LAUNCHED_BY_TAG = "planexe/launched_by"
MAX_ERROR_MESSAGE_CHARS = 600


def ensure_dagster_home() -> str:
    """Use ``DAGSTER_HOME`` if set, else ``$PLANEXE_HOME/dagster`` (created on first use).

    A home without ``dagster.yaml`` gets ``planexe_assets/deploy/dagster.local.yaml`` (as ``planexe ui`` does), so
    the CLI's in-process runs and the UI's daemon share one instance and one ``llm`` pool.
    """
    return str(prepare_dagster_home())


def default_instance() -> DagsterInstance:
    ensure_dagster_home()
    return DagsterInstance.get()


def add_plan_partition(instance: DagsterInstance, plan_id: str) -> None:
    if not instance.has_dynamic_partition(PLANS_PARTITIONS_NAME, plan_id):
        instance.add_dynamic_partitions(PLANS_PARTITIONS_NAME, [plan_id])


def new_run_id() -> str:
    """A Dagster run id (Dagster's own form: a random UUID)."""
    return str(uuid.uuid4())


def release_pool_slots(instance: DagsterInstance, run_id: str) -> None:
    """Free the concurrency-pool slots (and pending claims) a finished or dead run still holds."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)


# -- Dagster-side facts about a plan's runs -----------------------------------------------------------
def unfinished_runs(instance: DagsterInstance, plan_id: str) -> int:
    """Runs of the plan's partition that are queued, starting, running or being cancelled."""
    return instance.get_runs_count(
        RunsFilter(tags={PARTITION_NAME_TAG: plan_id}, statuses=NOT_FINISHED_STATUSES)
    )


def latest_run_id(instance: DagsterInstance, plan_id: str) -> str | None:
    runs = instance.get_run_records(RunsFilter(tags={PARTITION_NAME_TAG: plan_id}), limit=1)
    return runs[0].dagster_run.run_id if runs else None


def _root_message(error) -> str:
    """The innermost cause of a serialized error: the step's own exception, not Dagster's wrapper."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    if error is None:
        return "unknown error"
    text = (error.message or "").strip()
    # "package.module.StepError: text" -> "StepError: text", the runner's own form
    qualified, sep, rest = text.partition(": ")
    if sep and error.cls_name and qualified.endswith(error.cls_name) and " " not in qualified:
        text = f"{error.cls_name}: {rest}"
    return text if len(text) <= MAX_ERROR_MESSAGE_CHARS else text[:MAX_ERROR_MESSAGE_CHARS] + "…"


def step_outcomes(instance: DagsterInstance, run_id: str) -> tuple[dict[str, str], list[str]]:
    """(failed step -> error message, steps that started and never finished) of a run."""
    records = instance.get_records_for_run(
        run_id,
        of_type={
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_SUCCESS,
            DagsterEventType.STEP_FAILURE,
            DagsterEventType.STEP_SKIPPED,
            DagsterEventType.STEP_UP_FOR_RETRY,
        },
    ).records
    failed: dict[str, str] = {}
    open_steps: dict[str, None] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            open_steps[event.step_key] = None
        else:
            open_steps.pop(event.step_key, None)
            if event.event_type == DagsterEventType.STEP_FAILURE:
                failed[event.step_key] = _root_message(event.step_failure_data.error)
    return failed, list(open_steps)
