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

Versions (``planexe_assets/lifecycle/versions.py``): each asset's ``code_version`` hashes the code that produced
it (its step's prompts, response models, renderers and helpers, and its upstream steps' versions),
and each materialization records a ``DataVersion``, the sha256 of the files it wrote; Dagster's
"Unsynced" status and "Materialize stale" follow from both. Descriptions, owners, code references,
previews and usage metadata come from ``planexe_assets/dagster_defs/asset_metadata.py``.
"""

import warnings

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BetaWarning,
    DataVersion,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from planexe_assets.core import PipelineStopRequested, Step
from planexe_assets.dagster_defs import asset_metadata
from planexe_assets.dagster_defs.executor import stop_requested
from planexe_assets.dagster_defs.io_manager import PlanContentIOManager
from planexe_assets.dagster_defs.partitions import plans_partitions
from planexe_assets.dagster_defs.resources import DatabaseResource, LLMResource
from planexe_assets.dagster_defs.step_policies import (
    LLM_POOL,
    dagster_will_retry,
    llm_retry_policy,
    retries_enabled,
)
from planexe_assets.lifecycle.failure_policy import retry_decision
from planexe_assets.lifecycle.plan_sync import revive_plan_for_retry
from planexe_assets.lifecycle.redline import GATE_PRIORITY, GATE_STEPS, RedlineGateClosed
from planexe_assets.lifecycle.runner import StepExecution, StepRunner, pipeline_steps
from planexe_assets.lifecycle.versions import StepVersion, data_version, step_versions
from resources.models import utcnow

IO_MANAGER_KEY = "plan_content_io_manager"

# Output(data_version=...) is marked beta in Dagster 1.13; it is the documented way to record one.
warnings.filterwarnings(
    "ignore", message=r"Parameter `data_version` of initializer `Output", category=BetaWarning
)


def _asset_for(step: Step, version: StepVersion) -> AssetsDefinition:
    retry_policy = llm_retry_policy() if step.uses_llm else None

    @asset(
        name=step.name,
        group_name=step.group,
        partitions_def=plans_partitions,
        deps=[AssetKey(dep) for dep in step.deps],
        io_manager_key=IO_MANAGER_KEY,
        description=step.description,
        owners=asset_metadata.asset_owners(),
        code_version=version.code_version,
        kinds={"python", "llm"} if step.uses_llm else {"python"},
        metadata=asset_metadata.definition_metadata(step, version.fingerprint, version.code_version),
        tags={"planexe/llm": "true" if step.uses_llm else "false"},
        pool=LLM_POOL if step.uses_llm else None,
        retry_policy=retry_policy,
        # The gate steps run before the other steps that become ready with them (see redline.py).
        op_tags={"dagster/priority": str(GATE_PRIORITY)} if step.name in (*GATE_STEPS, "setup") else None,
    )
    def _step_asset(context: AssetExecutionContext, database: DatabaseResource, llm: LLMResource):
        plan_id = context.partition_key
        started_at = utcnow()
        runner = StepRunner(
            io_store(context),
            llm_factory=llm.caller_factory(
                database.get_database_service(), should_stop=_stop_flag(context.run.run_id)
            ),
            logger=context.log,
            should_stop=_stop_flag(context.run.run_id),
        )
        if context.retry_number > 0:
            revive_plan_for_retry(database.get_database_service(), plan_id, step.name, context.run.run_id)
        enabled = retries_enabled(context.run.run_config)

        def will_retry(exc: BaseException) -> bool:
            raised = _raised_for(step, exc, context.retry_number)
            return dagster_will_retry(raised, context.retry_number, retry_policy, enabled)

        try:
            execution = runner.execute(plan_id, step.name, run_id=context.run.run_id, will_retry=will_retry)
        except Exception as exc:
            raised = _raised_for(step, exc, context.retry_number)
            if raised is exc:
                raise
            raise raised from exc
        files = {**execution.result.files, **execution.result.side_files}
        return Output(
            execution.result,
            metadata=_materialization_metadata(context, database, step, execution, started_at),
            data_version=DataVersion(data_version(files)),
        )

    return _step_asset


def _raised_for(step: Step, exc: BaseException, retry_number: int) -> BaseException:
    """What the asset raises for an error of its step in attempt ``retry_number``: a ``Failure``
    whose ``allow_retries`` says whether Dagster's retry policy may run the step again. A stop or a
    closed redline gate is final; any other error is classified by ``failure_policy`` (permanent:
    never retried; content: at most ``PLANEXE_LLM_STEP_CONTENT_RETRIES`` times; transient: the
    policy's retries). ``dagster_will_retry`` reads the same object, so the plan row's
    no-flicker prediction and Dagster's decision agree."""
    if isinstance(exc, PipelineStopRequested):  # a stop is final
        return Failure(description=f"{step.name}: stopped: {exc}", allow_retries=False)
    if isinstance(exc, RedlineGateClosed):  # refused, or not allowed yet: retrying cannot change that
        return Failure(description=f"{step.name}: {exc}", allow_retries=False)
    return classified_failure(step.name, exc, retry_number)


def classified_failure(step_name: str, exc: BaseException, retry_number: int) -> Failure:
    """The step's error as a ``Failure`` carrying its ``FailureKind``; ``allow_retries`` says whether
    the asset's retry policy may run the step again (``failure_policy.py``)."""
    decision = retry_decision(exc, retry_number)
    return Failure(
        description=f"{step_name}: {type(exc).__name__}: {exc}",
        metadata=decision.metadata(exc, retry_number),
        allow_retries=decision.allow_retries,
    )


def _materialization_metadata(
    context: AssetExecutionContext,
    database: DatabaseResource,
    step: Step,
    execution: StepExecution,
    started_at,
) -> dict:
    """Usage (dagster-openai's key names plus attempts), duration, models, notes and a preview; the
    report adds its outline, its path and the plan's totals (see ``asset_metadata``)."""
    plan_id = context.partition_key
    db = database.get_database_service()
    metadata: dict = {}
    if step.uses_llm:
        attempts = db.usage_totals(plan_id, stage=step.name, since=started_at)
        metadata.update(asset_metadata.usage_metadata(execution.usage, attempts.attempts, attempts.failed))
        if execution.cost_usd:
            metadata["cost_usd"] = round(execution.cost_usd, 6)
    metadata["duration_seconds"] = round(execution.duration_seconds, 3)
    metadata["models"] = ", ".join(execution.models) or "none"
    if step.name == "report":
        [(name, html)] = execution.result.files.items()
        path = io_store(context).run_dir(plan_id) / name
        metadata["preview"] = MetadataValue.md(asset_metadata.report_preview(html, path))
        metadata["report_path"] = MetadataValue.path(str(path))
        metadata.update(asset_metadata.plan_totals_metadata(db.usage_totals(plan_id)))
    else:
        metadata["preview"] = MetadataValue.md(asset_metadata.preview(execution.result.files))
    for key, value in execution.result.notes.items():
        if isinstance(value, (int, float, str, bool)):
            metadata[f"note_{key}"] = value
        else:
            metadata[f"note_{key}"] = MetadataValue.json(value)
    return metadata


def _stop_flag(run_id: str):
    """True once the thread executor was asked to stop this run (``executor.stop_requested``)."""
    return lambda: stop_requested(run_id)


def io_store(context: AssetExecutionContext):
    io_manager: PlanContentIOManager = getattr(context.resources, IO_MANAGER_KEY)
    return io_manager.store()


def plan_resources() -> dict:
    """The resources the plan assets need: the application database, the LLM layer and the IO
    manager of the dual writer (which shares the database resource)."""
    database = DatabaseResource()
    return {
        "database": database,
        "llm": LLMResource(),
        IO_MANAGER_KEY: PlanContentIOManager(database=database),
    }


def build_step_assets() -> list[AssetsDefinition]:
    steps = pipeline_steps()
    versions = step_versions([step.name for step in steps])
    return list(asset_metadata.link_to_git([_asset_for(step, versions[step.name]) for step in steps]))
