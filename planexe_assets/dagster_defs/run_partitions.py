"""A run for a plan needs the plan's row and its Dagster partition; make sure of both at run start.

Dagster's own tools start runs for a partition key they are given (``dagster job execute --tags
'{"dagster/partition": "<plan>"}'``, a backfill, the UI's launchpad). A plan created by another
client (``plans.create_plan``, SQL, another service) has a row in ``plans`` but no Dagster partition
until the sensor or a ``planexe`` command adds one; Dagster then fails each step with "Partition
range <plan> to <plan> is not a valid range". And a partition key with no plan row behind it would
only fail once the first step looks the plan up.

``check_run_plan`` runs once per run, in the ``planexe_threads`` executor (either of its modes)
before resources are set up or any step starts: a plan row without a partition gets its partition;
a partition key with no plan row (or an invalid one) fails the run at once, with one message that
says what to do. Raised there, the error is reported once, as the run's failure; raised while
resources are set up it was reported four times (Dagster sets the resources up again to build the
result it returns), with a long traceback each time. A run without the ``planexe/prompt`` tag gets
it there and in ``ensure_run_partition`` (the plan's prompt, one line, trimmed), wherever it was started.

``ensure_run_partition`` is the part that needs no refusal: the ``PlanContentIOManager`` calls it
when a run's resources are set up, so runs on other executors register the partition too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance, DagsterRun

from planexe_assets.dagster_defs._internals import PARTITION_NAME_TAG
from planexe_assets.dagster_defs.asset_metadata import PROMPT_TAG, prompt_tag
from planexe_assets.dagster_defs.partitions import PLANS_PARTITIONS_NAME
from resources.database import DatabaseService, get_database_service
from resources.plan_ids import InvalidPlanId, validate_plan_id


class PlanNotRunnable(RuntimeError):
    """The run names a plan that cannot run (no row, or an invalid id); the message says why."""


def check_run_plan(
    instance: DagsterInstance | None, run: DagsterRun | None, db: DatabaseService
) -> str | None:
    """Refuse a run whose partition names no plan; register the plan's partition if it is missing.

    Returns the plan id, or None for a run without a partition (nothing to do).
    """
    plan_id = _plan_id(run)
    if plan_id is None or instance is None:
        return None
    try:
        validate_plan_id(plan_id)
    except InvalidPlanId as exc:
        raise PlanNotRunnable(f"run {run.run_id} targets partition {plan_id!r}: {exc}") from None
    plan = db.get_plan(plan_id)
    if plan is None:
        raise PlanNotRunnable(
            f"run {run.run_id} targets plan {plan_id}, which has no row in plans; create the plan first "
            "(the create_plan job in the Launchpad, `planexe plan`, or planexe_assets.lifecycle.plans.create_plan) "
            f"and then start the run. A partition added by hand has no plan behind it: plan_launch_sensor "
            f"removes {plan_id!r} from the partitions within two ticks (or now, with DAGSTER_HOME set: "
            f'python -c "from dagster import DagsterInstance; DagsterInstance.get().delete_dynamic_partition('
            f"'plans', '{plan_id}')\")"
        )
    _register(instance, run, plan)
    return plan_id


def ensure_run_partition(
    instance: DagsterInstance | None, run: DagsterRun | None, db: DatabaseService
) -> str | None:
    """Register the run's plan as a partition if its row exists; never raises for a missing row
    (``check_run_plan`` refuses those before resources are set up)."""
    plan_id = _plan_id(run)
    if plan_id is None or instance is None:
        return None
    try:
        validate_plan_id(plan_id)
    except InvalidPlanId:
        return None
    plan = db.get_plan(plan_id)
    if plan is None:
        return None
    _register(instance, run, plan)
    return plan_id


def database_for_run(run_config: Mapping[str, Any] | None) -> DatabaseService:
    """The application database a run's ``database`` resource will use: the URL given in its run
    config (``resources: database: config: url``), else ``DATABASE_URL`` / the default."""
    resources = (run_config or {}).get("resources") or {}
    config = ((resources.get("database") or {}).get("config") or {}) if isinstance(resources, Mapping) else {}
    return get_database_service(config.get("url") or None)


def _plan_id(run: DagsterRun | None) -> str | None:
    if run is None:
        return None
    return run.tags.get(PARTITION_NAME_TAG) or None


def _register(instance: DagsterInstance, run: DagsterRun, plan) -> None:
    """The plan's partition, and the run's ``planexe/prompt`` tag (runs started from the UI, the CLI
    or ``dagster job execute`` alike)."""
    if not instance.has_dynamic_partition(PLANS_PARTITIONS_NAME, plan.plan_id):
        instance.add_dynamic_partitions(PLANS_PARTITIONS_NAME, [plan.plan_id])
    if PROMPT_TAG not in run.tags:
        instance.add_run_tags(run.run_id, {PROMPT_TAG: prompt_tag(plan.prompt)})
