"""Where LLM attempts are recorded: ``llm_interactions`` rows and ``plan_metrics`` totals.

The executor calls a recorder three times per attempt: ``attempt_started`` (a ``pending`` row, so a
slow call is visible while it runs), ``attempt_finished`` (status, reply, times, tokens, error) and
``add_plan_usage`` (one call, its tokens and cost added to the plan's totals). Every value handed to
a recorder has already been scrubbed of API keys by the executor.

A recorder failure is logged and the plan goes on: losing an audit row is better than failing a
plan over it. ``DatabaseRecorder.failures`` counts such losses so a test or a health check can see them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

log = logging.getLogger("planexe.llm")


class InteractionRecorder(Protocol):
    def attempt_started(self, row: dict[str, Any]) -> Any:
        """Store a new ``llm_interactions`` row (status ``pending``); return a handle for the update."""
        ...

    def attempt_finished(self, handle: Any, update: dict[str, Any]) -> None: ...

    def add_plan_usage(self, plan_id: str, calls: int, tokens: int, cost_usd: float) -> None: ...


class NullRecorder:
    """Records nothing."""

    def attempt_started(self, row: dict[str, Any]) -> Any:
        return None

    def attempt_finished(self, handle: Any, update: dict[str, Any]) -> None:
        return None

    def add_plan_usage(self, plan_id: str, calls: int, tokens: int, cost_usd: float) -> None:
        return None


class MemoryRecorder:
    """Keeps rows and per-plan totals in memory: for tests and for runs without a database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: list[dict[str, Any]] = []
        self.metrics: dict[str, dict[str, float]] = {}

    def attempt_started(self, row: dict[str, Any]) -> int:
        with self._lock:
            self.rows.append(dict(row))
            return len(self.rows) - 1

    def attempt_finished(self, handle: int, update: dict[str, Any]) -> None:
        with self._lock:
            self.rows[handle].update(update)

    def add_plan_usage(self, plan_id: str, calls: int, tokens: int, cost_usd: float) -> None:
        with self._lock:
            totals = self.metrics.setdefault(
                plan_id, {"total_llm_calls": 0, "total_tokens_used": 0, "total_cost_usd": 0.0}
            )
            totals["total_llm_calls"] += calls
            totals["total_tokens_used"] += tokens
            totals["total_cost_usd"] += cost_usd


class DatabaseRecorder:
    """Writes through ``resources.database.DatabaseService``.

    That service opens a short session per method call, so it is safe to share between the threads
    of a fan-out step; the recorder adds no locking of its own.
    """

    def __init__(self, db_service: Any):
        self._db = db_service
        self._failures_lock = threading.Lock()
        self.failures = 0

    def attempt_started(self, row: dict[str, Any]) -> Any:
        try:
            created = self._db.create_llm_interaction(row)
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            self._failed("store an llm_interactions row", exc)
            return None
        return getattr(created, "id", None)

    def attempt_finished(self, handle: Any, update: dict[str, Any]) -> None:
        if handle is None:
            return
        try:
            self._db.update_llm_interaction(handle, update)
        except Exception as exc:  # noqa: BLE001
            self._failed(f"update llm_interactions row {handle}", exc)

    def add_plan_usage(self, plan_id: str, calls: int, tokens: int, cost_usd: float) -> None:
        try:
            self._db.add_plan_usage(plan_id, calls=calls, tokens=tokens, cost_usd=cost_usd)
        except Exception as exc:  # noqa: BLE001
            self._failed(f"add usage to plan_metrics of {plan_id}", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        with self._failures_lock:
            self.failures += 1
        log.warning("could not %s: %s: %s", what, type(exc).__name__, str(exc)[:300])
