"""Where one Dagster run's wall time goes, along the critical chain of its lower bound.

The lower bound (``bench.lower_bound``) is the longest latency-weighted chain of dependent calls. A
run can only be slower than that on the same chain, so this splits the run's wall time into:

- ``imports``: interpreter start-up and imports (wall time minus the time the child spent executing);
- ``job set-up and teardown``: executing time outside the run's first and last Dagster event;
- for every step of the chain, from Dagster's event log and the plan's ``llm_interactions``:
  ``scheduling`` (the upstream step's check finished -> this step started), ``before the first call``
  (loading inputs, building the prompt), ``LLM calls`` (first call started -> last call finished;
  split into the latency the bound counts and the rest: HTTP, parsing, recording each attempt),
  ``after the last call`` (rendering, writing files and rows, Dagster's output events) and ``asset
  check`` (the step's check, which downstream steps wait for when it blocks);
- ``after the chain``: the chain's last check -> the run's last event.

Nothing here changes a run; it reads what the run left behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.lower_bound import LowerBound


@dataclass
class Breakdown:
    parts: dict[str, float] = field(default_factory=dict)
    chain_steps: int = 0
    chain_llm_steps: int = 0

    def rows(self, wall: float) -> list[list[str]]:
        out = []
        for name, seconds in self.parts.items():
            out.append([name, f"{seconds:.1f} s", f"{seconds / wall * 100:.0f}%" if wall else "–"])
        return out


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


def _step_times(records) -> dict[str, dict[str, float]]:
    """Step key -> {"STEP_START": t, "STEP_SUCCESS": t} from a run's event records."""
    steps: dict[str, dict[str, float]] = {}
    for record in records:
        kind = record.dagster_event.event_type_value
        if kind in ("STEP_START", "STEP_SUCCESS") and record.step_key:
            steps.setdefault(record.step_key, {})[kind] = record.timestamp
    return steps


def _call_spans(app_db, plan_id: str) -> dict[str, list[float]]:
    """Stage -> [first call's start, last call's end] of the plan's finished LLM calls."""
    spans: dict[str, list[float]] = {}
    for row in app_db.get_plan_interactions(plan_id):
        if row.started_at is None or row.completed_at is None:
            continue
        start, end = _epoch(row.started_at), _epoch(row.completed_at)
        span = spans.setdefault(row.stage, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return spans


def breakdown(
    instance, app_db, plan_id: str, bound: LowerBound, wall: float, inner: float | None
) -> Breakdown:
    """The run of ``plan_id`` on ``instance`` (its latest), split along ``bound.critical_path``."""
    from dagster import RunsFilter

    runs = instance.get_runs(filters=RunsFilter(tags={"planexe/plan_id": plan_id}), limit=1)
    if not runs:
        raise ValueError(f"no Dagster run for plan {plan_id}")
    records = [r for r in instance.all_logs(runs[0].run_id) if r.dagster_event is not None]
    first_event = min(r.timestamp for r in records)
    last_event = max(r.timestamp for r in records)
    steps = _step_times(records)
    spans = _call_spans(app_db, plan_id)

    totals = dict.fromkeys(
        (
            "scheduling",
            "before the first call",
            "LLM latency (as the bound counts it)",
            "LLM calls beyond their latency (HTTP, parsing, recording)",
            "after the last call",
            "asset check",
        ),
        0.0,
    )
    previous_done = first_event
    chain_steps = chain_llm_steps = 0
    for name in bound.critical_path:
        times = steps.get(name)
        if not times or "STEP_START" not in times or "STEP_SUCCESS" not in times:
            continue
        chain_steps += 1
        started, succeeded = times["STEP_START"], times["STEP_SUCCESS"]
        check = steps.get(f"check_{name}", {})
        check_done = check.get("STEP_SUCCESS", succeeded)
        first_call, last_call = spans.get(name, [started, started])
        own = bound.step_seconds.get(name, 0.0)
        if name in spans:
            chain_llm_steps += 1
        totals["scheduling"] += max(0.0, started - previous_done)
        totals["before the first call"] += max(0.0, first_call - started)
        totals["LLM latency (as the bound counts it)"] += own
        totals["LLM calls beyond their latency (HTTP, parsing, recording)"] += max(
            0.0, (last_call - first_call) - own
        )
        totals["after the last call"] += max(0.0, succeeded - last_call)
        totals["asset check"] += max(0.0, check_done - succeeded)
        previous_done = check_done

    parts = {"imports and interpreter start-up": max(0.0, wall - inner) if inner is not None else 0.0}
    if inner is not None:
        parts["job set-up and teardown (outside the run's events)"] = max(
            0.0, inner - (last_event - first_event)
        )
    parts.update(totals)
    parts["after the chain (to the run's last event)"] = max(0.0, last_event - previous_done)
    return Breakdown(parts=parts, chain_steps=chain_steps, chain_llm_steps=chain_llm_steps)
