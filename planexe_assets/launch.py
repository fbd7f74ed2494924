"""Launching plan runs from Python (the CLI and tests): partition registration and in-process runs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance

from planexe_assets.jobs import FULL_PLAN_JOB_NAME
from planexe_assets.partitions import PLANS_PARTITIONS_NAME
from resources.config import dagster_home


def ensure_dagster_home() -> str:
    """Use ``DAGSTER_HOME`` if set, else ``$PLANEXE_HOME/dagster`` (created on first use)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(dagster_home())
        os.environ["DAGSTER_HOME"] = home
    os.makedirs(home, exist_ok=True)
    return home


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
) -> RunOutcome:
    """Materialise the plan's assets (all, or ``steps``) in this process. Never raises on step failure."""
    from planexe_assets.definitions import defs

    add_plan_partition(instance, plan_id)
    job = defs.resolve_job_def(FULL_PLAN_JOB_NAME)
    selection = [AssetKey(s) for s in steps] if steps is not None else None
    result = job.execute_in_process(
        partition_key=plan_id,
        instance=instance,
        raise_on_error=False,
        asset_selection=selection,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={"planexe/plan_id": plan_id, **(tags or {})},
    )
    failed = [
        event.step_key
        for event in result.all_events
        if event.is_step_failure and event.step_key is not None
    ]
    return RunOutcome(success=result.success, run_id=result.run_id, failed_steps=failed)
