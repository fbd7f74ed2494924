"""One ``luigi.Task`` per step, generated from the step table with PlanExe's class names.

Every task has PlanExe's three significant parameters (``run_id_dir``, ``speedvsdetail``,
``llm_models``), passes them down with ``self.clone``, returns PlanExe's ``requires()`` dict (or the
single task when PlanExe's requires() returns one), and ``output()`` targets with the reference file
names in ``run_id_dir``. ``run()`` calls the shared ``StepRunner``: the same step function and the
same dual write (run directory + ``plan_content``) as the Dagster asset. The plan id is the run
directory's name, as in PlanExe.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import luigi

from planexe_assets.core import FULL_PLAN_PIPELINE_REQUIRES, PIPELINE_COMPLETE_FILENAME, SpeedVsDetail, Step
from planexe_assets.lifecycle.runner import COMPLETION_TEXT, StepRunner, pipeline_steps
from resources.database import get_database_service
from resources.llm_access import llm_access
from resources.plan_store import PlanStore

log = logging.getLogger("planexe.luigi")


# PlanExe's name for the mode enum; the same enum the steps use.
SpeedVsDetailEnum = SpeedVsDetail


def luigi_build_id() -> str:
    """One id per ``python -m legacy_luigi`` invocation (set by ``__main__``; inherited by workers)."""
    return os.environ.get("PLANEXE_LUIGI_BUILD_ID") or "luigi"


class PlanTask(luigi.Task):
    """Base of every generated task (PlanExe's ``PlanTask``)."""

    run_id_dir = luigi.PathParameter()
    speedvsdetail = luigi.EnumParameter(
        enum=SpeedVsDetailEnum, default=SpeedVsDetailEnum.ALL_DETAILS_BUT_SLOW
    )
    llm_models = luigi.ListParameter(default=("auto",))

    step: Step  # set on each generated subclass

    @property
    def plan_id(self) -> str:
        return Path(self.run_id_dir).name

    def store(self) -> PlanStore:
        return PlanStore(get_database_service(), Path(self.run_id_dir).resolve().parent)

    def requires(self):
        reqs = {key: self.clone(TASK_CLASSES[upstream]) for key, upstream in self.step.all_requires.items()}
        if list(reqs) == [""]:
            return reqs[""]
        return reqs

    def output(self):
        targets = {
            key: luigi.LocalTarget(str(Path(self.run_id_dir) / name))
            for key, name in self.step.outputs.items()
        }
        if list(targets) == [""]:
            return targets[""]
        return targets

    def run(self):
        store = self.store()
        access = llm_access(os.environ.get("PLANEXE_LLM_CONFIG") or None, store.db)
        models = list(self.llm_models)

        def factory(plan_id, stage, _plan_model):
            return access.executor(models).for_step(plan_id, stage)

        runner = StepRunner(store, llm_factory=factory, logger=log)
        runner.run(
            self.plan_id, self.step.name, run_id=luigi_build_id(), speed_vs_detail=self.speedvsdetail.value
        )


def _make_task_class(step: Step) -> type[PlanTask]:
    doc = f"{step.description} (PlanExe {step.luigi_class}: step {step.name!r}, {step.stage}; outputs {', '.join(step.filenames)}.)"
    return type(step.luigi_class, (PlanTask,), {"step": step, "__doc__": doc, "__module__": __name__})


TASK_CLASSES: dict[str, type[PlanTask]] = {step.name: _make_task_class(step) for step in pipeline_steps()}
globals().update({cls.__name__: cls for cls in TASK_CLASSES.values()})


class FullPlanPipeline(PlanTask):
    """The aggregate: requires every step (PlanExe's keys) and writes the completion marker."""

    step = None  # type: ignore[assignment]

    def requires(self):
        return {
            key: self.clone(TASK_CLASSES[name])
            for key, name in FULL_PLAN_PIPELINE_REQUIRES.items()
            if name in TASK_CLASSES
        }

    def output(self):
        return luigi.LocalTarget(str(Path(self.run_id_dir) / PIPELINE_COMPLETE_FILENAME))

    def run(self):
        # Every requirement is complete, so the runner has written the marker with the last step;
        # writing it here too covers a pipeline whose steps were all complete before this build.
        self.store().write(
            self.plan_id,
            "full_plan_pipeline",
            {PIPELINE_COMPLETE_FILENAME: COMPLETION_TEXT},
            run_id=luigi_build_id(),
        )
