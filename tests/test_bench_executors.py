"""The benchmark's executor contenders: ``full_plan_job`` on Dagster's public executors.

The comparison itself runs in ``python -m bench`` (performance is measured there, never asserted
here); these tests check that the contenders are what they claim to be: the same job with Dagster's
own executor definitions, and run configs Dagster accepts for them.
"""

import pytest
from dagster import in_process_executor, multiprocess_executor, validate_run_config

from bench.public_executors import (
    PRELOAD_MODULES,
    execution_config,
    in_process_job,
    multiprocess_job,
)
from bench.run_plan import PUBLIC_EXECUTORS
from planexe_assets.dagster_defs.launch import full_plan_job_definition


def test_the_contenders_are_the_project_job_on_dagsters_own_executors():
    project = full_plan_job_definition()
    assert project.executor_def.name == "planexe_threads"
    for job, executor in (
        (multiprocess_job(), multiprocess_executor),
        (in_process_job(), in_process_executor),
    ):
        assert job.executor_def is executor
        assert job.name == project.name
        assert set(job.asset_layer.executable_asset_keys) == set(project.asset_layer.executable_asset_keys)


def test_their_run_configs_validate_and_the_forkserver_preloads_the_definitions():
    multiprocess = execution_config("multiprocess", 8)
    assert multiprocess["config"]["start_method"] == {"forkserver": {"preload_modules": PRELOAD_MODULES}}
    assert multiprocess["config"]["max_concurrent"] == 8
    validate_run_config(multiprocess_job(), {"execution": multiprocess})
    validate_run_config(in_process_job(), {"execution": execution_config("public_in_process", 8)})


def test_an_unknown_executor_is_refused():
    assert set(PUBLIC_EXECUTORS) == {"multiprocess", "public_in_process"}
    with pytest.raises(ValueError, match="unknown public executor 'celery'"):
        execution_config("celery", 8)
