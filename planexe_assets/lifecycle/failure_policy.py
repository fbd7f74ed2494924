"""Whether Dagster may retry a failed step attempt, decided from its ``FailureKind``.

The LLM-calling assets carry a ``RetryPolicy`` (``step_policies.py``: ``PLANEXE_LLM_STEP_RETRIES``
retries, exponential backoff from ``PLANEXE_LLM_STEP_RETRY_DELAY``). A failed attempt is raised to
Dagster as a ``dagster.Failure`` whose description is the step's error and whose metadata holds the
classification (``failure_kind``, ``recoverable``, ``error_type``, ``retry_number``); the kind
decides whether the policy may act:

- ``permanent`` (HTTP 400/401/403/404/422, a prompt longer than the context window, a missing key,
  bad upstream data, a bug): never retried (``allow_retries=False``); the same request would fail
  the same way.
- ``content`` (the model answered, but unusably: invalid JSON, fails the schema, loops until
  ``max_tokens``): another sample may succeed, at the full cost of the step, so at most
  ``PLANEXE_LLM_STEP_CONTENT_RETRIES`` step retries (default 1; never more than the policy's own
  retries). The LLM executor has already repaired or re-asked within the call.
- ``transient`` (connection errors, timeouts, 429/5xx, a circuit breaker open): every retry of the
  policy, with its exponential backoff.

A database that dropped its connection (SQLAlchemy ``OperationalError``/``InterfaceError``, or a
DBAPI error flagged as a lost connection) counts as transient here, whatever ``failure_kind`` says
of exceptions it does not know.

No Dagster import: ``assets.py`` turns the decision into a ``Failure``; the Luigi twin runs each
task once and has no step retries to decide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from planexe_assets.core import FailureKind, failure_kind
from resources.config import ConfigError

CONTENT_RETRIES_ENV = "PLANEXE_LLM_STEP_CONTENT_RETRIES"
DEFAULT_CONTENT_RETRIES = 1


def content_retries() -> int:
    """Step retries a content failure gets: ``PLANEXE_LLM_STEP_CONTENT_RETRIES`` (0-10, default 1)."""
    raw = os.environ.get(CONTENT_RETRIES_ENV, "").strip()
    if not raw:
        return DEFAULT_CONTENT_RETRIES
    if not raw.isdigit() or int(raw) > 10:
        raise ConfigError(f"{CONTENT_RETRIES_ENV}={raw!r} must be a whole number from 0 to 10")
    return int(raw)


def step_failure_kind(exc: BaseException) -> FailureKind:
    """``failure_kind``, plus lost database connections as transient."""
    if getattr(exc, "kind", None) is None and _lost_database(exc):
        return FailureKind.TRANSIENT
    return failure_kind(exc)


def _lost_database(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


@dataclass(frozen=True)
class RetryDecision:
    kind: FailureKind
    allow_retries: bool
    reason: str

    def metadata(self, exc: BaseException, retry_number: int) -> dict[str, str | int | bool]:
        return {
            "failure_kind": self.kind.value,
            "recoverable": self.kind.recoverable,
            "retry_allowed": self.allow_retries,
            "retry_reason": self.reason,
            "error_type": type(exc).__name__,
            "retry_number": retry_number,
        }


def retry_decision(exc: BaseException, retry_number: int) -> RetryDecision:
    """Whether the retry policy may retry this failure of attempt ``retry_number`` (0 = the first)."""
    kind = step_failure_kind(exc)
    if kind is FailureKind.PERMANENT:
        return RetryDecision(kind, False, "a permanent failure fails the same way again: not retried")
    if kind is FailureKind.CONTENT:
        allowed = content_retries()
        if retry_number >= allowed:
            return RetryDecision(
                kind, False, f"a content failure is retried at most {allowed} time(s) ({CONTENT_RETRIES_ENV})"
            )
        return RetryDecision(
            kind, True, f"content failure: step retry {retry_number + 1} of at most {allowed}"
        )
    return RetryDecision(kind, True, "transient failure: retried with the policy's backoff")
