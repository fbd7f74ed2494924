"""Re-materialize what is out of date in one plan: the ``refresh_plan`` job and ``plan_refresh_sensor``.

Dagster marks a plan's asset "Unsynced" (stale) when its code version changed since it was made (an
edited prompt, response model or renderer: ``planexe_assets/lifecycle/versions.py``) or an upstream asset has
a new data version. The UI shows it on the plan's partition of each asset, but its "Materialize
unsynced" action only looks at unpartitioned assets (Dagster 1.13 answers "All assets are up to
date" for partitioned ones), so this is the plan-level equivalent:

- ``stale_steps(instance, asset_graph, plan_id)`` asks Dagster's own ``CachingStaleStatusResolver``
  (what the UI's tag uses) which of the plan's assets are stale, in pipeline order, with the causes;
- the ``refresh_plan`` job (Launchpad config ``ops: refresh_request: config: plan_id: ...``) checks
  the plan and reports its stale assets and why (a dry run when ``launch`` is false);
- when such a run succeeds, ``plan_refresh_sensor`` requests one ``full_plan_job`` run for the plan
  with exactly the stale assets (``run_key`` = the refresh run's id, so one run per request), which
  the daemon's run queue launches.
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation at definition time.
from collections.abc import Sequence
from dataclasses import dataclass

from dagster import (
    AssetKey,
    Config,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    RunRequest,
    RunStatusSensorContext,
    SkipReason,
    in_process_executor,
    job,
    op,
    run_status_sensor,
)
from pydantic import Field

from planexe_assets.dagster_defs._internals import (
    CachingStaleStatusResolver,
    CheckError,
    LoadingContext,
    StaleStatus,
)
from planexe_assets.dagster_defs.asset_metadata import PROMPT_TAG, prompt_tag
from planexe_assets.dagster_defs.assets import build_step_assets, plan_resources
from planexe_assets.dagster_defs.jobs import full_plan_job
from planexe_assets.dagster_defs.partitions import PLANS_PARTITIONS_NAME
from planexe_assets.dagster_defs.resources import DatabaseResource
from planexe_assets.dagster_defs.runs import LAUNCHED_BY_TAG, PLAN_ID_TAG, unfinished_runs
from planexe_assets.lifecycle.runner import pipeline_steps
from resources.plan_ids import InvalidPlanId, validate_plan_id

REFRESH_JOB_NAME = "refresh_plan"
REFRESH_OP_NAME = "refresh_request"
REFRESH_SENSOR_NAME = "plan_refresh_sensor"


class _Loading(LoadingContext):
    """The data-loader cache the stale-status resolver wants, for one evaluation."""

    def __init__(self, instance: DagsterInstance):
        self._instance = instance
        self._loaders: dict = {}

    @property
    def instance(self) -> DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict:
        return self._loaders


@dataclass(frozen=True)
class StaleStep:
    name: str
    causes: tuple[str, ...]  # e.g. "identify_purpose has a new code version"


def stale_steps(instance: DagsterInstance, asset_graph, plan_id: str) -> list[StaleStep]:
    """The plan's stale assets in pipeline (topological) order, with Dagster's root causes."""
    resolver = CachingStaleStatusResolver(instance, asset_graph, loading_context=_Loading(instance))
    found: list[StaleStep] = []
    for step in pipeline_steps():
        key = AssetKey(step.name)
        if not asset_graph.has(key):
            continue
        if resolver.get_status(key, plan_id) == StaleStatus.STALE:
            causes = tuple(
                f"{cause.asset_key.to_user_string()} {cause.reason}"
                for cause in resolver.get_stale_root_causes(key, plan_id)
            )
            found.append(StaleStep(step.name, causes))
    return found


class RefreshPlanConfig(Config):
    plan_id: str = Field(description="The plan whose stale (Unsynced) assets to re-materialize.")
    launch: bool = Field(
        default=True,
        description="true: plan_refresh_sensor then launches one run with exactly the stale assets. false: only report them.",
    )


@op(
    name=REFRESH_OP_NAME,
    description="Report the plan's stale assets and why; plan_refresh_sensor re-runs them.",
)
def refresh_request_op(context: OpExecutionContext, config: RefreshPlanConfig, database: DatabaseResource):
    try:
        plan_id = validate_plan_id(config.plan_id.strip())
    except InvalidPlanId as exc:
        raise Failure(description=f"cannot refresh: {exc}", allow_retries=False) from None
    plan = database.get_database_service().get_plan(plan_id)
    if plan is None:
        raise Failure(
            description=f"cannot refresh plan {plan_id}: it has no row in plans", allow_retries=False
        )
    if not context.instance.has_dynamic_partition(PLANS_PARTITIONS_NAME, plan_id):
        raise Failure(
            description=f"cannot refresh plan {plan_id}: it has never run in Dagster (no partition)",
            allow_retries=False,
        )
    stale = stale_steps(context.instance, _asset_graph(context), plan_id)
    context.instance.add_run_tags(context.run_id, {PLAN_ID_TAG: plan_id, PROMPT_TAG: prompt_tag(plan.prompt)})
    if stale:
        context.log.info(
            f"plan {plan_id}: {len(stale)} stale asset(s): {', '.join(s.name for s in stale)}"
            + (
                "; plan_refresh_sensor launches one run for them"
                if config.launch
                else " (not launched: launch is false)"
            )
        )
    else:
        context.log.info(f"plan {plan_id}: every asset is up to date; nothing to re-run")
    causes = sorted({cause for s in stale for cause in s.causes})
    return Output(
        [s.name for s in stale],
        metadata={
            "plan_id": plan_id,
            "stale_assets": len(stale),
            "stale": MetadataValue.md("\n".join(f"- `{s.name}`" for s in stale) or "none"),
            "root_causes": MetadataValue.md("\n".join(f"- {c}" for c in causes) or "none"),
            "launch": config.launch,
        },
    )


def _asset_graph(context: OpExecutionContext):
    """The code location's asset graph; a job executed in process (tests) has no repository, so the
    assets of this process's code stand in."""
    try:
        return context.repository_def.asset_graph
    except CheckError:
        return Definitions(assets=build_step_assets(), resources=plan_resources()).resolve_asset_graph()


@job(
    name=REFRESH_JOB_NAME,
    executor_def=in_process_executor,
    description=(
        "Materialize stale for one plan: reports the plan's Unsynced assets (changed code or new "
        "upstream data) and, with launch: true, plan_refresh_sensor re-runs exactly those in one run."
    ),
    tags={"planexe/kind": REFRESH_JOB_NAME},
)
def refresh_plan_job():
    refresh_request_op()


def _requested_launch(context: RunStatusSensorContext) -> bool:
    config = (context.dagster_run.run_config or {}).get("ops", {}).get(REFRESH_OP_NAME, {}).get("config", {})
    return bool(config.get("launch", True))


@run_status_sensor(
    name=REFRESH_SENSOR_NAME,
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[refresh_plan_job],
    request_job=full_plan_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="After a refresh_plan run: one full_plan_job run of the plan with exactly its stale assets.",
)
def plan_refresh_sensor(context: RunStatusSensorContext):
    run = context.dagster_run
    plan_id = run.tags.get(PLAN_ID_TAG)
    if not plan_id:
        return SkipReason(f"refresh run {run.run_id} names no plan")
    if not _requested_launch(context):
        return SkipReason(f"refresh run {run.run_id} of plan {plan_id} was a dry run (launch: false)")
    if unfinished_runs(context.instance, plan_id):
        return SkipReason(
            f"plan {plan_id} has a run queued or in progress; refresh it when that run has ended"
        )
    stale = stale_steps(context.instance, context.repository_def.asset_graph, plan_id)
    if not stale:
        return SkipReason(f"plan {plan_id}: every asset is up to date")
    names: Sequence[str] = [s.name for s in stale]
    context.log.info(f"re-materializing {len(names)} stale asset(s) of plan {plan_id}: {', '.join(names)}")
    return RunRequest(
        run_key=f"refresh:{run.run_id}",
        partition_key=plan_id,
        asset_selection=[AssetKey(n) for n in names],
        tags={
            PLAN_ID_TAG: plan_id,
            LAUNCHED_BY_TAG: REFRESH_SENSOR_NAME,
            PROMPT_TAG: run.tags.get(PROMPT_TAG, ""),
        },
    )
