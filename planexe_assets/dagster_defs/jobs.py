"""Jobs over the plan assets."""

from dagster import AssetSelection, define_asset_job

from planexe_assets.dagster_defs.executor import planexe_executor

FULL_PLAN_JOB_NAME = "full_plan_job"

# Every plan asset, one partition (plan) per run. The executor runs the ready steps of the run on
# threads of one process (planexe_assets/dagster_defs/executor.py; run config `execution: config: threads:
# max_concurrent: N`, or `in_process: {}` for Dagster's one-step-at-a-time executor): steps wait on
# LLMs, not on the CPU, and the multiprocess executor costs seconds per step on a small machine.
full_plan_job = define_asset_job(
    name=FULL_PLAN_JOB_NAME,
    selection=AssetSelection.all(),
    executor_def=planexe_executor,
    description="Materialize every step of one plan (partition key = plan id).",
)
