"""The Dagster assets, built from the step table: one asset per implemented step.

Each asset is partitioned by plan, grouped by stage, and depends on exactly the upstream steps of
PlanExe's ``requires()``. Its body is thin: ``StepRunner.execute`` reads the upstream files from
``plan_content`` (one query for all of them, each verified against its sha256) and calls the
framework-free step function; the body returns the ``StepResult`` with metadata (LLM calls, tokens,
duration, models, a markdown preview of the main output), and the ``PlanContentIOManager`` writes
the files and rows.

The upstream steps are ``deps`` rather than IO-manager inputs: lineage is the same, and a step
skips Dagster's per-input loading (two events and one read per upstream step, about 350 per plan),
which the benchmark measured on the critical path. ``PlanContentIOManager.load_input`` still
serves ``load_asset_value`` and other readers.
"""


from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from planexe_assets.failure_policy import retry_decision
from planexe_assets.partitions import plans_partitions
from planexe_assets.redline import GATE_PRIORITY, GATE_STEP, RedlineGateClosed
from planexe_assets.runner import StepRunner, pipeline_steps
from planexe_assets.step_policies import LLM_POOL, llm_retry_policy, revive_plan_for_retry
from planexe_assets.step_table import Step
from planexe_assets.steps.base import PipelineStopRequested
from resources.dagster_resources import DatabaseResource, LLMResource
from resources.io_manager import PlanContentIOManager

IO_MANAGER_KEY = "plan_content_io_manager"


def _asset_for(step: Step) -> AssetsDefinition:
    description = (
        f"PlanExe {step.luigi_class} ({step.stage}). Outputs: {', '.join(step.filenames)}"
        + (f"; per-item files: {', '.join(step.side_outputs)}" if step.side_outputs else "")
        + f". LLM calls: {step.llm_calls}."
    )

    @asset(
        name=step.name,
        group_name=step.group,
        partitions_def=plans_partitions,
        deps=[AssetKey(dep) for dep in step.deps],
        io_manager_key=IO_MANAGER_KEY,
        description=description,
        kinds={"python", "llm"} if step.uses_llm else {"python"},
        metadata={
            "planexe_class": step.luigi_class,
            "stage": step.stage,
            "output_files": list(step.filenames),
            "llm_calls": step.llm_calls,
        },
        tags={"planexe/llm": "true" if step.uses_llm else "false"},
        pool=LLM_POOL if step.uses_llm else None,
        retry_policy=llm_retry_policy() if step.uses_llm else None,
        # The redline gate runs before the other steps that become ready with it (see redline.py).
        op_tags={"dagster/priority": str(GATE_PRIORITY)} if step.name in (GATE_STEP, "setup") else None,
    )
    def _step_asset(context: AssetExecutionContext, database: DatabaseResource, llm: LLMResource):
        plan_id = context.partition_key
        runner = StepRunner(
            io_store(context),
            llm_factory=llm.caller_factory(database.get_database_service(), should_stop=_stop_flag(context.run.run_id)),
            logger=context.log,
        )
        if context.retry_number > 0:
            revive_plan_for_retry(database.get_database_service(), plan_id, step.name, context.run.run_id)
        try:
            execution = runner.execute(plan_id, step.name, run_id=context.run.run_id)
        except PipelineStopRequested as exc:  # a stop is final: no retry policy applies
            raise Failure(description=f"{step.name}: stopped: {exc}", allow_retries=False) from exc
        except RedlineGateClosed as exc:  # refused, or not allowed yet: retrying cannot change that
            raise Failure(description=f"{step.name}: {exc}", allow_retries=False) from exc
        except Exception as exc:  # classified: permanent never retried, content at most N times
            raise classified_failure(step.name, exc, context.retry_number) from exc
        metadata = {
            "llm_calls": execution.llm_calls,
            "input_tokens": execution.input_tokens,
            "output_tokens": execution.output_tokens,
            "duration_seconds": round(execution.duration_seconds, 3),
            "models": ", ".join(execution.models) or "none",
            "preview": MetadataValue.md(execution.main_preview()),
        }
        if execution.cost_usd:
            metadata["cost_usd"] = round(execution.cost_usd, 6)
        for key, value in execution.result.notes.items():
            if isinstance(value, (int, float, str, bool)):
                metadata[f"note_{key}"] = value
            else:
                metadata[f"note_{key}"] = MetadataValue.json(value)
        return Output(execution.result, metadata=metadata)

    return _step_asset


def classified_failure(step_name: str, exc: BaseException, retry_number: int) -> Failure:
    """The step's error as a ``Failure`` carrying its ``FailureKind``; ``allow_retries`` says whether
    the asset's retry policy may run the step again (``failure_policy.py``)."""
    decision = retry_decision(exc, retry_number)
    return Failure(
        description=f"{step_name}: {type(exc).__name__}: {exc}",
        metadata=decision.metadata(exc, retry_number),
        allow_retries=decision.allow_retries,
    )


def _stop_flag(run_id: str):
    """True once the thread executor was asked to stop this run (planexe_assets/executor.py)."""
    from planexe_assets.executor import stop_requested

    return lambda: stop_requested(run_id)


def io_store(context: AssetExecutionContext):
    io_manager: PlanContentIOManager = getattr(context.resources, IO_MANAGER_KEY)
    return io_manager.store()


def build_step_assets() -> list[AssetsDefinition]:
    return [_asset_for(step) for step in pipeline_steps()]
