"""``PlanContentIOManager``: Dagster's side of the dual writer (see ``resources.plan_store``).

An asset returns its ``StepResult``; ``handle_output`` writes every file to
``$PLANEXE_HOME/runs/<plan_id>/`` and upserts its ``plan_content`` / ``plan_files`` rows (write order
and crash recovery are documented in ``plan_store``), drops per-item files an earlier run left
behind, and updates the plan's progress. ``load_input`` reads an upstream step's files from
``plan_content``, each checked against its sha256, as ``UpstreamFiles``, and restores any of them
missing from (or stale in) this process's run directory: with Celery or Kubernetes workers, each with
its own ``PLANEXE_HOME``, a step's upstream files were usually written on another machine. The
materialization metadata names the process that wrote the outputs (``worker``: host, pid,
``PLANEXE_HOME``).
"""

from pathlib import Path

from dagster import (
    ConfigurableIOManager,
    InitResourceContext,
    InputContext,
    OutputContext,
    ResourceDependency,
)
from pydantic import Field

from planexe_assets.core import STEP_BY_NAME, StepResult, UpstreamFiles
from planexe_assets.dagster_defs.resources import DatabaseResource
from planexe_assets.dagster_defs.run_partitions import ensure_run_partition
from planexe_assets.lifecycle.runner import StepRunner
from resources.config import runs_dir, worker_identity
from resources.plan_store import PlanStore


class PlanContentIOManager(ConfigurableIOManager):
    database: ResourceDependency[DatabaseResource]
    runs_root: str | None = Field(
        default=None, description="Run directories' parent; empty means $PLANEXE_HOME/runs."
    )

    def store(self) -> PlanStore:
        root = Path(self.runs_root) if self.runs_root else runs_dir()
        return PlanStore(self.database.get_database_service(), root)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Before any step of a run: a plan with a row has its partition (``run_partitions``; the
        ``planexe_threads`` executor has already refused a run whose partition names no plan)."""
        ensure_run_partition(context.instance, context.run, self.database.get_database_service())

    def handle_output(self, context: OutputContext, obj: StepResult) -> None:
        if not isinstance(obj, StepResult):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}, expected StepResult"
            )
        step_name = context.asset_key.path[-1]
        plan_id = context.partition_key
        runner = StepRunner(self.store(), llm_factory=_no_llm)
        written = runner.persist(plan_id, step_name, obj, run_id=context.run_id)
        context.add_output_metadata(
            {
                "files": [w.filename for w in written if w.filename in obj.files],
                "per_item_files": len(obj.side_files),
                "bytes_written": sum(w.size for w in written),
                "sha256": {w.filename: w.sha256 for w in written if w.filename in obj.files},
                "run_dir": str(runner.store.run_dir(plan_id)),
                "worker": worker_identity(),
            }
        )

    def load_input(self, context: InputContext) -> UpstreamFiles:
        step = STEP_BY_NAME[context.upstream_output.asset_key.path[-1]]
        plan_id = context.partition_key
        return UpstreamFiles(step=step, contents=self.store().read(plan_id, step.filenames))


def _no_llm(plan_id, stage, model):  # the IO manager never calls a model
    raise RuntimeError("the IO manager makes no LLM calls")
