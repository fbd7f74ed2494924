"""The one fan-out helper: a step's items run concurrently, and the policy for their failures.

A fan-out step (premise-attack lenses, lever batches, assumption sections, expert reviews, document
drafts, duration chunks, WBS level 3) calls ``ctx.map_concurrent(fn, items, all_failed=...)``, which
is ``fan_out`` with the step's name and concurrency. The policy, in one place:

- items run on at most ``max_concurrency`` threads; the results come back in input order, one
  ``Outcome`` per item (a value, or the error that item raised);
- a stop request (``PipelineStopRequested``) from any item is re-raised once the started items settle;
- an item that fails as ``transient`` (its endpoint is down, rate limited or timing out, after the
  LLM layer's own retries and circuit breaker) fails the whole fan-out: items not started yet are not
  run, and once the started ones settle a transient ``StepError`` is raised, so the orchestrator
  retries the step later instead of keeping a result with holes an outage made;
- items that fail otherwise (an unusable reply, a permanent error) stay failed items for the step to
  report, as PlanExe does; but when every item failed the fan-out raises a ``StepError`` whose kind
  combines the items' kinds (``failure_kind_of_all``), with the message ``all_failed`` builds from the
  failed outcomes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from planexe_assets.core.failures import (
    FailureKind,
    PipelineStopRequested,
    StepError,
    failure_kind,
    failure_kind_of_all,
)

R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """Result of one item of a fan-out: a value or the error that item raised."""

    index: int
    value: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> R:
        """The item's value; a failed item raises its error instead (check ``ok`` first)."""
        if self.error is not None:
            raise self.error
        # ``value`` is the function's return value here (None only when ``R`` admits None).
        return cast(R, self.value)

    def failure(self) -> BaseException:
        """The item's error; only for a failed item (``not ok``)."""
        if self.error is None:
            raise ValueError(f"item {self.index} succeeded: it has no error")
        return self.error


AllFailedMessage = Callable[[Sequence[Outcome[Any]]], str]


def fan_out(
    fn: Callable[[Any], R],
    items: Iterable[Any],
    *,
    name: str,
    max_concurrency: int,
    all_failed: AllFailedMessage | None = None,
) -> list[Outcome[R]]:
    """Run ``fn`` over ``items`` on threads (see the module docstring for the failure policy).

    ``name``: the step, for thread names and messages. ``all_failed``: the message of the error raised
    when every item failed (it gets the failed outcomes); default: the count and the first error.
    """
    items = list(items)
    if not items:
        return []
    done, outage = _run_all(fn, items, name=name, max_concurrency=max_concurrency)
    return _settle(done, len(items), name=name, outage=outage, all_failed=all_failed)


def _run_all(
    fn: Callable[[Any], R], items: list[Any], *, name: str, max_concurrency: int
) -> tuple[list[Outcome[R]], bool]:
    """The outcomes of the items that ran, in input order, and whether one of them found an outage
    (a transient failure), after which the items not started yet were skipped."""
    outcomes: list[Outcome[R] | None] = [None] * len(items)
    lock = threading.Lock()
    outage = threading.Event()

    def run_one(index: int) -> None:
        if outage.is_set():
            return  # an earlier item found the endpoint down: do not start this one
        try:
            value = fn(items[index])
            result: Outcome[R] = Outcome(index=index, value=value)
        except BaseException as exc:  # noqa: BLE001 - reported per item
            result = Outcome(index=index, error=exc)
            if failure_kind(exc) is FailureKind.TRANSIENT and not isinstance(exc, PipelineStopRequested):
                outage.set()
        with lock:
            outcomes[index] = result

    workers = max(1, min(max_concurrency, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        list(pool.map(run_one, range(len(items))))
    return [o for o in outcomes if o is not None], outage.is_set()


def _settle(
    done: list[Outcome[R]], count: int, *, name: str, outage: bool, all_failed: AllFailedMessage | None
) -> list[Outcome[R]]:
    """The failure policy over the finished items: a stop is re-raised, an outage fails the step as
    transient, every item failed fails it with their combined kind; otherwise the outcomes."""
    for o in done:
        if isinstance(o.error, PipelineStopRequested):
            raise o.error
    if outage:
        transient = [
            o for o in done if o.error is not None and failure_kind(o.error) is FailureKind.TRANSIENT
        ]
        succeeded = sum(1 for o in done if o.ok)
        raise StepError(
            f"{name}: {len(transient)} of {count} items failed transiently, "
            f"{count - len(done)} not started, {succeeded} succeeded; the step is to be retried "
            f"as a whole. First error: {transient[0].error}",
            kind=FailureKind.TRANSIENT,
        ) from transient[0].error
    if not any(o.ok for o in done):
        message = all_failed(done) if all_failed is not None else _default_message(name, done)
        raise StepError(message, kind=failure_kind_of_all(o.error for o in done if o.error is not None))
    return done


def _default_message(name: str, failed: Sequence[Outcome[Any]]) -> str:
    first = failed[0].error
    return f"{name}: every one of {len(failed)} items failed; first: {type(first).__name__}: {first}"
