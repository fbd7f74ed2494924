"""The Dagster ``Definitions`` of planexe-dagster: the only place that knows all the pieces."""

from dagster import Definitions

from planexe_assets.dagster_defs.assets import build_step_assets, plan_resources
from planexe_assets.dagster_defs.celery_job import celery_jobs
from planexe_assets.dagster_defs.checks import build_plan_checks
from planexe_assets.dagster_defs.create_plan_job import create_plan_job
from planexe_assets.dagster_defs.executor import planexe_executor
from planexe_assets.dagster_defs.jobs import full_plan_job
from planexe_assets.dagster_defs.refresh import plan_refresh_sensor, refresh_plan_job
from planexe_assets.dagster_defs.schedules import plan_schedules
from planexe_assets.dagster_defs.sensors import plan_sensors


def build_definitions() -> Definitions:
    """The definitions, built from the code as it is now (asset code versions included)."""
    return Definitions(
        assets=build_step_assets(),
        asset_checks=build_plan_checks(),
        # Runs launched without a job (`dagster asset materialize`, the UI's Materialize button) use the
        # threads executor too: Dagster's default multiprocess executor costs seconds per step.
        executor=planexe_executor,
        # full_plan_celery_job too when the `celery` extra is installed (celery_job.py)
        jobs=[full_plan_job, *celery_jobs(), create_plan_job, refresh_plan_job],
        sensors=[*plan_sensors, plan_refresh_sensor],
        schedules=plan_schedules,
        resources=plan_resources(),
    )


defs = build_definitions()
