"""Keeping the ``plans`` table true about runs that ended outside the CLI, and choosing what to redo.

Used by the Dagster sensors (``dagster_defs/sensors.py``), the backfill schedule
(``dagster_defs/schedules.py``) and the end of a CLI run (``dagster_defs/run_end.py``), which supply what only Dagster knows (how a run ended, which steps
failed); everything here reads and writes the application database only. No Dagster import.

- ``queued_plan_problem``: why a plan inserted with status ``pending`` by some client cannot be
  launched (bad id, prompt, model, mode), checked before any run exists.
- ``reconcile_after_run``: after a run of a plan failed, was canceled or succeeded, make ``status``,
  ``error_message``, the failure fields, progress and ``plan_metrics`` agree with what is stored: LLM
  attempts left ``pending`` by a killed run are closed, the per-plan usage totals are recomputed from
  ``llm_interactions``, the status follows the run's outcome (a canceled run leaves the plan
  ``stopped``). The CLI's plan worker applies it to its own run, the sensors to the others.
  ``settle_runless`` does the same for a run that was never created.
- ``revive_plan_for_retry``: before a step's retry, undo the failure its own earlier attempt recorded.
- ``steps_to_redo``: the steps whose outputs are missing, plus given failed steps, plus everything
  downstream of them (what a backfill re-materializes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, update

from planexe_assets.core import FailureKind, SpeedVsDetail
from planexe_assets.lifecycle.plans import PlanInputError, validate_model_choice, validate_prompt
from planexe_assets.lifecycle.runner import MAX_REASON_CHARS, RUNNING_AGAIN, pipeline_steps, stored_steps
from resources.config import ConfigError
from resources.models import NOT_SENT, LLMInteraction, Plan, PlanStatus, utcnow
from resources.plan_ids import InvalidPlanId, validate_plan_id

RUN_SUCCESS = "success"
RUN_FAILURE = "failure"
RUN_CANCELED = "canceled"
OUTCOMES = (RUN_SUCCESS, RUN_FAILURE, RUN_CANCELED)

MAX_ERROR_CHARS = 4000
ORPHAN_ERROR_CODE = "run_ended"


# -- queued plans -----------------------------------------------------------------------------------
def queued_plan_problem(plan: Plan) -> str | None:
    """None if the plan can be launched; else a message that says what is wrong with the row."""
    from resources.llm import (
        LLMConfigError,  # deferred: resources.llm loads the openai client, which loading the definitions does not need
    )

    try:
        validate_plan_id(plan.plan_id)
        validate_prompt(plan.prompt)
        if plan.speed_vs_detail not in {m.value for m in SpeedVsDetail}:
            allowed = ", ".join(m.value for m in SpeedVsDetail)
            return f"speed_vs_detail {plan.speed_vs_detail!r} is not one of: {allowed}"
        validate_model_choice(plan.llm_model or "auto")
    except (InvalidPlanId, PlanInputError, LLMConfigError, ConfigError) as exc:
        return str(exc)
    return None


def refuse_queued_plan(db, plan_id: str, problem: str) -> None:
    """Mark a queued plan that cannot run as failed, with the reason; nothing else is touched."""
    db.update_plan(
        plan_id,
        {
            "status": PlanStatus.FAILED,
            "error_message": f"not launched: {problem}"[:MAX_ERROR_CHARS],
            "completed_at": utcnow(),
            "failure_reason": f"not launched: {problem}"[:MAX_REASON_CHARS],
            "failed_step": None,
            "recoverable": False,  # the row itself must change
        },
    )


# -- after a run --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunEnd:
    """How a Dagster run of one plan ended, as the sensors (or the CLI's plan worker) saw it."""

    run_id: str
    outcome: str  # one of OUTCOMES
    ended_at: datetime  # naive UTC
    message: str | None = None  # the run's own failure message, if any
    failed_steps: dict[str, str] = field(default_factory=dict)  # step -> error message
    interrupted_steps: list[str] = field(default_factory=list)  # started, never finished
    # Who or what stopped a canceled run ("Ctrl-C in planexe plan", ...), for the plan's reason.
    stopped_by: str | None = None
    # Whether resuming can help after a failed run whose steps did not classify their error (the run
    # itself failed, its process died): unknown is taken as recoverable, since the stored outputs
    # are intact and `planexe resume` redoes only what is missing.
    recoverable: bool = True

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {OUTCOMES}")


@dataclass
class Reconciled:
    plan_id: str
    status_before: str
    status: str
    error_message: str | None
    orphans_closed: int
    llm_calls: int
    total_tokens: int
    cost_usd: float
    done: int
    total: int


def reconcile_after_run(db, plan_id: str, end: RunEnd) -> Reconciled | None:
    """Bring the plan's row, its open LLM attempts and its usage totals in line with ``end``.

    The caller decides that ``end`` is the plan's latest run (an older run's end must not overwrite
    a newer run's state). Idempotent: applying the same ``end`` twice changes nothing more.
    """
    plan = db.get_plan(plan_id)
    if plan is None:
        return None
    orphans = close_orphan_attempts(db, plan_id, end)
    calls, tokens, cost = recompute_plan_metrics(db, plan_id)
    done, total = plan_progress(db, plan_id)

    changes: dict = {
        "progress_percentage": int(100 * done / total) if total else 0,
        "progress_message": f"{done} of {total} steps",
        **_status_changes(db, plan_id, plan, end, done, total),
    }
    updated = db.update_plan(plan_id, changes)
    return Reconciled(
        plan_id=plan_id,
        status_before=plan.status,
        status=updated.status,
        error_message=updated.error_message,
        orphans_closed=orphans,
        llm_calls=calls,
        total_tokens=tokens,
        cost_usd=cost,
        done=done,
        total=total,
    )


def _status_changes(db, plan_id: str, plan, end: RunEnd, done: int, total: int) -> dict:
    """The plan row's status fields after ``end``: a refused plan keeps its verdict; otherwise by the
    run's outcome (success, failure, or a stop)."""
    same_run = plan.last_run_id == end.run_id
    # The runner recorded this run's failure itself (first failing step, its exception and kind):
    # the most precise account, kept.
    runner_failure = plan.status == PlanStatus.FAILED and same_run and bool(plan.error_message)
    if plan.status == PlanStatus.REFUSED:
        return {}  # the redline gate's verdict stands, whatever the run's outcome (it failed on purpose)
    if end.outcome == RUN_SUCCESS:
        return _after_success(db, plan_id, plan, end, done, total, same_run)
    if end.outcome == RUN_FAILURE:
        return _after_failure(plan, end, runner_failure)
    return _after_stop(plan, end, done, total, runner_failure)


def _after_success(db, plan_id: str, plan, end: RunEnd, done: int, total: int, same_run: bool) -> dict:
    """Every step stored: completed. Steps missing although the run succeeded: a recoverable
    failure naming them (unless the plan already ended otherwise, in another run)."""
    if total and done == total:
        if plan.status != PlanStatus.COMPLETED:
            return {
                **RUNNING_AGAIN,
                "status": PlanStatus.COMPLETED,
                "completed_at": plan.completed_at or end.ended_at,
            }
        return {}
    if not (
        plan.status in (PlanStatus.RUNNING, PlanStatus.PENDING)
        or (plan.status == PlanStatus.FAILED and same_run)
    ):
        return {}
    missing = [s.name for s in _missing_steps(db, plan_id)]
    reason = f"incomplete: {total - done} of {total} steps have no outputs (first: {', '.join(missing[:5])})"
    return {
        "status": PlanStatus.FAILED,
        "error_message": (
            f"incomplete: run {end.run_id} succeeded but {total - done} of {total} steps have no "
            f"outputs (first: {', '.join(missing[:5])}); `planexe resume {plan_id}` or the backfill "
            "schedule materializes them"
        )[:MAX_ERROR_CHARS],
        "completed_at": end.ended_at,
        "failure_reason": reason[:MAX_REASON_CHARS],
        "failed_step": missing[0] if missing else None,
        "recoverable": True,
    }


def _after_failure(plan, end: RunEnd, runner_failure: bool) -> dict:
    """Failed, with the runner's own account when it recorded one, else Dagster's."""
    message = plan.error_message if runner_failure else _failure_message(end)
    changes = {
        "status": PlanStatus.FAILED,
        "error_message": message[:MAX_ERROR_CHARS],
        "completed_at": end.ended_at,
    }
    if not (runner_failure and plan.failure_reason):
        step, reason = _first_failure(end)
        changes.update(
            {"failure_reason": reason[:MAX_REASON_CHARS], "failed_step": step, "recoverable": end.recoverable}
        )
    return changes


def _after_stop(plan, end: RunEnd, done: int, total: int, runner_failure: bool) -> dict:
    """Stopped: who stopped the run, during which steps, how much is stored."""
    during = f" during {', '.join(end.interrupted_steps)}" if end.interrupted_steps else ""
    by = f" ({end.stopped_by})" if end.stopped_by else ""
    message = (
        f"stopped: Dagster run {end.run_id} was canceled{by}{during}; {done} of {total} steps are stored"
    )
    changes = {
        "status": PlanStatus.STOPPED,
        "error_message": message[:MAX_ERROR_CHARS],
        "completed_at": end.ended_at,
    }
    if not (runner_failure and plan.failure_reason):
        # A failure recorded earlier in this run keeps its account; otherwise: who stopped it, where.
        reason = f"stopped{by}" + (
            f" during {', '.join(end.interrupted_steps)}" if end.interrupted_steps else ""
        )
        changes.update(
            {
                "failure_reason": reason[:MAX_REASON_CHARS],
                "failed_step": end.interrupted_steps[0] if end.interrupted_steps else None,
                "recoverable": True,
            }
        )
    return changes


def _first_failure(end: RunEnd) -> tuple[str | None, str]:
    """(failed step, one-line reason) of a failed run, from Dagster's account of it."""
    if end.failed_steps:
        step, message = next(iter(end.failed_steps.items()))
        more = f" (and {len(end.failed_steps) - 1} more failed step(s))" if len(end.failed_steps) > 1 else ""
        return step, _first_line(message) + more
    if end.interrupted_steps:
        why = _first_line(end.message or "the run ended while steps were running")
        return end.interrupted_steps[0], f"{why} (steps in flight: {', '.join(end.interrupted_steps)})"
    return None, _first_line(end.message or "the run failed outside its steps (see its Dagster logs)")


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def _failure_message(end: RunEnd) -> str:
    if end.failed_steps:
        parts = [f"{step}: {message}" for step, message in end.failed_steps.items()]
        return f"run {end.run_id} failed: " + "; ".join(parts)
    return f"run {end.run_id} failed: {end.message or 'no step failed; the run itself failed (see its Dagster logs)'}"


def close_orphan_attempts(db, plan_id: str, end: RunEnd) -> int:
    """LLM attempts still ``pending`` that started before the run ended will never finish: fail them,
    as ``transient`` (the run was stopped or died; the model did nothing wrong, and resuming can help)."""
    with db.session() as s:
        result = s.execute(
            update(LLMInteraction)
            .where(
                LLMInteraction.plan_id == plan_id,
                LLMInteraction.status == "pending",
                LLMInteraction.started_at <= end.ended_at,
            )
            .values(
                status="failed",
                completed_at=end.ended_at,
                error_code=ORPHAN_ERROR_CODE,
                error_message=f"Dagster run {end.run_id} ended ({end.outcome}) before this attempt finished",
                response_metadata={"failure_kind": FailureKind.TRANSIENT.value},
            )
        )
        return result.rowcount or 0


def recompute_plan_metrics(db, plan_id: str) -> tuple[int, int, float]:
    """Set the plan's usage totals from its finished ``llm_interactions`` rows: ``total_llm_calls``
    counts attempts (as the LLM executor does), ``completed_llm_calls`` the attempts that succeeded;
    ``skipped`` rows record calls the circuit breaker never sent and count in neither. Returns
    (attempts, tokens, cost in USD)."""
    with db.read_session() as s:
        rows = s.execute(
            select(
                LLMInteraction.status, LLMInteraction.total_tokens, LLMInteraction.response_metadata
            ).where(LLMInteraction.plan_id == plan_id, LLMInteraction.status.not_in(("pending", NOT_SENT)))
        ).all()
    calls = len(rows)
    completed = sum(1 for status, _, _ in rows if status == "completed")
    tokens = sum(t or 0 for _, t, _ in rows)
    cost = 0.0
    for _, _, meta in rows:
        value = (meta or {}).get("cost_usd") if isinstance(meta, dict) else None
        if isinstance(value, (int, float)):
            cost += float(value)
    if calls or db.get_plan_metrics(plan_id) is not None:
        db.create_plan_metrics(
            {
                "plan_id": plan_id,
                "total_llm_calls": calls,
                "completed_llm_calls": completed,
                "total_tokens_used": tokens,
                "total_cost_usd": cost,
            }
        )
    return calls, tokens, cost


def settle_runless(db, plan_id: str, run_id: str, stopped_by: str | None, died: str | None) -> str | None:
    """The end of a run that was never created (stopped or dead before it started): the plan is
    ``stopped`` or ``failed``, recoverable, unless something else already ended it. Returns its status."""
    plan = db.get_plan(plan_id)
    if plan is None:
        return None
    if plan.status in (PlanStatus.COMPLETED, PlanStatus.REFUSED) or (
        plan.status in (PlanStatus.FAILED, PlanStatus.STOPPED) and plan.last_run_id not in (None, run_id)
    ):
        return plan.status  # nothing of this run's doing to record
    if stopped_by is not None:
        reason = f"stopped ({stopped_by}) before its run started"
        status = PlanStatus.STOPPED
    else:
        reason = f"the run could not start: {died or 'unknown cause'}"
        status = PlanStatus.FAILED
    updated = db.update_plan(
        plan_id,
        {
            "status": status,
            "error_message": reason[:4000],
            "completed_at": utcnow(),
            "failure_reason": reason[:MAX_REASON_CHARS],
            "failed_step": None,
            "recoverable": True,
        },
    )
    return updated.status if updated is not None else None


def revive_plan_for_retry(db, plan_id: str, step_name: str, run_id: str) -> bool:
    """Before a retry of ``step_name``: if its own earlier attempt in this run marked the plan failed,
    the plan is running again (the retry may still succeed). A failure recorded by another step, or
    by another run, stays. True if the plan row was changed.

    ``dagster_will_retry`` keeps a retried attempt from marking the plan failed in the first place;
    this undoes a failure recorded by a worker that predicted otherwise (e.g. an older version).
    """
    plan = db.get_plan(plan_id)
    if plan is None or plan.last_run_id != run_id or plan.status != PlanStatus.FAILED:
        return False
    if not (plan.error_message or "").startswith(f"{step_name}:"):
        return False
    db.update_plan(
        plan_id,
        {
            "status": PlanStatus.RUNNING,
            "error_message": None,
            "completed_at": None,
            "failure_reason": None,
            "failed_step": None,
            "recoverable": None,
        },
    )
    return True


# -- what to redo -------------------------------------------------------------------------------------
def _missing_steps(db, plan_id: str):
    steps = pipeline_steps()
    stored = {s.name for s in stored_steps(db, plan_id, steps)}
    return [s for s in steps if s.name not in stored]


def plan_progress(db, plan_id: str) -> tuple[int, int]:
    steps = pipeline_steps()
    missing = len(_missing_steps(db, plan_id))
    return len(steps) - missing, len(steps)


def steps_to_redo(db, plan_id: str, failed: Iterable[str] = ()) -> list[str]:
    """Steps with missing outputs, the ``failed`` steps (even if older outputs exist), and every step
    downstream of either, in pipeline (topological) order."""
    steps = pipeline_steps()
    redo = {s.name for s in _missing_steps(db, plan_id)} | (set(failed) & {s.name for s in steps})
    for s in steps:  # table order is topological: upstream decisions are made first
        if any(d in redo for d in s.deps):
            redo.add(s.name)
    return [s.name for s in steps if s.name in redo]


def utc_naive_from_timestamp(timestamp: float | None) -> datetime:
    if timestamp is None:
        return utcnow()
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)
