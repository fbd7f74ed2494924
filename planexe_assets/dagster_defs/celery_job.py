"""``full_plan_celery_job``: every plan asset, each step a Celery task on whichever worker takes it.

The same assets, checks, resources and partitions as ``full_plan_job``; only the executor differs:
``dagster_celery``'s ``celery_executor`` instead of ``planexe_threads``. The run's process (started
by the run launcher) keeps Dagster's plan of the run, claims the ``llm`` pool's slots and submits
each ready step to the broker; a worker (``dagster-celery worker start -A dagster_celery.app -y
planexe_assets/deploy/celery_worker.yaml``) executes the step in its own process, with its own ``PLANEXE_HOME``,
and writes the step's events to the shared instance. What makes that safe:

- the step reads its inputs from ``plan_content`` (the run directory of each worker is a cache of
  the rows, restored on read; ``PlanStore``), and the checks verify the rows, so no two workers
  need a shared filesystem;
- ``task_acks_late`` and ``task_reject_on_worker_lost``: a step's message is acknowledged when the
  step has finished, not when a worker took it, so a worker that dies mid-step (SIGKILL, a lost
  machine) gives the step back to the broker and another worker runs it again; its outputs are
  upserts, so nothing is duplicated;
- ``worker_prefetch_multiplier`` 1: a worker reserves one step per free process, so a busy worker
  does not sit on steps another worker could start.

The broker URL comes from ``PLANEXE_CELERY_BROKER_URL`` (e.g. ``pyamqp://guest:guest@rabbitmq:5672//``)
in the run's process; results come back over the broker (``rpc://``). The run config's
``execution`` block (Launchpad) may override both. The plan sensor launches plans with this job
when ``PLANEXE_PLAN_EXECUTOR=celery`` (``jobs.plan_job_name``).

dagster-celery is the optional extra ``celery`` (``pip install -e '.[celery]'``); without it the
job is not defined (``celery_jobs()`` is empty) and the rest of the definitions load as usual.
"""

import os

from dagster import AssetSelection, define_asset_job

try:
    from dagster_celery import celery_executor
except ModuleNotFoundError:  # the optional extra `celery` is not installed
    celery_executor = None

from planexe_assets.dagster_defs.jobs import FULL_PLAN_JOB_NAME

CELERY_JOB_NAME = "full_plan_celery_job"
BROKER_ENV = "PLANEXE_CELERY_BROKER_URL"
RESULT_BACKEND = "rpc://"

#: Celery settings of the run's app; the workers get the same from planexe_assets/deploy/celery_worker.yaml.
CELERY_SETTINGS = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
}


def celery_available() -> bool:
    return celery_executor is not None


def celery_run_config() -> dict:
    """The default ``execution`` block of a ``full_plan_celery_job`` run."""
    return {
        "execution": {
            "config": {
                "broker": {"env": BROKER_ENV},
                "backend": RESULT_BACKEND,
                "config_source": dict(CELERY_SETTINGS),
            }
        }
    }


def build_celery_job():
    if celery_executor is None:
        raise ModuleNotFoundError(
            f"{CELERY_JOB_NAME} needs dagster-celery: pip install -c requirements.lock -e '.[celery]'"
        )
    return define_asset_job(
        name=CELERY_JOB_NAME,
        selection=AssetSelection.all(),
        executor_def=celery_executor,
        config=celery_run_config(),
        description=(
            "Materialize every step of one plan (partition key = plan id), each step a Celery task on "
            f"any worker (broker: ${BROKER_ENV})."
        ),
    )


full_plan_celery_job = build_celery_job() if celery_available() else None


def celery_jobs() -> list:
    """``[full_plan_celery_job]`` when dagster-celery is installed, else nothing."""
    return [full_plan_celery_job] if full_plan_celery_job is not None else []


# -- which job the plan sensor launches -------------------------------------------------------------
PLAN_EXECUTOR_ENV = "PLANEXE_PLAN_EXECUTOR"
PLAN_EXECUTORS = {"threads": FULL_PLAN_JOB_NAME, "celery": CELERY_JOB_NAME}


class PlanExecutorError(ValueError):
    """``PLANEXE_PLAN_EXECUTOR`` names no usable executor; the message says why."""


def plan_launch_job_name() -> str:
    """The job queued plans run with: ``full_plan_job`` (``PLANEXE_PLAN_EXECUTOR`` unset or
    ``threads``: the steps on threads of the run's process) or ``full_plan_celery_job`` (``celery``)."""
    raw = (os.environ.get(PLAN_EXECUTOR_ENV) or "threads").strip().lower()
    if raw not in PLAN_EXECUTORS:
        raise PlanExecutorError(f"{PLAN_EXECUTOR_ENV}={raw!r} is not one of {', '.join(PLAN_EXECUTORS)}")
    if raw == "celery" and not celery_available():
        raise PlanExecutorError(
            f"{PLAN_EXECUTOR_ENV}=celery needs dagster-celery: pip install -c requirements.lock -e '.[celery]'"
        )
    return PLAN_EXECUTORS[raw]
