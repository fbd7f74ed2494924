"""Launching plan runs from Python (the CLI and tests): partition registration and in-process runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance

from planexe_assets.dagster_defs.partitions import PLANS_PARTITIONS_NAME


def ensure_dagster_home() -> str:
    """Use ``DAGSTER_HOME`` if set, else ``$PLANEXE_HOME/dagster`` (created on first use).

    A home without ``dagster.yaml`` gets ``deploy/dagster.local.yaml`` (as ``planexe ui`` does), so
    the CLI's in-process runs and the UI's daemon share one instance and one ``llm`` pool.
    """
    from planexe_assets.dagster_defs.instance_config import prepare_dagster_home

    return str(prepare_dagster_home())


def default_instance() -> DagsterInstance:
    ensure_dagster_home()
    return DagsterInstance.get()


def add_plan_partition(instance: DagsterInstance, plan_id: str) -> None:
    if not instance.has_dynamic_partition(PLANS_PARTITIONS_NAME, plan_id):
        instance.add_dynamic_partitions(PLANS_PARTITIONS_NAME, [plan_id])


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
        from planexe_assets.dagster_defs.executor import execute_plan_run

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
        event.step_key
        for event in result.all_events
        if event.is_step_failure and event.step_key is not None
    ]
    return RunOutcome(success=result.success, run_id=result.run_id, failed_steps=failed)


def new_run_id() -> str:
    """A Dagster run id (Dagster's own form: a random UUID)."""
    return str(uuid.uuid4())


def release_pool_slots(instance: DagsterInstance, run_id: str) -> None:
    """Free the concurrency-pool slots (and pending claims) a finished or dead run still holds."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)
