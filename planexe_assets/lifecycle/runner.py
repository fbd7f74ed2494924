"""Running one step for one plan, the same way for Dagster, Luigi and the CLI.

``StepRunner.run(step_name)`` loads the step's upstream files from ``plan_content`` (hash-checked),
builds the ``StepContext`` from the plan's row, calls the framework-free step function and hands
the result to the dual writer. It also keeps the plan's lifecycle in ``plans``: pending -> running
while steps run, ``progress_percentage`` / ``progress_message`` after each step, ``completed`` once
every step of the pipeline has its outputs, ``failed`` with the error (``failure_reason``,
``failed_step``, ``recoverable``) when a step fails for good, ``stopped`` when a stop was requested.
An attempt that the orchestrator will retry (``will_retry``) leaves the plan ``running``.

No Dagster or Luigi import here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from planexe_assets.core import (
    PIPELINE_COMPLETE_FILENAME,
    STEP_BY_NAME,
    STEPS,
    CallUsage,
    LLMCaller,
    PipelineStopRequested,
    SpeedVsDetail,
    Step,
    StepContext,
    StepError,
    StepInputs,
    StepResult,
    UpstreamFiles,
    failure_kind,
    matches_template,
)
from planexe_assets.lifecycle.redline import PlanRefused, RedlineGate, RedlineGateClosed, gate_enabled
from planexe_assets.steps import implemented_steps, step_function
from resources.models import PlanStatus, utcnow
from resources.plan_store import PlanStore

log = logging.getLogger(__name__)


# The steps a complete run materialises: every implemented step whose upstream steps are implemented.
def pipeline_steps() -> list[Step]:
    available = implemented_steps()
    chosen: list[Step] = []
    names: set[str] = set()
    for s in STEPS:
        if s.name in available and all(d in names for d in s.deps):
            chosen.append(s)
            names.add(s.name)
    return chosen


@dataclass
class StepExecution:
    step: Step
    result: StepResult
    usage: list[CallUsage]
    duration_seconds: float
    written: list = field(default_factory=list)

    @property
    def llm_calls(self) -> int:
        return len(self.usage)

    @property
    def input_tokens(self) -> int:
        return sum(u.input_tokens or 0 for u in self.usage)

    @property
    def output_tokens(self) -> int:
        return sum(u.output_tokens or 0 for u in self.usage)

    @property
    def cost_usd(self) -> float:
        return sum(u.cost_usd or 0.0 for u in self.usage)

    @property
    def models(self) -> list[str]:
        return sorted({u.model_id for u in self.usage})


LLMFactory = Callable[[str, str, str | None], LLMCaller]  # (plan_id, stage, plan's llm_model) -> caller


class StepRunner:
    def __init__(
        self,
        store: PlanStore,
        llm_factory: LLMFactory,
        logger: logging.Logger | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        """``should_stop()``: True once the orchestrator was asked to stop the run (Ctrl-C); a step
        that fails then is recorded as stopped, not failed (no retry will follow, and the plan is
        being stopped, not failing)."""
        self.store = store
        self.db = store.db
        self.llm_factory = llm_factory
        self.logger = logger or log
        self.should_stop = should_stop

    # -- inputs -----------------------------------------------------------------------------------
    def load_inputs(self, plan_id: str, step: Step) -> StepInputs:
        """The step's inputs keyed like PlanExe's requires() and the step's ``extra_requires``: every
        upstream file, verified against its sha256 (``PlanStore.read``). A missing file of a
        requires() step raises; of an ``extra_requires`` step, it is left out (those are optional)."""
        deps = [STEP_BY_NAME[name] for name in step.deps]
        required = [STEP_BY_NAME[name] for name in step.required_deps]
        contents = self.store.read(plan_id, [f for dep in required for f in dep.filenames])
        optional = [f for dep in deps if dep not in required for f in dep.filenames]
        if optional:
            contents.update(self.store.read(plan_id, optional, required=False))
        loaded = {
            dep.name: UpstreamFiles(
                step=dep, contents={f: contents[f] for f in dep.filenames if f in contents}
            )
            for dep in deps
        }
        return StepInputs({key: loaded[name] for key, name in step.all_requires.items()})

    # -- one step ---------------------------------------------------------------------------------
    def execute(
        self,
        plan_id: str,
        step_name: str,
        speed_vs_detail: str | None = None,
        run_id: str | None = None,
        will_retry: Callable[[BaseException], bool] | None = None,
    ) -> StepExecution:
        """Run the step function; nothing is written. Marks the plan failed if the step fails for good.

        ``speed_vs_detail`` overrides the plan row's mode (Luigi passes its ``speedvsdetail`` parameter).
        ``will_retry(exc)``: True when the orchestrator runs this step again after ``exc`` (Dagster's
        retry policy); the plan then stays ``running`` instead of flickering to ``failed``.
        """
        step = STEP_BY_NAME[step_name]
        plan = self.db.get_plan(plan_id)
        if plan is None:
            raise StepError(f"plan {plan_id!r} does not exist; create it with `planexe plan` first")
        gate = RedlineGate(self.db)
        try:
            gate.check_before(plan, step.name)  # a refused (or not yet allowed) gated plan stops here
        except PlanRefused:
            raise
        except RedlineGateClosed as exc:
            # No verdict yet: this run fails closed. Claim the plan for the run first, so the failure
            # is not undone by the next step's mark_running; an earlier failure of this run stays.
            self.mark_running(plan_id, run_id)
            current = self.db.get_plan(plan_id)
            if current is not None and current.status != PlanStatus.FAILED:
                self.mark_failed(plan_id, step.name, exc)
            raise
        self.mark_running(plan_id, run_id)
        started = time.perf_counter()
        try:
            fn = step_function(step.name)
            inputs = self.load_inputs(plan_id, step)
            llm = self.llm_factory(plan_id, step.name, plan.llm_model) if step.uses_llm else NoLLM(step.name)
            ctx = StepContext(
                plan_id=plan_id,
                step=step,
                llm=llm,
                speed_vs_detail=SpeedVsDetail(
                    speed_vs_detail or plan.speed_vs_detail or SpeedVsDetail.ALL_DETAILS_BUT_SLOW
                ),
                logger=self.logger,
                plan_created_at=plan_created_utc(plan),
                plan_prompt=plan.prompt,
                refuse_on_redline=gate_enabled(plan),
                max_concurrency=fanout_concurrency(),
            )
            result = fn(ctx, inputs)
            result.check_against(step)
            gate.check_after(plan, step.name, result.files)
        except PipelineStopRequested as exc:
            self.mark_stopped(plan_id, step.name, f"stopped during {step.name}: {exc}")
            raise
        except BaseException as exc:
            if self.should_stop is not None and self.should_stop():
                self.mark_stopped(plan_id, step.name, f"stopped during {step.name}: {_first_line(str(exc))}")
            elif will_retry is not None and will_retry(exc):
                self.logger.warning(
                    "plan %s: %s failed (%s: %s); it will be retried, the plan stays running",
                    plan_id,
                    step.name,
                    type(exc).__name__,
                    _first_line(str(exc)),
                )
            else:
                self.mark_failed(plan_id, step.name, exc, run_id)
            raise
        return StepExecution(step, result, list(llm.usage), time.perf_counter() - started)

    def persist(self, plan_id: str, step_name: str, result: StepResult, run_id: str | None) -> list:
        """Dual-write the step's files (and drop its stale per-item files), then update progress."""
        step = STEP_BY_NAME[step_name]
        try:
            stale = self._stale_side_files(plan_id, step, result)
            written = self.store.write(
                plan_id, step.name, {**result.files, **result.side_files}, run_id=run_id, remove=stale
            )
        except BaseException as exc:
            self.mark_failed(plan_id, step.name, exc, run_id)
            raise
        self.update_progress(plan_id, run_id)
        return written

    def run(
        self, plan_id: str, step_name: str, run_id: str | None, speed_vs_detail: str | None = None
    ) -> StepExecution:
        """Execute and persist: what a Luigi task or a direct caller does."""
        execution = self.execute(plan_id, step_name, speed_vs_detail=speed_vs_detail, run_id=run_id)
        execution.written = self.persist(plan_id, step_name, execution.result, run_id)
        return execution

    def _stale_side_files(self, plan_id: str, step: Step, result: StepResult) -> list[str]:
        """Per-item files of an earlier run of this step that this run did not produce."""
        if not step.side_outputs:
            return []
        existing = [row.filename for row in self.db.get_plan_files(plan_id)]
        templated = [t for t in step.side_outputs if "{}" in t]
        return [
            name
            for name in existing
            if name not in result.side_files and any(matches_template(name, t) for t in templated)
        ]

    # -- lifecycle --------------------------------------------------------------------------------
    def mark_running(self, plan_id: str, run_id: str | None = None) -> None:
        """A new run starts the plan afresh; within one run, a failure stays a failure."""
        with plan_lock(plan_id):
            self._mark_running(plan_id, run_id)

    def _mark_running(self, plan_id: str, run_id: str | None) -> None:
        plan = self.db.get_plan(plan_id)
        if plan is None:
            return
        same_run = run_id is not None and plan.last_run_id == run_id
        if same_run and plan.status in (
            PlanStatus.RUNNING,
            PlanStatus.FAILED,
            PlanStatus.STOPPED,
            PlanStatus.REFUSED,
        ):
            return
        if not same_run or plan.status != PlanStatus.RUNNING:
            self.db.update_plan(
                plan_id, {**RUNNING_AGAIN, "started_at": plan.started_at or utcnow(), "last_run_id": run_id}
            )
            self._remove_completion_marker(plan_id)

    def mark_failed(
        self, plan_id: str, step_name: str, exc: BaseException, run_id: str | None = None
    ) -> None:
        """The step failed for good: the plan is failed, with what, where and whether resuming can help.
        The first failure of a run is the one kept (later ones are often its consequences)."""
        message = f"{step_name}: {type(exc).__name__}: {exc}"
        with plan_lock(plan_id):
            plan = self.db.get_plan(plan_id)
            if (
                plan is not None
                and run_id is not None
                and plan.last_run_id == run_id
                and plan.status == PlanStatus.FAILED
                and plan.failure_reason
            ):
                return
            self.db.update_plan(
                plan_id,
                {
                    "status": PlanStatus.FAILED,
                    "error_message": message[:4000],
                    "completed_at": utcnow(),
                    **failure_fields(exc, step_name),
                },
            )
            # A step beside this one may have declared the plan complete from the files of an
            # earlier run: a failed plan carries no completion marker.
            self._remove_completion_marker(plan_id)

    def mark_stopped(self, plan_id: str, step_name: str | None, reason: str) -> None:
        """A stop was requested: the plan is ``stopped`` (resumable), unless it already ended otherwise
        in this run (a failure or refusal recorded first stays)."""
        with plan_lock(plan_id):
            plan = self.db.get_plan(plan_id)
            if plan is None or plan.status in (PlanStatus.FAILED, PlanStatus.REFUSED, PlanStatus.STOPPED):
                return
            self.db.update_plan(
                plan_id,
                {
                    "status": PlanStatus.STOPPED,
                    "error_message": reason[:4000],
                    "completed_at": utcnow(),
                    "failure_reason": reason[:MAX_REASON_CHARS],
                    "failed_step": step_name,
                    "recoverable": True,
                },
            )
            self._remove_completion_marker(plan_id)

    def progress(self, plan_id: str, steps: Iterable[Step] | None = None) -> tuple[int, int]:
        steps = list(steps if steps is not None else pipeline_steps())
        return len(stored_steps(self.db, plan_id, steps)), len(steps)

    def update_progress(self, plan_id: str, run_id: str | None = None) -> None:
        """Progress after a step; once every step of the full pipeline is stored, the plan is complete
        and ``999-pipeline_complete.txt`` is written (PlanExe's completion marker)."""
        with plan_lock(plan_id):  # steps of one plan finish concurrently under the thread executor
            self._update_progress(plan_id, run_id)

    def _update_progress(self, plan_id: str, run_id: str | None) -> None:
        done, total = self.progress(plan_id)
        percentage = int(100 * done / total) if total else 0
        changes: dict = {"progress_percentage": percentage, "progress_message": f"{done} of {total} steps"}
        plan = self.db.get_plan(plan_id)
        # Within one run a failure stays a failure, even when every file of an earlier run is stored.
        failed_in_this_run = (
            plan is not None
            and run_id is not None
            and plan.last_run_id == run_id
            and plan.status in (PlanStatus.FAILED, PlanStatus.STOPPED, PlanStatus.REFUSED)
        )
        if total and done == total and not failed_in_this_run:
            changes.update({**RUNNING_AGAIN, "status": PlanStatus.COMPLETED, "completed_at": utcnow()})
            if plan is not None and plan.started_at is not None:
                changes["actual_duration_minutes"] = (utcnow() - plan.started_at).total_seconds() / 60
            if total == len(STEPS):
                self.store.write(
                    plan_id,
                    "full_plan_pipeline",
                    {PIPELINE_COMPLETE_FILENAME: COMPLETION_TEXT},
                    run_id=run_id,
                )
        self.db.update_plan(plan_id, changes)

    def _remove_completion_marker(self, plan_id: str) -> None:
        """A plan being (re)worked on is not complete: drop the marker, file first."""
        if self.db.get_plan_content_by_filename(plan_id, PIPELINE_COMPLETE_FILENAME) is None:
            return
        (self.store.run_dir(plan_id) / PIPELINE_COMPLETE_FILENAME).unlink(missing_ok=True)
        self.db.delete_plan_content(plan_id, [PIPELINE_COMPLETE_FILENAME])


COMPLETION_TEXT = "PlanExe pipeline complete: every step's outputs are stored.\n"

MAX_REASON_CHARS = 1000

# What a plan that runs (again) or completes starts from: no error, no failure fields.
RUNNING_AGAIN = {
    "status": PlanStatus.RUNNING,
    "error_message": None,
    "completed_at": None,
    "failure_reason": None,
    "failed_step": None,
    "recoverable": None,
}


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def failure_fields(exc: BaseException, step_name: str | None) -> dict:
    """``failure_reason`` (the error, one line), ``failed_step`` and ``recoverable`` (from the error's
    ``FailureKind``: only a permanent error needs a change before ``planexe resume`` can succeed)."""
    line = _first_line(str(exc))
    reason = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return {
        "failure_reason": reason[:MAX_REASON_CHARS],
        "failed_step": step_name,
        "recoverable": failure_kind(exc).recoverable,
    }


FANOUT_ENV = "PLANEXE_FANOUT_CONCURRENCY"


def fanout_concurrency() -> int:
    """Threads of one fan-out step (``ctx.map_concurrent``): ``PLANEXE_FANOUT_CONCURRENCY``, default 64.

    The default is wider than any fan-out, so the LLM executor's per-endpoint in-flight limit
    (``max_in_flight``) is what bounds a fan-out's calls; 1 runs a fan-out's items one after another,
    as PlanExe does (the benchmark's "PlanExe mode" Luigi runs).
    """
    raw = os.environ.get(FANOUT_ENV, "").strip()
    if not raw:
        return StepContext.__dataclass_fields__["max_concurrency"].default
    if not raw.isdigit() or int(raw) < 1:
        raise StepError(f"{FANOUT_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


_plan_locks: dict[str, threading.RLock] = {}
_plan_locks_guard = threading.Lock()


def plan_lock(plan_id: str) -> threading.RLock:
    """This process's lock for one plan's lifecycle row: status changes are read-modify-write, and the
    thread executor finishes several steps of a plan at once."""
    with _plan_locks_guard:
        lock = _plan_locks.get(plan_id)
        if lock is None:
            lock = _plan_locks[plan_id] = threading.RLock()
        return lock


def plan_created_utc(plan) -> datetime:
    return (plan.created_at or utcnow()).replace(tzinfo=UTC)


class NoLLM:
    """The LLM caller of a step that makes no LLM call: any call is a bug in the step."""

    def __init__(self, step_name: str):
        self.step_name = step_name

    def structured(self, messages, response_model, *, label=None, max_tokens=None):
        raise StepError(f"step {self.step_name} is declared without LLM calls but made one")

    def text(self, messages, *, label=None, max_tokens=None):
        raise StepError(f"step {self.step_name} is declared without LLM calls but made one")

    @property
    def usage(self) -> list[CallUsage]:
        return []


def stored_steps(db, plan_id: str, steps: Iterable[Step] | None = None) -> list[Step]:
    """The steps (of ``steps``, default the pipeline's) whose output files all have a row, in order."""
    steps = list(steps if steps is not None else pipeline_steps())
    present = db.stored_filenames(plan_id, [n for s in steps for n in s.filenames])
    return [s for s in steps if all(n in present for n in s.filenames)]


def missing_steps_with_downstream(db, plan_id: str) -> list[str]:
    """Steps of the pipeline whose outputs are not all stored, plus every step downstream of them."""
    steps = pipeline_steps()
    stored = {s.name for s in stored_steps(db, plan_id, steps)}
    redo: set[str] = set()
    for s in steps:  # table order is topological, so upstream decisions are made first
        if s.name not in stored or any(d in redo for d in s.deps):
            redo.add(s.name)
    return [s.name for s in steps if s.name in redo]
