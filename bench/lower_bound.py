"""The wall-time lower bound of one plan: its longest latency-weighted chain of dependent LLM calls.

Inputs are the plan's ``llm_interactions`` rows (every attempt the run made) and the asset graph
(``pipeline_steps()``: which steps wait for which). Nothing else is assumed about the steps.

- Each attempt weighs the latency the benchmark server applied to it (from its completion id, see
  ``bench.latency_server``); rows from another server fall back to their measured duration.
- Inside one step, two attempts depend on each other when one started only after the other had
  finished: a multi-turn conversation, a repair, a retry, or a fan-out after the call that produced
  its items. Attempts that overlapped in time were independent (a fan-out's items, the lenses of the
  premise attack). The step's own time is the longest chain through that order. The recorded start
  of an attempt is taken before it waits for an in-flight slot, so waiting for a slot does not turn
  independent calls into a chain; a fan-out wider than its thread pool (``StepContext.max_concurrency``,
  64 by default, wider than any fan-out of a plan) would, and ``fanout_capped`` reports any step where
  that may have happened.
- Across steps, a step starts when the last of its upstream steps has finished: the bound is the
  longest path through the asset graph weighted by the step times. Orchestration, database writes and
  the CPU time of the steps count as zero: no orchestrator can beat this number.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from bench.latency_server import latency_from_response_id


@dataclass(frozen=True)
class Attempt:
    stage: str
    started: float  # seconds since the first attempt of the plan started
    finished: float
    latency: float


@dataclass
class LowerBound:
    seconds: float
    critical_path: list[str]
    step_seconds: dict[str, float]
    calls: int
    serial_seconds: float  # every latency one after another: what one call at a time costs
    fanout_capped: list[str] = field(default_factory=list)
    finish: dict[str, float] = field(default_factory=dict)  # step -> when it finishes at the earliest

    def slack(self, step: str, before: str) -> float:
        """How long ``step`` could take longer without delaying ``before`` (which waits for it)."""
        start = self.finish[before] - self.step_seconds.get(before, 0.0)
        return start - self.finish[step]

    def summary(self) -> str:
        chain = " -> ".join(s for s in self.critical_path if self.step_seconds.get(s, 0) > 0)
        return f"{self.seconds:.1f} s over {self.calls} calls (serial sum {self.serial_seconds:.1f} s); critical chain: {chain}"


def attempts_from_rows(rows) -> list[Attempt]:
    """The plan's attempts from ``llm_interactions`` rows (ORM objects or mappings)."""

    def get(row, name):
        return row[name] if isinstance(row, dict) else getattr(row, name)

    usable = [r for r in rows if get(r, "started_at") is not None and get(r, "completed_at") is not None]
    if not usable:
        return []
    origin: datetime = min(get(r, "started_at") for r in usable)
    out: list[Attempt] = []
    for row in usable:
        response = get(row, "response_metadata") or {}
        latency = latency_from_response_id(response.get("response_id"))
        if latency is None:
            latency = float(get(row, "duration_seconds") or 0.0)
        out.append(
            Attempt(
                stage=get(row, "stage"),
                started=(get(row, "started_at") - origin).total_seconds(),
                finished=(get(row, "completed_at") - origin).total_seconds(),
                latency=latency,
            )
        )
    return out


def step_chain_seconds(attempts: list[Attempt]) -> float:
    """The longest chain of one step's attempts, a later one depending on every earlier finished one."""
    ordered = sorted(attempts, key=lambda a: (a.started, a.finished))
    best: list[float] = []
    for j, current in enumerate(ordered):
        before = [best[i] for i in range(j) if ordered[i].finished <= current.started]
        best.append(current.latency + max(before, default=0.0))
    return max(best, default=0.0)


def compute_lower_bound(rows, steps=None, free_stages=()) -> LowerBound:
    """The bound for one plan: ``rows`` are its ``llm_interactions``; ``steps`` the asset graph
    (default: the pipeline's steps). The calls of ``free_stages`` count as taking no time: the
    bound without them, to tell what they add to it."""
    from planexe_assets.lifecycle.runner import fanout_concurrency, pipeline_steps

    if steps is None:
        steps = pipeline_steps()
    attempts = [a for a in attempts_from_rows(rows) if a.stage not in set(free_stages)]
    by_stage: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in attempts:
        by_stage[attempt.stage].append(attempt)
    names = {s.name for s in steps}
    unknown = sorted(set(by_stage) - names)
    if unknown:
        raise ValueError(f"llm_interactions name stages that are not steps of the graph: {unknown}")
    step_seconds = {s.name: step_chain_seconds(by_stage.get(s.name, [])) for s in steps}
    finish, path = _longest_path(steps, step_seconds)
    threads = fanout_concurrency()
    capped = [s for s, items in by_stage.items() if len(items) > threads and _max_overlap(items) == threads]
    return LowerBound(
        seconds=max(finish.values(), default=0.0),
        critical_path=path,
        step_seconds=step_seconds,
        calls=len(attempts),
        serial_seconds=sum(a.latency for a in attempts),
        fanout_capped=sorted(capped),
        finish=finish,
    )


def _longest_path(steps, step_seconds: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Each step's earliest finish (it starts when its last upstream step finishes), and the path
    to the step that finishes last, first step first."""
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for step in steps:  # table order is topological
        upstream = max(step.deps, key=lambda d: finish[d], default=None)
        start = finish[upstream] if upstream is not None else 0.0
        finish[step.name] = start + step_seconds[step.name]
        via[step.name] = upstream
    last = max(finish, key=lambda n: finish[n]) if finish else None
    path: list[str] = []
    while last is not None:
        path.append(last)
        last = via[last]
    return finish, list(reversed(path))


def _max_overlap(attempts: list[Attempt]) -> int:
    edges = sorted(
        [(a.started, 1) for a in attempts] + [(a.finished, -1) for a in attempts], key=lambda e: (e[0], e[1])
    )
    current = peak = 0
    for _, delta in edges:
        current += delta
        peak = max(peak, current)
    return peak
