"""``full_plan_job`` on Dagster's public executors, for the executor comparison of ``python -m bench``.

The project's job runs on ``planexe_threads`` (``planexe_assets/dagster_defs/executor.py``), which
reaches into Dagster's private modules. Whether it earns that is measured here: the same job, the
same plan, the same latency server, executed by Dagster's own ``multiprocess_executor`` (every step
in its own process, started from a forkserver that has the definitions imported already) and by
Dagster's own ``in_process_executor`` (one step at a time, in the run's process).

The jobs are module-level values so that a reconstructable pointer (``bench.public_executors``,
``multiprocess_job``) names them: the multiprocess executor's step processes load the job from that
pointer, and the forkserver preloads this module (``PRELOAD_MODULES``) so each step process starts
with every import done and the job resolved.
"""

from __future__ import annotations

from dagster import DagsterInstance, in_process_executor, multiprocess_executor, reconstructable

from bench.run_plan import PUBLIC_EXECUTORS
from planexe_assets.dagster_defs._internals import PARTITION_NAME_TAG, execute_run
from planexe_assets.dagster_defs.launch import RunOutcome, full_plan_job_definition
from planexe_assets.dagster_defs.runs import add_plan_partition, new_run_id, release_pool_slots

#: What the forkserver imports before it forks a step process: this module, hence the definitions.
PRELOAD_MODULES = ["bench.public_executors"]

_MULTIPROCESS_JOB = full_plan_job_definition().with_executor_def(multiprocess_executor)
_IN_PROCESS_JOB = full_plan_job_definition().with_executor_def(in_process_executor)


def multiprocess_job():
    """``full_plan_job`` with Dagster's ``multiprocess_executor``."""
    return _MULTIPROCESS_JOB


def in_process_job():
    """``full_plan_job`` with Dagster's ``in_process_executor``."""
    return _IN_PROCESS_JOB


def execution_config(executor: str, max_concurrent: int) -> dict:
    """The run config's ``execution`` block for one of ``PUBLIC_EXECUTORS``."""
    if executor == "multiprocess":
        return {
            "config": {
                "max_concurrent": max_concurrent,
                "start_method": {"forkserver": {"preload_modules": list(PRELOAD_MODULES)}},
            }
        }
    if executor == "public_in_process":
        return {"config": {}}
    raise ValueError(f"unknown public executor {executor!r}; choose one of {', '.join(PUBLIC_EXECUTORS)}")


def run_plan_on_public_executor(
    plan_id: str, instance: DagsterInstance, executor: str, max_concurrent: int, log_level: str = "ERROR"
) -> RunOutcome:
    """Run every asset of the plan's partition on one of Dagster's public executors, in this process
    (the executor decides where the steps run), as ``launch.run_plan_in_process`` does for the
    project's executor: partition registered first, ``llm`` pool slots freed after."""
    recon = reconstructable(multiprocess_job if executor == "multiprocess" else in_process_job)
    job_def = recon.get_definition()
    add_plan_partition(instance, plan_id)
    run_id = new_run_id()
    run_config = {
        "loggers": {"console": {"config": {"log_level": log_level}}},
        "execution": execution_config(executor, max_concurrent),
    }
    dagster_run = instance.create_run_for_job(
        job_def=job_def,
        run_id=run_id,
        run_config=run_config,
        tags={**job_def.run_tags, "planexe/plan_id": plan_id, PARTITION_NAME_TAG: plan_id},
        job_code_origin=recon.get_python_origin(),
    )
    try:
        result = execute_run(recon, dagster_run, instance, raise_on_error=False)
    finally:
        release_pool_slots(instance, run_id)
    failed = [
        event.step_key for event in result.all_events if event.is_step_failure and event.step_key is not None
    ]
    return RunOutcome(success=result.success, run_id=result.run_id, failed_steps=failed)
