"""The opt-in redline gate: with refuse-on-redline, a ``REFUSE`` verdict stops the plan after the gate.

PlanExe's redline gate is advice only: its verdict is shown in the report and the plan is written
anyway. Here a plan can ask for more. It is *gated* when its row says ``refuse_on_redline`` (``planexe
plan --refuse-on-redline``, or ``PLANEXE_REFUSE_ON_REDLINE=1`` where the plan is created) or when
``PLANEXE_REFUSE_ON_REDLINE=1`` is set where the steps run (an operator's switch: it can only turn the
gate on). For a gated plan:

- ``start_time``, ``setup`` and ``redline_gate`` run as usual (the gate step's files are stored, so the
  verdict and its reasons stay readable);
- a ``REFUSE`` verdict marks the plan ``refused``, with the verdict's category and rationale as the
  plan's error message;
- every other step first reads the stored verdict: ``REFUSE`` raises ``PlanRefused`` (the plan stays
  ``refused``; no LLM call is made), no verdict yet raises ``RedlineGateClosed`` (fail closed: the gate
  must allow the plan before anything else runs). The Dagster asset turns both into a failure that is
  never retried, and Dagster skips everything downstream.

The Dagster asset of ``redline_gate`` carries a high ``dagster/priority``, so in a run it executes
before every other step that becomes ready with it (``premise_attack``, ``identify_purpose``).

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
# What a gated plan may run before (and regardless of) the verdict.
UNGATED_STEPS = frozenset({"start_time", "setup", GATE_STEP})
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

    @property
    def refused(self) -> bool:
        return self.verdict == "REFUSE"

    def reason(self) -> str:
        detail = ", ".join(x for x in (self.category, f"severity {self.severity}" if self.severity else None) if x)
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


RAW_FILENAME = STEP_BY_NAME[GATE_STEP].outputs["raw"]


class RedlineGate:
    """The gate's checks around one step, for ``StepRunner``."""

    def __init__(self, db):
        self.db = db

    def stored_verdict(self, plan_id: str) -> RedlineVerdict | None:
        row = self.db.get_plan_content_by_filename(plan_id, RAW_FILENAME)
        return None if row is None else parse_verdict(row.content)

    def check_before(self, plan, step_name: str) -> None:
        """Raise if a gated plan may not run ``step_name`` now."""
        if step_name in UNGATED_STEPS or not gate_enabled(plan):
            return
        verdict = self.stored_verdict(plan.plan_id)
        if verdict is None:
            # Resuming runs the gate first, so this is not permanent.
            raise RedlineGateClosed(
                f"plan {plan.plan_id} is gated (refuse-on-redline) and the redline gate has given no verdict "
                f"yet; {step_name} runs only once the gate has allowed the plan",
                kind=FailureKind.TRANSIENT,
            )
        if verdict.refused:
            self.mark_refused(plan.plan_id, verdict)
            raise PlanRefused(f"plan {plan.plan_id} was {verdict.reason()}; {step_name} does not run")

    def check_after(self, plan, step_name: str, files: dict[str, str]) -> RedlineVerdict | None:
        """After the gate step of a gated plan: a REFUSE verdict marks the plan refused."""
        if step_name != GATE_STEP or not gate_enabled(plan):
            return None
        verdict = parse_verdict(files[RAW_FILENAME])
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
                "failed_step": GATE_STEP,
                "recoverable": False,
            },
        )
