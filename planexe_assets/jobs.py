"""Jobs over the plan assets."""

from dagster import AssetSelection, define_asset_job, in_process_executor

FULL_PLAN_JOB_NAME = "full_plan_job"

# Every plan asset, one partition (plan) per run. The in-process executor: the multiprocess one costs
# seconds per step on a small machine, and steps wait on LLMs, not on the CPU.
full_plan_job = define_asset_job(
    name=FULL_PLAN_JOB_NAME,
    selection=AssetSelection.all(),
    executor_def=in_process_executor,
    description="Materialize every step of one plan (partition key = plan id).",
)
