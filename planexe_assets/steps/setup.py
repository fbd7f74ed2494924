"""The two source steps. PlanExe's callers write these files before the pipeline starts; here they
are written from the plan's row (its creation time and prompt), so a plan is fully described by the
database and any orchestrator can (re)create them."""

from __future__ import annotations

import json
from datetime import UTC

from planexe_assets.core import Reader, StepContext, StepError, StepInputs, StepResult
from planexe_assets.steps import register
from planexe_assets.steps.schedule import parse_day_zero


@register("start_time", models={"": Reader(parse_day_zero, takes="text")})
def run_start_time(ctx: StepContext, inputs: StepInputs) -> StepResult:
    """``001-1-start_time.json``: the plan's creation time; its UTC date is day 0 of the schedule."""
    created = ctx.plan_created_at
    if created.tzinfo is None:
        raise StepError("plan creation time must be timezone-aware")
    local = created.astimezone()
    payload = {
        "server_iso_utc": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "server_iso_local": local.isoformat(timespec="seconds"),
        "server_timezone_name": local.tzname() or "UTC",
    }
    return StepResult(files={ctx.step.outputs[""]: json.dumps(payload, indent=2) + "\n"})


@register("setup")
def run_setup(ctx: StepContext, inputs: StepInputs) -> StepResult:
    """``001-2-plan.txt``: the user's prompt, exactly as given."""
    if not ctx.plan_prompt.strip():
        raise StepError("the plan's prompt is empty")
    return StepResult(files={ctx.step.outputs[""]: ctx.plan_prompt})
