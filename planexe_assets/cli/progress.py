"""Progress of one plan run as ``planexe plan`` / ``planexe resume`` show it.

``RunProgress.poll()`` reads, each time it is called:

- from the application database: the plan row (status), which steps have all their outputs stored
  (the completed-asset count, earlier runs' outputs included) and the plan's LLM usage by stage
  (``llm_interactions``: attempts, completed calls, failed and in-flight attempts, tokens);
- from Dagster's event log, through the public ``DagsterInstance`` API: the step events of this run
  since the last poll (start, success, failure, up for retry, restart, skip), so a step Dagster will
  retry shows ``retrying``, not ``failed``.

Two views draw the snapshots: ``LiveView`` (a Rich live table, in a terminal) and ``LineView`` (plain
lines when the output is not a terminal: one line whenever a step starts, ends or changes state, and
a heartbeat line when nothing changed for a while; printed as they are, so no path or id is broken
across lines).

"LLM calls" in both views are completed calls (an answer was received and used); "attempts" counts
every request, failed ones and retries included (what ``plan_metrics.total_llm_calls`` counts).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from dagster import DagsterEventType
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from planexe_assets.lifecycle.runner import pipeline_steps, stored_steps
from resources.database import DatabaseUnavailable

# Dagster step event -> the state shown for the step.
RUNNING = "running"
RETRYING = "retrying"
FAILED = "failed"
DONE = "done"
SKIPPED = "skipped"
STYLES = {RUNNING: "yellow", RETRYING: "magenta", FAILED: "red", DONE: "green", SKIPPED: "dim"}


@dataclass
class Usage:
    """LLM usage: completed calls, all attempts (failed and in flight included), tokens."""

    calls: int = 0
    attempts: int = 0
    failed: int = 0
    in_flight: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    @classmethod
    def from_stage(cls, entry: dict[str, int]) -> Usage:
        attempts = entry.get("attempts", 0)
        completed = entry.get("completed", 0)
        failed = entry.get("failed", 0)
        return cls(
            calls=completed,
            attempts=attempts,
            failed=failed,
            in_flight=max(0, attempts - completed - failed),
            tokens_in=entry.get("input_tokens", 0),
            tokens_out=entry.get("output_tokens", 0),
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return (self.calls, self.attempts, self.failed, self.in_flight, self.tokens_in, self.tokens_out)

    def describe(self) -> str:
        extra = []
        if self.failed:
            extra.append(f"{self.failed} failed")
        if self.in_flight:
            extra.append(f"{self.in_flight} in flight")
        detail = f" ({', '.join(extra)})" if extra else ""
        return (
            f"LLM calls: {self.calls} completed, {self.attempts} attempts{detail}; "
            f"tokens: {self.tokens_in} in, {self.tokens_out} out"
        )


@dataclass
class Snapshot:
    plan_id: str
    status: str  # the plan row's status ("?" when unknown), or "stopping" while a stop is under way
    done: int
    total: int
    steps: dict[str, str]  # this run's steps -> state, in the order Dagster started them
    usage: Usage
    by_stage: dict[str, Usage]
    elapsed: float
    error: str | None = None  # why the database could not be read this time

    def steps_in(self, state: str) -> list[str]:
        return [name for name, s in self.steps.items() if s == state]

    def key(self) -> tuple:
        """What a plain-line view reports a change of: status, counts, step states (not tokens)."""
        return (self.status, self.done, tuple(sorted(self.steps.items())), self.error)

    def line(self) -> str:
        """One plain line: time, plan, status, assets, steps by state, LLM usage."""
        parts = [
            f"{time.strftime('%H:%M:%S')} plan {self.plan_id}: {self.status}, {self.done}/{self.total} assets"
        ]
        for state in (RUNNING, RETRYING, FAILED):
            names = self.steps_in(state)
            if names:
                parts.append(f"{state}: {', '.join(names)}")
        parts.append(self.usage.describe())
        if self.error:
            parts.append(f"database: {self.error}")
        return "; ".join(parts)


@dataclass
class RunProgress:
    """Polls one plan run's progress (see the module docstring)."""

    db: object
    instance: object
    plan_id: str
    run_id: str
    started: float = field(default_factory=time.monotonic)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.pipeline = pipeline_steps()
        self.states: dict[str, str] = {}
        self._cursor: str | None = None
        self._last: Snapshot | None = None

    def poll(self) -> Snapshot:
        self._read_events()
        error = None
        try:
            plan = self.db.get_plan(self.plan_id)
            done = len(stored_steps(self.db, self.plan_id, self.pipeline))
            by_stage = {
                stage: Usage.from_stage(entry)
                for stage, entry in self.db.usage_by_stage(self.plan_id).items()
            }
            status = plan.status if plan is not None else "?"
        except DatabaseUnavailable as exc:
            error = str(exc)
            last = self._last
            done, by_stage, status = (last.done, last.by_stage, last.status) if last else (0, {}, "?")
        usage = sum(by_stage.values(), Usage())
        snapshot = Snapshot(
            plan_id=self.plan_id,
            status="stopping" if self.stopping and status in ("running", "pending") else status,
            done=done,
            total=len(self.pipeline),
            steps=dict(self.states),
            usage=usage,
            by_stage=by_stage,
            elapsed=time.monotonic() - self.started,
            error=error,
        )
        self._last = snapshot
        return snapshot

    def _read_events(self) -> None:
        kinds = {
            DagsterEventType.STEP_START: RUNNING,
            DagsterEventType.STEP_RESTARTED: RUNNING,
            DagsterEventType.STEP_UP_FOR_RETRY: RETRYING,
            DagsterEventType.STEP_SUCCESS: DONE,
            DagsterEventType.STEP_FAILURE: FAILED,
            DagsterEventType.STEP_SKIPPED: SKIPPED,
        }
        try:
            while True:
                page = self.instance.get_records_for_run(
                    self.run_id, cursor=self._cursor, of_type=set(kinds), limit=500
                )
                for record in page.records:
                    event = record.event_log_entry.dagster_event
                    if event is not None and event.step_key:
                        self.states[event.step_key] = kinds[event.event_type]
                self._cursor = page.cursor
                if not page.has_more:
                    break
        except Exception:  # noqa: BLE001 - the run may not exist yet, or its log is busy: next time
            return


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LiveView:
    """A Rich live display, redrawn from each snapshot (the caller polls at least once a second)."""

    def __init__(self, console: Console, rows: int = 12):
        self.console = console
        self.rows = rows
        self.live: Live | None = None
        self.note: str | None = None

    def __enter__(self) -> LiveView:
        self.live = Live(
            Text(""), console=self.console, refresh_per_second=4, transient=False, redirect_stderr=False
        )
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def show(self, snapshot: Snapshot) -> None:
        if self.live is not None:
            self.live.update(self.render(snapshot), refresh=True)

    def render(self, s: Snapshot):
        u = s.usage
        header = Text.assemble(
            ("plan ", ""),
            (s.plan_id, "bold"),
            ("  ", ""),
            (s.status, f"bold {STYLES.get(s.status, '')}".strip()),
            (f"  {s.done}/{s.total} assets", ""),
            (f"  {_elapsed(s.elapsed)}", "dim"),
        )
        in_flight = f", {u.in_flight} in flight" if u.in_flight else ""
        failed = f", {u.failed} failed" if u.failed else ""
        totals = Text(
            f"LLM calls: {u.calls} completed, {u.attempts} attempts{failed}{in_flight}; "
            f"tokens {_tokens(u.tokens_in)} in, {_tokens(u.tokens_out)} out"
        )
        bar = ProgressBar(
            total=max(1, s.total), completed=s.done, width=min(60, max(20, self.console.width - 2))
        )
        table = Table(expand=False)
        table.add_column("step", no_wrap=True, overflow="ellipsis")
        table.add_column("state", no_wrap=True)
        table.add_column("calls/attempts", justify="right", no_wrap=True)
        table.add_column("tokens in/out", justify="right", no_wrap=True)
        for name in self._rows(s):
            state = s.steps[name]
            step_usage = s.by_stage.get(name, Usage())
            table.add_row(
                name,
                Text(state, style=STYLES.get(state, "")),
                f"{step_usage.calls}/{step_usage.attempts}",
                f"{_tokens(step_usage.tokens_in)}/{_tokens(step_usage.tokens_out)}",
            )
        parts = [header, totals, bar, Text(""), table]
        if s.error:
            parts.append(Text(f"database: {s.error}", style="red"))
        if self.note:
            parts.append(Text(self.note, style="yellow"))
        return Group(*parts)

    def _rows(self, s: Snapshot) -> list[str]:
        """Steps in flight or in trouble first, then the most recently finished ones."""
        active = [n for n in s.steps if s.steps[n] in (RUNNING, RETRYING, FAILED)]
        finished = [n for n in s.steps if s.steps[n] not in (RUNNING, RETRYING, FAILED)]
        room = max(0, self.rows - len(active))
        return active + (finished[-room:] if room else [])


class LineView:
    """Plain lines (output that is not a terminal): one per change, a heartbeat when nothing changes."""

    def __init__(self, stream=None, heartbeat_seconds: float = 15.0):
        self.stream = stream or sys.stdout
        self.heartbeat_seconds = heartbeat_seconds
        self._key: tuple | None = None
        self._printed_at = 0.0
        self.note: str | None = None

    def __enter__(self) -> LineView:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def show(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        key = snapshot.key()
        if key != self._key or now - self._printed_at >= self.heartbeat_seconds:
            self._key = key
            self._printed_at = now
            self.stream.write(snapshot.line() + "\n")
            self.stream.flush()

    def say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class QuietView:
    """``--quiet``: nothing while the run goes on."""

    note: str | None = None

    def __enter__(self) -> QuietView:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def show(self, snapshot: Snapshot) -> None:
        return None
