"""``planexe_threads``: a Dagster executor that runs the ready steps of one run on a thread pool.

Why: a plan's steps spend their time waiting on LLM replies, not on the CPU, and several branches of
the plan are independent (redline gate / premise attack / purpose; governance beside the team chain
and the SWOT/expert branch; the documents branch beside the WBS). The in-process executor runs one
step at a time; the multiprocess executor runs them concurrently but pays a fresh Python process,
resource initialisation and instance connection for every step (seconds each on a small machine).
This executor keeps the in-process executor's single process, single resource initialisation and
single compute-log capture, and only moves the *step bodies* onto worker threads.

How it drives Dagster (the same primitives as the in-process and multiprocess executors):

- the orchestrating generator (the run's thread) owns the ``ActiveExecution``: it asks it for the
  steps that are ready (``get_steps_to_execute``, bounded by ``max_concurrent`` minus the steps in
  flight), builds each step's ``StepExecutionContext`` with the current known state, and hands it to
  a worker thread;
- a worker runs ``dagster_event_sequence_for_step`` (the in-process executor's per-step machinery:
  input loading, compute, IO manager, materialisation events, retries requested by user code) and
  then the step's hooks, and puts every event on a queue; a framework error that escapes the step is
  turned into a ``STEP_FAILURE`` event, as the multiprocess executor does for a crashed child;
- the orchestrator takes events off the queue in arrival order, yields them to the run and feeds them
  to ``ActiveExecution.handle_event``; when a worker finishes it calls ``verify_complete`` and then
  ``plan_events_iterator``, which skips or abandons the steps downstream of a failure.

Only the orchestrator touches ``ActiveExecution``; workers touch their own step context and the
shared resources (which must be thread-safe: ours are). Events are written to the instance by the
thread that creates them, so instance storage must accept concurrent writers (Dagster's SQLite and
PostgreSQL storages do; the SQLite event log serialises its own connections).

Termination: a captured interrupt (``dagster run terminate``, Ctrl-C) stops new launches, sets the
run's stop flag (``stop_requested(run_id)``, polled by the LLM layer between attempts through the
assets' ``should_stop``), waits for the steps in flight and raises ``DagsterExecutionInterruptedError``
like the multiprocess executor. Python threads cannot be killed, so a step finishes its current call.
Dagster ends an interrupted run CANCELED when it was asked to stop (status CANCELING) and FAILURE
otherwise; a process that interrupts its own run on purpose (the CLI's plan worker,
``planexe_assets.cli.plan_worker``) registers the run with ``cancel_on_interrupt`` and the executor
records the request (CANCELING) the moment it sees the interrupt, so the run ends CANCELED.
"""

import collections
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    DagsterEvent,
    DagsterExecutionInterruptedError,
    DagsterRunStatus,
    Executor,
    Field,
    Selector,
    StepExecutionContext,
    executor,
)

from planexe_assets.dagster_defs._internals import (
    IN_PROC_CONFIG,
    PARTITION_NAME_TAG,
    PRIORITY_TAG,
    EngineEventData,
    ExecuteRunWithPlanIterable,
    ExecutionPlan,
    InProcessExecutor,
    InstanceConcurrencyContext,
    PlanExecutionContext,
    PlanExecutionContextManager,
    PlanOrchestrationContext,
    RetryMode,
    StepDependencyConfig,
    check,
    core_in_process_executor_creation,
    create_compute_log_file_key,
    dagster_event_sequence_for_step,
    format_duration,
    get_retries_config,
    get_step_dependency_config_field,
    get_tag_concurrency_limits_config,
    handle_compute_log_setup_error,
    handle_compute_log_teardown_error,
    step_failure_event_from_exc_info,
    time_execution_scope,
    trigger_hook,
)
from planexe_assets.dagster_defs.run_partitions import check_run_plan, database_for_run
from planexe_assets.lifecycle.redline import GATE_PRIORITY, env_refuse_on_redline, gate_enabled
from resources.config import ConfigError

DEFAULT_MAX_CONCURRENT = 8
MAX_CONCURRENT_ENV = "PLANEXE_MAX_CONCURRENT_STEPS"
# How long the orchestrator blocks on the event queue before it looks at interrupts, retries and
# concurrency claims again.
_POLL_SECONDS = 0.5

# Runs (by run id) whose stop was requested, for steps to poll between LLM attempts.
_stopping: set[str] = set()
_stopping_lock = threading.Lock()


def stop_requested(run_id: str | None) -> bool:
    """True once the run ``run_id`` executing in this process was asked to stop."""
    if run_id is None:
        return False
    with _stopping_lock:
        return run_id in _stopping


def _set_stopping(run_id: str, value: bool) -> None:
    with _stopping_lock:
        if value:
            _stopping.add(run_id)
        else:
            _stopping.discard(run_id)


# Runs (by run id) whose interrupt in this process is a deliberate stop (see ``cancel_on_interrupt``).
_cancel_on_interrupt: set[str] = set()


def cancel_on_interrupt(run_id: str, value: bool = True) -> None:
    """Treat an interrupt of run ``run_id`` in this process as a stop request: the executor marks the
    run CANCELING before it stops, so Dagster ends it CANCELED instead of "interrupted unexpectedly"
    (FAILURE). Set by the CLI's plan worker for its own run."""
    with _stopping_lock:
        if value:
            _cancel_on_interrupt.add(run_id)
        else:
            _cancel_on_interrupt.discard(run_id)


def _record_stop_request(job_context: PlanExecutionContext) -> None:
    with _stopping_lock:
        wanted = job_context.run_id in _cancel_on_interrupt
    if not wanted:
        return
    instance = job_context.instance
    run = instance.get_run_by_id(job_context.run_id)
    if (
        run is not None
        and not run.is_finished
        and run.status not in (DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED)
    ):
        instance.report_run_canceling(
            run, message="Stop requested: the run stops once the steps in flight finish."
        )


def default_max_concurrent() -> int:
    """``PLANEXE_MAX_CONCURRENT_STEPS`` if set (a positive integer), else 8."""
    raw = os.environ.get(MAX_CONCURRENT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CONCURRENT
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_CONCURRENT_ENV} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{MAX_CONCURRENT_ENV} must be a positive integer, got {raw!r}")
    return value


@dataclass(frozen=True)
class _StepFinished:
    step_key: str
    error: BaseException | None = None  # an error to re-raise in the run's thread (raise_on_error)


class ThreadedStepExecutor(Executor):
    """Runs up to ``max_concurrent`` ready steps of a run at once, each on a worker thread."""

    def __init__(
        self,
        retries: RetryMode,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        tag_concurrency_limits: list[dict[str, Any]] | None = None,
        step_dependency_config: StepDependencyConfig = StepDependencyConfig.default(),
    ):
        self._retries = check.inst_param(retries, "retries", RetryMode)
        self._max_concurrent = check.int_param(max_concurrent, "max_concurrent")
        if self._max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self._tag_concurrency_limits = check.opt_list_param(tag_concurrency_limits, "tag_concurrency_limits")
        self._step_dependency_config = check.inst_param(
            step_dependency_config, "step_dependency_config", StepDependencyConfig
        )

    @property
    def retries(self) -> RetryMode:
        return self._retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self._step_dependency_config

    @property
    def max_concurrent(self) -> int:
        return self._max_concurrent

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        check.inst_param(plan_context, "plan_context", PlanOrchestrationContext)
        check.inst_param(execution_plan, "execution_plan", ExecutionPlan)
        _check_run_plan(plan_context)
        step_keys = execution_plan.step_keys_to_execute
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps on up to {self._max_concurrent} threads in process (pid: {os.getpid()})",
            event_specific_data=EngineEventData.in_process(os.getpid(), step_keys),
        )
        with time_execution_scope() as timer_result:
            yield from iter(
                ExecuteRunWithPlanIterable(
                    execution_plan=plan_context.execution_plan,
                    iterator=self._plan_iterator,
                    execution_context_manager=PlanExecutionContextManager(
                        job=plan_context.job,
                        retry_mode=plan_context.retry_mode,
                        execution_plan=plan_context.execution_plan,
                        run_config=plan_context.run_config,
                        dagster_run=plan_context.dagster_run,
                        instance=plan_context.instance,
                        raise_on_error=plan_context.raise_on_error,
                        output_capture=plan_context.output_capture,
                        step_dependency_config=self._step_dependency_config,
                    ),
                )
            )
        yield DagsterEvent.engine_event(
            plan_context,
            f"Finished steps on threads in process (pid: {os.getpid()}) in {format_duration(timer_result.millis)}",
            event_specific_data=EngineEventData.in_process(os.getpid(), step_keys),
        )

    # -- the run's thread ---------------------------------------------------------------------------
    def _plan_iterator(
        self, job_context: PlanExecutionContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        check.inst_param(job_context, "job_context", PlanExecutionContext)
        step_keys = [step.key for step in execution_plan.get_steps_to_execute_in_topo_order()]
        events: queue.Queue[DagsterEvent | _StepFinished] = queue.Queue()
        barrier = _GateBarrier.for_run(job_context, execution_plan)
        flight = _Flight()

        with ExitStack() as stack:
            concurrency_context = stack.enter_context(
                InstanceConcurrencyContext(job_context.instance, job_context.dagster_run)
            )
            active = stack.enter_context(
                execution_plan.start(
                    retry_mode=job_context.retry_mode,
                    sort_key_fn=_longest_chain_first(execution_plan),
                    max_concurrent=self._max_concurrent,
                    tag_concurrency_limits=self._tag_concurrency_limits,
                    instance_concurrency_context=concurrency_context,
                    step_dependency_config=job_context.step_dependency_config,
                )
            )
            capture_stack = stack.enter_context(ExitStack())
            yield from _capture_logs(job_context, step_keys, capture_stack)

            pool = stack.enter_context(
                ThreadPoolExecutor(max_workers=self._max_concurrent, thread_name_prefix="planexe-step")
            )
            try:
                while flight.running or (not flight.stopping and not active.is_complete):
                    if not flight.stopping and active.check_for_interrupts():
                        yield _stop(active, job_context, flight)
                    if flight.scheduling:
                        yield from self._start_ready(active, job_context, barrier, flight, pool, events)
                    if not flight.running:
                        if flight.stopping or flight.deferred_error is not None or active.is_complete:
                            break
                        _wait_for_ready(active)
                        continue
                    try:
                        item = events.get(timeout=_POLL_SECONDS)
                    except queue.Empty:
                        continue
                    yield from _handle_events(item, events, active, job_context, barrier, flight)
                    if flight.scheduling:
                        yield from _plan_events(active, job_context, barrier)
            finally:
                _set_stopping(job_context.run_id, False)
            yield from _end_run(job_context, flight, capture_stack)

    def _start_ready(
        self,
        active,
        job_context: PlanExecutionContext,
        barrier: "_GateBarrier | None",
        flight: "_Flight",
        pool: ThreadPoolExecutor,
        events: "queue.Queue[DagsterEvent | _StepFinished]",
    ) -> Iterator[DagsterEvent]:
        """Start the ready steps on the free threads (fewer while a gate barrier holds)."""
        free = self._max_concurrent - len(flight.running)
        if barrier is not None and barrier.holds():
            free = min(free, barrier.free_slots(flight.running))
        ready = active.get_steps_to_execute(limit=free) if free > 0 else []
        yield from active.concurrency_event_iterator(job_context)
        for step in ready:
            step_context = job_context.for_step(step, active.get_known_state())
            _check_resources(step_context)
            flight.running.add(step.key)
            flight.workers[step.key] += 1
            pool.submit(_run_step, step_context, events)


@dataclass
class _Flight:
    """The run thread's view of its steps: those in flight, a stop request, the first step error.
    New steps start only while there is neither a stop nor an error."""

    running: set[str] = field(default_factory=set)
    # Workers per step key. A retried step can be started again (its retry delay over) before the
    # worker of its failed attempt has put its _StepFinished: that marker must then neither drop the
    # key from ``running`` nor make ``verify_complete`` see the new attempt in flight (it would mark
    # the step unknown and fail the run with DagsterUnknownStepStateError).
    workers: collections.Counter[str] = field(default_factory=collections.Counter)
    stopping: bool = False
    deferred_error: BaseException | None = None

    @property
    def scheduling(self) -> bool:
        return not self.stopping and self.deferred_error is None


def _capture_logs(
    job_context: PlanExecutionContext, step_keys: list[str], capture_stack: ExitStack
) -> Iterator[DagsterEvent]:
    """One compute-log capture for the whole process, as the in-process executor does: the capture
    redirects the process's stdout/stderr, which per-thread capture cannot."""
    compute_log_manager = job_context.instance.compute_log_manager
    log_key = compute_log_manager.build_log_key_for_run(job_context.run_id, create_compute_log_file_key())
    try:
        log_context = capture_stack.enter_context(compute_log_manager.capture_logs(log_key))
        yield DagsterEvent.capture_logs(job_context, step_keys, log_key, log_context)
    except Exception:
        yield from handle_compute_log_setup_error(job_context, sys.exc_info())


def _end_run(
    job_context: PlanExecutionContext, flight: _Flight, capture_stack: ExitStack
) -> Iterator[DagsterEvent]:
    """Every step in flight has finished: raise the first step error, or end a stopped run as
    interrupted, or close the log capture."""
    if flight.deferred_error is not None:
        raise flight.deferred_error
    if flight.stopping:
        yield DagsterEvent.engine_event(
            job_context,
            "Thread executor: every step in flight has finished; stopping the run",
            EngineEventData(),
        )
        raise DagsterExecutionInterruptedError()
    try:
        capture_stack.close()
    except Exception:
        yield from handle_compute_log_teardown_error(job_context, sys.exc_info())


def _stop(active, job_context: PlanExecutionContext, flight: _Flight) -> DagsterEvent:
    """A termination request: no new step starts; the steps in flight finish. Returns the event
    that says so."""
    flight.stopping = True
    active.mark_interrupted()
    _record_stop_request(job_context)
    _set_stopping(job_context.run_id, True)
    return DagsterEvent.engine_event(
        job_context,
        "Thread executor: received a termination request; no new steps will start, "
        f"waiting for the steps in flight: {sorted(flight.running)}",
        EngineEventData.interrupted(sorted(flight.running)),
    )


def _wait_for_ready(active) -> None:
    """Nothing in flight but the plan is not done: a step waits for a retry delay or a concurrency slot."""
    if active.sleep_interval() > 0:
        active.sleep_til_ready()
    else:
        time.sleep(0.05)


def _handle_events(
    item: "DagsterEvent | _StepFinished",
    events: "queue.Queue[DagsterEvent | _StepFinished]",
    active,
    job_context: PlanExecutionContext,
    barrier: "_GateBarrier | None",
    flight: _Flight,
) -> Iterator[DagsterEvent]:
    """Pass on ``item`` and every event already queued behind it (a step thread's events, then its
    end), before scheduling again."""
    while True:
        if isinstance(item, _StepFinished):
            flight.workers[item.step_key] -= 1
            if item.error is not None and flight.deferred_error is None:
                flight.deferred_error = item.error
            if flight.workers[item.step_key] <= 0:  # no later attempt of it is running
                del flight.workers[item.step_key]
                flight.running.discard(item.step_key)
                active.verify_complete(job_context, item.step_key)
            yield from _plan_events(active, job_context, barrier)
        else:
            yield item
            active.handle_event(item)
            if barrier is not None and (item.is_step_success or item.is_step_failure):
                barrier.finished(item.step_key)
        try:  # drain what else is ready before scheduling again
            item = events.get_nowait()
        except queue.Empty:
            return


class _GateBarrier:
    """A gated plan (``planexe_assets.lifecycle.redline``: refuse-on-redline) runs nothing beside its gate.

    The gate and the steps before it (``setup``) carry ``dagster/priority`` >= ``GATE_PRIORITY``. For
    a gated plan, while such a step is still to run or running, no other step starts: every other step
    reads the gate's verdict first and fails closed without one. A plan that is not gated (the
    default: the verdict is advice) runs the gate beside the premise attack and the purpose.
    """

    def __init__(self, barrier_keys: set[str]):
        self.barrier_keys = barrier_keys
        self.done: set[str] = set()

    @classmethod
    def for_run(
        cls, job_context: PlanExecutionContext, execution_plan: ExecutionPlan
    ) -> "_GateBarrier | None":
        keys = set()
        for step in execution_plan.get_steps_to_execute_in_topo_order():
            try:
                priority = int(step.tags.get(PRIORITY_TAG, 0))
            except ValueError:
                priority = 0
            if priority >= GATE_PRIORITY:
                keys.add(step.key)
        if not keys or not _plan_is_gated(job_context):
            return None
        return cls(keys)

    def finished(self, step_key: str) -> None:
        self.done.add(step_key)

    def holds(self) -> bool:
        """True while a barrier step has not finished (it is still to run, or running)."""
        return bool(self.barrier_keys - self.done)

    def free_slots(self, running: set[str]) -> int:
        """Nothing starts beside a running step; with none running, one step may start (the priority
        order makes it the barrier step once that is ready). A barrier step that never becomes ready
        (its upstream failed) only makes the rest start one at a time."""
        return 0 if running else 1


def _check_run_plan(plan_context: PlanOrchestrationContext) -> None:
    """Before resources and steps: the run's partition names a plan (``run_partitions``); raises
    ``PlanNotRunnable``, which fails the run once, with that message."""
    check_run_plan(plan_context.instance, plan_context.dagster_run, database_for_run(plan_context.run_config))


class _CheckedInProcessExecutor(InProcessExecutor):
    """Dagster's in-process executor, with the same plan check as the threads executor first."""

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        _check_run_plan(plan_context)
        yield from super().execute(plan_context, execution_plan)


def _plan_is_gated(job_context: PlanExecutionContext) -> bool:
    """Whether the run's plan is gated; unknown (no database resource, no row) counts as gated."""
    try:
        if env_refuse_on_redline():
            return True
    except ConfigError:
        return True
    plan_id = job_context.dagster_run.tags.get(PARTITION_NAME_TAG)
    if plan_id is None:
        return False
    try:
        database = job_context.scoped_resources_builder.build({"database"}).database
        plan = database.get_database_service().get_plan(plan_id)
    except Exception:  # noqa: BLE001 - cannot tell: fail closed
        return True
    return plan is None or gate_enabled(plan)


def _longest_chain_first(execution_plan: ExecutionPlan):
    """Order ready steps by ``dagster/priority`` (higher first), then by the longest chain of steps
    that still depends on them (longer first), so a capped pool starts the critical path first."""
    deps = execution_plan.get_executable_step_deps()
    downstream: dict[str, set[str]] = {key: set() for key in deps}
    for key, upstream in deps.items():
        for up in upstream:
            downstream.setdefault(up, set()).add(key)
    height: dict[str, int] = {}

    def chain(key: str) -> int:
        if key not in height:
            height[key] = 1 + max((chain(d) for d in downstream.get(key, ())), default=0)
        return height[key]

    def sort_key(step) -> tuple[int, int]:
        try:
            priority = int(step.tags.get(PRIORITY_TAG, 0))
        except ValueError:
            priority = 0
        return (-priority, -chain(step.key))

    return sort_key


def _plan_events(
    active, job_context: PlanExecutionContext, barrier: "_GateBarrier | None"
) -> Iterator[DagsterEvent]:
    """``ActiveExecution.plan_events_iterator`` (skips downstream of failures), noting skipped barrier steps."""
    for event in active.plan_events_iterator(job_context):
        if barrier is not None and event.is_step_skipped and event.step_key:
            barrier.finished(event.step_key)
        yield event


def _check_resources(step_context: StepExecutionContext) -> None:
    missing = [key for key in step_context.required_resource_keys if not hasattr(step_context.resources, key)]
    check.invariant(
        not missing,
        f"Expected step context for op {step_context.op.name} to have all required resources, but missing {missing}.",
    )


def _run_step(
    step_context: StepExecutionContext, events: "queue.Queue[DagsterEvent | _StepFinished]"
) -> None:
    """A worker: the step's events and then its hooks' events, then a ``_StepFinished`` marker."""
    error: BaseException | None = None
    step_events: list[DagsterEvent] = []
    failed = False
    try:
        for event in dagster_event_sequence_for_step(step_context):
            step_events.append(event)
            failed = failed or event.is_step_failure
            events.put(event)
        for event in trigger_hook(step_context, step_events):
            events.put(event)
    except BaseException as exc:  # noqa: BLE001 - reported as the step's failure, never lost
        if step_context.raise_on_error and failed:
            # dagster_event_sequence_for_step already reported the failure and re-raises the user
            # error under raise_on_error: hand it to the run's thread.
            error = exc
        else:
            if not failed:
                events.put(step_failure_event_from_exc_info(step_context, sys.exc_info()))
            if step_context.raise_on_error:
                error = exc
    finally:
        events.put(_StepFinished(step_context.step.key, error))


def _create_thread_executor(config: Mapping[str, Any]) -> ThreadedStepExecutor:
    max_concurrent = config.get("max_concurrent") or default_max_concurrent()
    return ThreadedStepExecutor(
        retries=RetryMode.from_config(check.dict_elem(config, "retries")),  # type: ignore[arg-type]
        max_concurrent=int(max_concurrent),
        tag_concurrency_limits=check.opt_list_elem(config, "tag_concurrency_limits"),
        step_dependency_config=StepDependencyConfig.from_config(
            check.opt_nullable_dict_elem(config, "step_dependency_config")
        ),
    )


THREADS_CONFIG = Field(
    {
        "max_concurrent": Field(
            int,
            is_required=False,
            default_value=0,
            description=(
                f"Most steps of one run executing at once (one thread each). 0 means {MAX_CONCURRENT_ENV} "
                f"or {DEFAULT_MAX_CONCURRENT}. LLM calls are further bounded by the LLM executor's "
                "per-endpoint in-flight limit."
            ),
        ),
        "retries": get_retries_config(),
        "tag_concurrency_limits": get_tag_concurrency_limits_config(),
        "step_dependency_config": get_step_dependency_config_field(),
    },
    description="Execute the ready steps of the run concurrently on threads of one process.",
)


@executor(
    name="planexe_threads",
    config_schema=Field(
        Selector({"threads": THREADS_CONFIG, "in_process": IN_PROC_CONFIG}),
        default_value={"threads": {}},
    ),
)
def planexe_executor(init_context) -> Executor:
    """Independent steps of a run execute concurrently on threads (default), or one at a time.

    .. code-block:: yaml

        execution:
          config:
            threads:
              max_concurrent: 8    # 0: PLANEXE_MAX_CONCURRENT_STEPS or 8

        execution:
          config:
            in_process: {}         # Dagster's in-process executor, one step at a time
    """
    config = init_context.executor_config
    if "in_process" in config:
        core = core_in_process_executor_creation(check.dict_elem(config, "in_process"))
        return _CheckedInProcessExecutor(
            retries=core.retries,
            marker_to_close=core.marker_to_close,
            step_dependency_config=core.step_dependency_config,
        )
    return _create_thread_executor(check.dict_elem(config, "threads"))
