"""``create_plan``: start a plan from the Dagster UI (Launchpad), as ``planexe plan --queue`` does.

The job has one op whose run config is the plan request::

    ops:
      plan_request:
        config:
          prompt: "Open a vegan butcher shop in Copenhagen"
          model: auto               # a model id of llm_config.json, 'auto' or 'offline'
          speed: all_details        # or fast (fewer drafts, estimates and review rounds)
          plan_id: ""               # optional; empty: a new id
          refuse_on_redline: false  # optional; stop on a REFUSE verdict of the redline gate or an UNUSABLE screening

It validates the request exactly as the CLI does (``plans.create_plan``: prompt, plan id, model and
its API key variable, runs directory), stores the plan row as ``pending`` and adds the plan's
partition, so the plan shows up in every asset's partition list at once. It does not run the plan
itself: ``plan_launch_sensor`` launches it on its next tick (``PLANEXE_PLAN_SENSOR_INTERVAL``,
default 30 s) as one ``full_plan_job`` run with ``run_key`` = the plan id. That keeps one place
where plans become runs: Dagster's run key dedupe guarantees one run per plan, the run goes through
the run queue (``max_concurrent_runs``) like every other plan, and a failed launch is reported on
the plan's row by the same code. A bad request fails this run with the reason, and nothing is
written.
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation at definition time.
from enum import Enum

from dagster import (
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from planexe_assets.dagster_defs.asset_metadata import PROMPT_TAG, prompt_tag
from planexe_assets.dagster_defs.resources import DatabaseResource
from planexe_assets.dagster_defs.runs import PLAN_ID_TAG, add_plan_partition
from planexe_assets.dagster_defs.sensors import LAUNCH_SENSOR_NAME, sensor_interval_seconds
from planexe_assets.lifecycle.plans import MAX_PROMPT_BYTES, PlanInputError, PlanRequest, create_plan
from resources.config import ConfigError
from resources.plan_ids import InvalidPlanId

CREATE_PLAN_JOB_NAME = "create_plan"
OP_NAME = "plan_request"  # the run config's key: ops: plan_request: config: ...


class Speed(Enum):
    """PlanExe's speed-vs-detail setting."""

    all_details = "all_details"  # ALL_DETAILS_BUT_SLOW
    fast = "fast"  # FAST_BUT_SKIP_DETAILS


class CreatePlanConfig(Config):
    prompt: str = Field(
        description=f"The goal of the plan in plain words, with any context (at most {MAX_PROMPT_BYTES // 1024} KiB)."
    )
    model: str = Field(
        default="auto",
        description=(
            "'auto' (the configured models in priority order), 'offline', or a model id of llm_config.json "
            "(PLANEXE_LLM_CONFIG, else the packaged one); an unknown id fails the run with the list of known ones."
        ),
    )
    speed: Speed = Field(
        default=Speed.all_details,
        description="all_details: PlanExe's full plan. fast: fewer drafts, estimates, WBS items and review rounds.",
    )
    plan_id: str = Field(
        default="",
        description="Optional plan id (ASCII letters, digits, _ and -, at most 64). Empty: a new id.",
    )
    refuse_on_redline: bool | None = Field(
        default=None,
        description="true: stop the plan when the redline gate says REFUSE or the prompt screening says UNUSABLE. Empty: PLANEXE_REFUSE_ON_REDLINE decides (default advisory).",
    )


@op(
    name=OP_NAME,
    description="Validate the plan request, store the plan (pending) and its partition; the plan sensor launches it.",
)
def create_plan_op(context: OpExecutionContext, config: CreatePlanConfig, database: DatabaseResource):
    request = PlanRequest(
        prompt=config.prompt,
        model=config.model.strip() or "auto",
        fast=config.speed == Speed.fast,
        plan_id=config.plan_id.strip() or None,
        refuse_on_redline=config.refuse_on_redline,
    )
    from resources.llm import (
        LLMConfigError,  # deferred: resources.llm loads the openai client, which loading the definitions does not need
    )

    db = database.get_database_service()
    try:
        plan = create_plan(db, request)
    except (PlanInputError, InvalidPlanId, LLMConfigError, ConfigError) as exc:
        raise Failure(description=f"the plan was not created: {exc}", allow_retries=False) from None
    add_plan_partition(context.instance, plan.plan_id)
    context.instance.add_run_tags(
        context.run_id, {PLAN_ID_TAG: plan.plan_id, PROMPT_TAG: prompt_tag(plan.prompt)}
    )
    interval = sensor_interval_seconds()
    context.log.info(
        f"plan {plan.plan_id} created (status pending, model {plan.llm_model}, {plan.speed_vs_detail}); "
        f"{LAUNCH_SENSOR_NAME} launches it within about {interval} s while the daemon runs"
    )
    runs = f"/runs?q%5B0%5D=tag%3Adagster%2Fpartition%3D{plan.plan_id}"
    return Output(
        plan.plan_id,
        metadata={
            "plan_id": plan.plan_id,
            "status": plan.status,
            "model": plan.llm_model or "auto",
            "speed_vs_detail": plan.speed_vs_detail,
            "refuse_on_redline": bool(plan.refuse_on_redline),
            "run_dir": MetadataValue.path(plan.output_dir or ""),
            "plan_runs": MetadataValue.url(runs),
            "next": f"{LAUNCH_SENSOR_NAME} launches one full_plan_job run for it (run_key {plan.plan_id})",
        },
    )


@job(
    name=CREATE_PLAN_JOB_NAME,
    executor_def=in_process_executor,
    description=(
        "Start a plan from the Launchpad: the run config takes the prompt, model, speed (fast or "
        "all_details), an optional plan id and the redline setting. The plan is validated like "
        "`planexe plan`, stored as pending with its partition, and launched by plan_launch_sensor."
    ),
    tags={"planexe/kind": "create_plan"},
)
def create_plan_job():
    create_plan_op()
