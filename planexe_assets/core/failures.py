"""Whether a failed step can succeed when tried again: ``FailureKind`` and the errors that carry one.

Shared by the steps, the LLM layer, the orchestrators' retry policies and the plan row's
``recoverable``. Nothing here imports anything of ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class FailureKind(StrEnum):
    """Whether trying a failed step again can help. Shared by the LLM layer, the orchestrators' retry
    policies and the plan row's ``recoverable``.

    - ``permanent``: the same request fails the same way (HTTP 400/401/403/404/422, a prompt longer
      than the model's context window, a missing API key, bad upstream data). Never retried by the
      orchestrator; resuming needs a change (another model, a config fix, a re-run upstream).
    - ``transient``: the endpoint was unreachable, slow, overloaded or rate limited (connection
      errors, timeouts, 408/409/429/5xx). Retrying later may succeed.
    - ``content``: the model answered, but not usably (invalid JSON, fails the schema, cut off at
      ``max_tokens``, empty). Another sample may succeed, at the full cost of the call.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    CONTENT = "content"

    @property
    def recoverable(self) -> bool:
        """Whether ``planexe resume`` may succeed without changing anything."""
        return self is not FailureKind.PERMANENT


class StepError(RuntimeError):
    """A step cannot produce its outputs (bad upstream data, every model failed, ...).

    ``kind`` says whether another attempt can help (see ``FailureKind``); a step's own checks of its
    inputs are permanent, which is the default.
    """

    def __init__(self, message: str = "", kind: FailureKind | str = FailureKind.PERMANENT):
        super().__init__(message)
        self.kind = FailureKind(kind)

    def __reduce__(self):  # keep ``kind`` through pickling (multiprocess and Celery executors)
        return (type(self), (str(self), self.kind.value))


def failure_kind(exc: BaseException) -> FailureKind:
    """The ``FailureKind`` of any exception: its own ``kind`` if it carries one (``StepError`` and
    the LLM layer's errors do), else ``transient`` for connection and timeout errors and
    ``permanent`` for everything else (a bug or bad data does not fix itself)."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, FailureKind):
        return kind
    if isinstance(kind, str) and kind in FailureKind._value2member_map_:
        return FailureKind(kind)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return FailureKind.TRANSIENT
    return FailureKind.PERMANENT


def combined_kind(kinds: Iterable[FailureKind | str]) -> FailureKind:
    """The kind of a failure made of several (every model of a call, every item of a fan-out): any
    transient -> transient (waiting may fix it); all permanent -> permanent; else content."""
    found = [FailureKind(k) for k in kinds]
    if any(k is FailureKind.TRANSIENT for k in found):
        return FailureKind.TRANSIENT
    if found and all(k is FailureKind.PERMANENT for k in found):
        return FailureKind.PERMANENT
    return FailureKind.CONTENT


def failure_kind_of_all(errors: Iterable[BaseException]) -> FailureKind:
    """``combined_kind`` of the errors' own kinds (``failure_kind``)."""
    return combined_kind(failure_kind(e) for e in errors)


class PipelineStopRequested(RuntimeError):
    """The run was stopped on purpose; never retried, never wrapped."""
