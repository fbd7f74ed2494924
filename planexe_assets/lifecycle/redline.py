"""The opt-in redline gate: with refuse-on-redline, a ``REFUSE`` verdict of the redline gate, or an
``UNUSABLE`` verdict of the prompt screening, stops the plan after the two diagnostics.

PlanExe's redline gate and prompt screening are advice only: their verdicts are shown in the report
(an UNUSABLE prompt gets a warning banner) and the plan is written anyway. Here a plan can ask for
more. It is *gated* when its row says ``refuse_on_redline`` (``planexe
plan --refuse-on-redline``, or ``PLANEXE_REFUSE_ON_REDLINE=1`` where the plan is created) or when
``PLANEXE_REFUSE_ON_REDLINE=1`` is set where the steps run (an operator's switch: it can only turn the
gate on). For a gated plan:

- ``start_time``, ``setup``, ``redline_gate`` and ``screen_planning_prompt`` (the gate steps,
  ``GATE_STEPS``) run as usual (their files are stored, so the verdicts and their reasons stay
  readable);
- a ``REFUSE`` verdict of the redline gate, or an ``UNUSABLE`` one of the screening, marks the plan
  ``refused``, with the verdict's category or reason and rationale as the plan's error message and
  the gate step that said it as ``failed_step``;
- every other step first reads both stored verdicts: a refusal raises ``PlanRefused`` (the plan stays
  ``refused``; no LLM call is made), a verdict not given yet raises ``RedlineGateClosed`` (fail
  closed: both gates must allow the plan before anything else runs). The Dagster asset turns both
  into a failure that is never retried, and Dagster skips everything downstream.

The Dagster assets of the gate steps carry a high ``dagster/priority``, so in a run they execute
before every other step that becomes ready with them (``premise_attack``, ``identify_purpose``).

No Dagster or Luigi import here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from planexe_assets.core import STEP_BY_NAME, FailureKind, StepError
from resources.config import ConfigError
from resources.models import PlanStatus, utcnow

REFUSE_ENV = "PLANEXE_REFUSE_ON_REDLINE"
GATE_STEP = "redline_gate"
SCREEN_STEP = "screen_planning_prompt"
# The steps whose verdict can stop a gated plan, in the order their verdicts are read.
GATE_STEPS = (GATE_STEP, SCREEN_STEP)
# What a gated plan may run before (and regardless of) the verdicts.
UNGATED_STEPS = frozenset({"start_time", "setup", *GATE_STEPS})
# The in-process executor starts the highest-priority ready step first (Dagster's ``dagster/priority``).
GATE_PRIORITY = 100

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class RedlineGateClosed(StepError):
    """A gated plan may not run this step: the gate refused the plan, or has given no verdict yet."""


class PlanRefused(RedlineGateClosed):
    """The redline gate refused a gated plan."""


def env_refuse_on_redline() -> bool:
    """``PLANEXE_REFUSE_ON_REDLINE`` as a boolean; anything but a clear yes/no is a configuration error."""
    raw = os.environ.get(REFUSE_ENV)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{REFUSE_ENV}={raw!r} is not a yes/no value; use 1 or 0")


def gate_enabled(plan) -> bool:
    return bool(getattr(plan, "refuse_on_redline", False)) or env_refuse_on_redline()


@dataclass(frozen=True)
class RedlineVerdict:
    verdict: str
    rationale: str = ""
    category: str | None = None
    severity: str | None = None
    step: str = GATE_STEP  # the gate step that gave it

    @property
    def refused(self) -> bool:
        return self.verdict in {"REFUSE", "UNUSABLE"}

    def reason(self) -> str:
        if self.step == SCREEN_STEP:
            detail = ", ".join(
                x for x in (self.category, f"confidence {self.severity}" if self.severity else None) if x
            )
            text = f"refused: the prompt screening found the prompt unusable for planning (verdict UNUSABLE{f'; {detail}' if detail else ''})"
            if self.rationale.strip():
                text += f": {' '.join(self.rationale.split())}"
            return text
        detail = ", ".join(
            x for x in (self.category, f"severity {self.severity}" if self.severity else None) if x
        )
        text = f"refused by the redline gate (verdict REFUSE{f'; {detail}' if detail else ''})"
        if self.rationale.strip():
            text += f": {' '.join(self.rationale.split())}"
        return text


def parse_verdict(raw_json: str) -> RedlineVerdict:
    """The verdict in the gate's raw file (``002-1-redline_gate.json``)."""
    try:
        data = json.loads(raw_json)
    except json.JSONDecodeError as exc:
        raise StepError(f"the redline gate's raw file is not JSON: {exc}") from None
    verdict = data.get("verdict") if isinstance(data, dict) else None
    if not isinstance(verdict, str) or not verdict:
        raise StepError("the redline gate's raw file has no verdict")

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) and value.strip() else None

    return RedlineVerdict(
        verdict=verdict.strip().upper(),
        rationale=text("rationale_short") or "",
        category=text("violation_category"),
        severity=text("violation_severity"),
    )


def parse_screening(raw_json: str) -> RedlineVerdict:
    """The verdict in the prompt screening's raw file (top-level ``verdict``, ``reason``,
    ``confidence``, ``rationale``), as a gate verdict: ``UNUSABLE`` refuses a gated plan."""
    try:
        data = json.loads(raw_json)
    except json.JSONDecodeError as exc:
        raise StepError(f"the prompt screening's raw file is not JSON: {exc}") from None
    verdict = data.get("verdict") if isinstance(data, dict) else None
    if not isinstance(verdict, str) or verdict.strip().upper() not in {"USABLE", "UNUSABLE"}:
        raise StepError("the prompt screening's raw file has no USABLE/UNUSABLE verdict")

    def text(key: str) -> str | None:
        value = data.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    reason = text("reason")
    return RedlineVerdict(
        verdict=verdict.strip().upper(),
        rationale=text("rationale") or "",
        category=reason.replace("_", " ") if reason else None,
        severity=text("confidence"),
        step=SCREEN_STEP,
    )


RAW_FILENAME = STEP_BY_NAME[GATE_STEP].outputs["raw"]
SCREEN_RAW_FILENAME = STEP_BY_NAME[SCREEN_STEP].outputs["raw"]
# gate step -> (its raw file, the parser of its verdict)
GATE_FILES = {GATE_STEP: (RAW_FILENAME, parse_verdict), SCREEN_STEP: (SCREEN_RAW_FILENAME, parse_screening)}


class RedlineGate:
    """The gate's checks around one step, for ``StepRunner``."""

    def __init__(self, db):
        self.db = db

    def stored_verdict(self, plan_id: str, gate_step: str = GATE_STEP) -> RedlineVerdict | None:
        filename, parse = GATE_FILES[gate_step]
        row = self.db.get_plan_content_by_filename(plan_id, filename)
        return None if row is None else parse(row.content)

    def check_before(self, plan, step_name: str) -> None:
        """Raise if a gated plan may not run ``step_name`` now."""
        if step_name in UNGATED_STEPS or not gate_enabled(plan):
            return
        for gate_step in GATE_STEPS:
            verdict = self.stored_verdict(plan.plan_id, gate_step)
            if verdict is None:
                # Resuming runs the gate steps first, so this is not permanent.
                raise RedlineGateClosed(
                    f"plan {plan.plan_id} is gated (refuse-on-redline) and {gate_step} has given no verdict "
                    f"yet; {step_name} runs only once the redline gate and the prompt screening have allowed the plan",
                    kind=FailureKind.TRANSIENT,
                )
            if verdict.refused:
                self.mark_refused(plan.plan_id, verdict)
                raise PlanRefused(f"plan {plan.plan_id} was {verdict.reason()}; {step_name} does not run")

    def check_after(self, plan, step_name: str, files: dict[str, str]) -> RedlineVerdict | None:
        """After a gate step of a gated plan: a REFUSE or UNUSABLE verdict marks the plan refused."""
        if step_name not in GATE_FILES or not gate_enabled(plan):
            return None
        filename, parse = GATE_FILES[step_name]
        verdict = parse(files[filename])
        if verdict.refused:
            self.mark_refused(plan.plan_id, verdict)
        return verdict

    def mark_refused(self, plan_id: str, verdict: RedlineVerdict) -> None:
        reason = verdict.reason()
        self.db.update_plan(
            plan_id,
            {
                "status": PlanStatus.REFUSED,
                "error_message": reason[:4000],
                "completed_at": utcnow(),
                "failure_reason": reason[:1000],
                "failed_step": verdict.step,
                "recoverable": False,
            },
        )
