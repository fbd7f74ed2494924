"""Running a plan from Python (the CLI's plan worker, the importer, tests, the benchmark).

``run_plan_in_process`` materialises a plan's assets (all, or some) in this process with
``full_plan_job``'s own executor (``planexe_threads``: the ready steps on threads; or Dagster's
in-process executor), registering the plan's partition first and freeing its ``llm`` pool slots
after. It is the top of the Dagster adapter: it runs the job of the composed definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, DagsterInstance, reconstructable

from planexe_assets.dagster_defs._internals import PARTITION_NAME_TAG, execute_run
from planexe_assets.dagster_defs.definitions import defs
from planexe_assets.dagster_defs.jobs import FULL_PLAN_JOB_NAME
from planexe_assets.dagster_defs.runs import add_plan_partition, new_run_id, release_pool_slots


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    failed_steps: list[str]


def run_plan_in_process(
    plan_id: str,
    instance: DagsterInstance,
    steps: Iterable[str] | None = None,
    tags: dict[str, str] | None = None,
    log_level: str = "INFO",
    run_id: str | None = None,
    executor: str = "threads",
    max_concurrent: int | None = None,
) -> RunOutcome:
    """Materialise the plan's assets (all, or ``steps``) in this process. Never raises on step failure.

    ``executor``: ``"threads"`` (default: independent steps run concurrently on threads, at most
    ``max_concurrent`` at once, see ``planexe_assets.dagster_defs.executor``) or ``"in_process"`` (one at a time).

    ``run_id``: the Dagster run id to use, e.g. the one the plan row was claimed with (see
    ``planexe_assets.lifecycle.plans.PlanRequest.claimed_by_run``); default a new one.
    """
    add_plan_partition(instance, plan_id)
    selection = [AssetKey(s) for s in steps] if steps is not None else None
    run_id = run_id or new_run_id()
    try:
        result = execute_plan_run(
            instance,
            plan_id,
            asset_selection=selection,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            tags={"planexe/plan_id": plan_id, **(tags or {})},
            run_id=run_id,
            executor_choice=executor,
            max_concurrent=max_concurrent,
        )
    finally:
        # An interrupted run (Ctrl-C) must not keep `llm` pool slots: nothing else frees them
        # without a daemon.
        release_pool_slots(instance, run_id)
    failed = [
        event.step_key for event in result.all_events if event.is_step_failure and event.step_key is not None
    ]
    return RunOutcome(success=result.success, run_id=result.run_id, failed_steps=failed)


EXECUTOR_CHOICES = ("threads", "in_process")


def full_plan_job_definition():
    """The ``full_plan_job`` of ``defs`` (the target of ``reconstructable`` in ``execute_plan_run``)."""
    return defs.resolve_job_def(FULL_PLAN_JOB_NAME)


def execution_run_config(executor_choice: str = "threads", max_concurrent: int | None = None) -> dict:
    """The ``execution`` block of a ``full_plan_job`` run config."""
    if executor_choice not in EXECUTOR_CHOICES:
        raise ValueError(f"unknown executor {executor_choice!r}; choose one of {', '.join(EXECUTOR_CHOICES)}")
    if executor_choice == "in_process":
        return {"config": {"in_process": {}}}
    if max_concurrent is not None and max_concurrent < 1:
        raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
    return {"config": {"threads": {"max_concurrent": max_concurrent or 0}}}


def execute_plan_run(
    instance,
    plan_id: str,
    *,
    asset_selection=None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
    executor_choice: str = "threads",
    max_concurrent: int | None = None,
):
    """Run ``full_plan_job`` for one plan partition in this process with the job's own executor.

    ``JobDefinition.execute_in_process`` always swaps in the in-process executor, so this creates the
    run (with ``run_id`` if given, the partition tag, the job's tags) and executes it with
    ``execute_run`` on a reconstructable pointer to the job: the executor configured by
    ``execution_run_config`` is the one that runs. Returns Dagster's ``JobExecutionResult``; step
    failures do not raise.
    """
    recon = reconstructable(full_plan_job_definition)
    job_def = recon.get_definition()
    config = dict(run_config or {})
    config["execution"] = execution_run_config(executor_choice, max_concurrent)
    run_tags = {**job_def.run_tags, **(tags or {}), PARTITION_NAME_TAG: plan_id}
    dagster_run = instance.create_run_for_job(
        job_def=job_def,
        run_id=run_id,
        run_config=config,
        tags=run_tags,
        job_code_origin=recon.get_python_origin(),
        asset_selection=frozenset(asset_selection) if asset_selection else None,
    )
    return execute_run(recon, dagster_run, instance, raise_on_error=False)
