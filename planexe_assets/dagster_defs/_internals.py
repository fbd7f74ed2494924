"""Every private Dagster name planexe-dagster uses, imported in this one module.

Dagster 1.13 has no public API for what these pieces do, so they lean on its internals:

- the ``planexe_threads`` executor (``executor.py``) drives a run's ``ActiveExecution`` with the
  same primitives as Dagster's in-process and multiprocess executors;
- ``launch.execute_plan_run`` executes a run it created itself (with a given run id) with the job's
  own executor, which ``execute_job`` cannot;
- the pooled instance storage (``instance_storage.py``) subclasses Dagster's SQLite and
  dagster-postgres storages, and takes a pool slot only while it is still free (the slot table);
- ``refresh.py`` asks Dagster's stale-status resolver, as the UI does;
- the importer reports runless materializations with a user-provided data version;
- a few tags and status sets (the partition tag, ``dagster/priority``, finished statuses).

Nothing else imports ``dagster._*``, ``dagster_shared`` or a ``dagster_postgres`` submodule
(``tests/test_architecture.py`` enforces it); the code imports these names from here, some of them
without their leading underscore. The exact pin (``requirements.lock``) is what protects them:
``tests/test_dagster_internals.py`` imports every name below and, on an upgrade that moved or
removed one, fails with a single message naming them and the versions this module was written for.
"""

from dagster import _check as check
from dagster._check import CheckError
from dagster._core.definitions.data_version import (
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
    CachingStaleStatusResolver,
    StaleStatus,
)
from dagster._core.definitions.executor_definition import IN_PROC_CONFIG
from dagster._core.definitions.executor_definition import (
    _core_in_process_executor_creation as core_in_process_executor_creation,
)
from dagster._core.events import EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable, execute_run
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.execute_plan import (
    _handle_compute_log_setup_error as handle_compute_log_setup_error,
)
from dagster._core.execution.plan.execute_plan import (
    _handle_compute_log_teardown_error as handle_compute_log_teardown_error,
)
from dagster._core.execution.plan.execute_plan import _trigger_hook as trigger_hook
from dagster._core.execution.plan.execute_plan import dagster_event_sequence_for_step
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.objects import step_failure_event_from_exc_info
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.step_dependency_config import (
    StepDependencyConfig,
    get_step_dependency_config_field,
)
from dagster._core.execution.tags import get_tag_concurrency_limits_config
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.instance.types import MayHaveInstanceWeakref
from dagster._core.loader import LoadingContext
from dagster._core.storage.config import pg_config
from dagster._core.storage.dagster_run import FINISHED_STATUSES, NOT_FINISHED_STATUSES
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._core.storage.sqlite_storage import _event_logs_directory as event_logs_directory
from dagster._core.storage.sqlite_storage import _runs_directory as runs_directory
from dagster._core.storage.sqlite_storage import _schedule_directory as schedule_directory
from dagster._core.storage.tags import PARTITION_NAME_TAG, PRIORITY_TAG
from dagster._serdes import ConfigurableClassData
from dagster._utils import mkdir_p
from dagster._utils.concurrency import ConcurrencySlotStatus
from dagster._utils.timing import time_execution_scope
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from dagster_shared.utils.timing import format_duration

# The releases these names were checked against (the pins of pyproject.toml and requirements.lock).
WRITTEN_FOR = {"dagster": "1.13.27", "dagster-shared": "1.13.27", "dagster-postgres": "0.29.27"}

__all__ = [
    "DATA_VERSION_IS_USER_PROVIDED_TAG",
    "DATA_VERSION_TAG",
    "FINISHED_STATUSES",
    "INDEX_SHARD_NAME",
    "IN_PROC_CONFIG",
    "NOT_FINISHED_STATUSES",
    "PARTITION_NAME_TAG",
    "PRIORITY_TAG",
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "WRITTEN_FOR",
    "CachingStaleStatusResolver",
    "CheckError",
    "ConcurrencySlotStatus",
    "ConcurrencySlotsTable",
    "ConfigurableClassData",
    "DagsterSqliteStorage",
    "EngineEventData",
    "ExecuteRunWithPlanIterable",
    "ExecutionPlan",
    "InProcessExecutor",
    "InstanceConcurrencyContext",
    "LoadingContext",
    "MayHaveInstanceWeakref",
    "PlanExecutionContext",
    "PlanExecutionContextManager",
    "PlanOrchestrationContext",
    "RetryMode",
    "SqliteEventLogStorage",
    "SqliteRunStorage",
    "SqliteScheduleStorage",
    "StaleStatus",
    "StepDependencyConfig",
    "check",
    "core_in_process_executor_creation",
    "create_compute_log_file_key",
    "create_engine",
    "create_pg_engine",
    "dagster_event_sequence_for_step",
    "event_logs_directory",
    "execute_run",
    "format_duration",
    "get_retries_config",
    "get_step_dependency_config_field",
    "get_tag_concurrency_limits_config",
    "get_token_provider_from_config",
    "handle_compute_log_setup_error",
    "handle_compute_log_teardown_error",
    "mkdir_p",
    "pg_config",
    "pg_url_from_config",
    "runs_directory",
    "schedule_directory",
    "step_failure_event_from_exc_info",
    "time_execution_scope",
    "trigger_hook",
]
