"""A run for a plan needs the plan's row and its Dagster partition; make sure of both at run start.

Dagster's own tools start runs for a partition key they are given (``dagster job execute --tags
'{"dagster/partition": "<plan>"}'``, a backfill, the UI's launchpad). A plan created by another
client (``plans.create_plan``, SQL, another service) has a row in ``plans`` but no Dagster partition
until the sensor or a ``planexe`` command adds one; Dagster then fails each step with "Partition
range <plan> to <plan> is not a valid range". And a partition key with no plan row behind it would
only fail once the first step looks the plan up.

``ensure_run_partition`` runs when the run's resources are set up (the ``PlanContentIOManager``
calls it), before any step: a plan row without a partition gets its partition; a partition key
with no plan row fails the run at once with a message that says what to do. A run without the
``planexe/prompt`` tag gets it here (the plan's prompt, one line, trimmed), wherever it was started.
"""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRun
from dagster._core.storage.tags import PARTITION_NAME_TAG

from planexe_assets.asset_metadata import PROMPT_TAG, prompt_tag
from planexe_assets.partitions import PLANS_PARTITIONS_NAME
from resources.database import DatabaseService
from resources.plan_ids import InvalidPlanId, validate_plan_id


class PlanNotRunnable(RuntimeError):
    """The run names a plan that cannot run (no row, or an invalid id); the message says why."""


def ensure_run_partition(
    instance: DagsterInstance | None, run: DagsterRun | None, db: DatabaseService
) -> str | None:
    """Register the run's plan as a partition if its row exists; refuse a plan that has no row.

    Returns the plan id, or None for a run without a partition (nothing to do).
    """
    if instance is None or run is None:
        return None
    plan_id = run.tags.get(PARTITION_NAME_TAG)
    if not plan_id:
        return None
    try:
        validate_plan_id(plan_id)
    except InvalidPlanId as exc:
        raise PlanNotRunnable(f"run {run.run_id} targets partition {plan_id!r}: {exc}") from None
    plan = db.get_plan(plan_id)
    if plan is None:
        raise PlanNotRunnable(
            f"run {run.run_id} targets plan {plan_id}, which has no row in plans; create the plan first "
            "(the create_plan job in the Launchpad, `planexe plan`, or planexe_assets.plans.create_plan) "
            f"and then start the run. A partition added by hand has no plan behind it: plan_launch_sensor "
            f"removes {plan_id!r} from the partitions within two ticks (or now, with DAGSTER_HOME set: "
            f"python -c \"from dagster import DagsterInstance; DagsterInstance.get().delete_dynamic_partition("
            f"'plans', '{plan_id}')\")"
        )
    if not instance.has_dynamic_partition(PLANS_PARTITIONS_NAME, plan_id):
        instance.add_dynamic_partitions(PLANS_PARTITIONS_NAME, [plan_id])
    if PROMPT_TAG not in run.tags:  # runs started from the UI, the CLI or `dagster job execute`
        instance.add_run_tags(run.run_id, {PROMPT_TAG: prompt_tag(plan.prompt)})
    return plan_id
