"""The contract between a step and whichever orchestrator runs it.

A step is a plain function ``run(ctx: StepContext, inputs: StepInputs) -> StepResult``. It imports
neither Dagster nor Luigi: the Dagster asset and the Luigi task both build a ``StepContext``, load the
upstream files into ``StepInputs``, call the same function and hand the ``StepResult`` to the same
dual writer (run directory + ``plan_content``).

- ``StepInputs`` is keyed like PlanExe's ``self.input()``: the requires() key (``""`` when PlanExe's
  requires() returns a single task), then the upstream output key (``"raw"``, ``"markdown"``,
  ``"clean"``, ...; ``""`` for a single output).
- ``StepResult.files`` must hold exactly the step's output() file names from the step table;
  ``side_files`` holds per-item files named from the table's ``{}`` templates.
- LLM calls go through ``ctx.llm`` (see ``LLMCaller``), which records every attempt and keeps the
  usage of this step's calls so the orchestrator can report it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from planexe_assets.core.step_table import Step

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


class SpeedVsDetail(StrEnum):
    ALL_DETAILS_BUT_SLOW = "all_details_but_slow"
    FAST_BUT_SKIP_DETAILS = "fast_but_skip_details"


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


ChatMessage = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class CallUsage:
    """What one logical LLM call cost, across its attempts (the successful model is ``model_id``)."""

    model_id: str
    duration_seconds: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    attempts: int = 1
    cost_usd: float | None = None
    label: str | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


@dataclass(frozen=True)
class StructuredReply(Generic[T]):
    value: T
    text: str  # the reply text as the model sent it (JSON), for multi-turn follow-ups
    usage: CallUsage

    @property
    def metadata(self) -> dict[str, Any]:
        return usage_metadata(self.usage)


@dataclass(frozen=True)
class TextReply:
    text: str
    usage: CallUsage

    @property
    def metadata(self) -> dict[str, Any]:
        return usage_metadata(self.usage)


def usage_metadata(usage: CallUsage) -> dict[str, Any]:
    """The per-call metadata block stored in raw JSON files (never holds keys or headers)."""
    return {
        "llm_model": usage.model_id,
        "duration": round(usage.duration_seconds, 3),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "attempts": usage.attempts,
    }


class LLMCaller(Protocol):
    """LLM access for one step of one plan. Implemented by ``resources.llm``.

    Both methods try the configured models in order (retrying transient errors, failing over on
    permanent ones), record every attempt in ``llm_interactions`` under this step's stage, and raise
    ``StepError`` naming the step and every model tried when all fail. They are thread-safe, so a
    fan-out step may call them from ``ctx.map_concurrent``.
    """

    def structured(
        self, messages: Sequence[ChatMessage], response_model: type[T], *, label: str | None = None
    ) -> StructuredReply[T]: ...

    def text(self, messages: Sequence[ChatMessage], *, label: str | None = None) -> TextReply: ...

    @property
    def usage(self) -> list[CallUsage]: ...


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """Result of one item of a fan-out: a value or the error that item raised."""

    index: int
    value: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class StepContext:
    plan_id: str
    step: Step
    llm: LLMCaller
    speed_vs_detail: SpeedVsDetail = SpeedVsDetail.ALL_DETAILS_BUT_SLOW
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("planexe.steps"))
    # The plan's creation time (UTC). Steps use it for "the current year" and day 0 of the schedule,
    # so a re-run of an old plan reproduces the same prompts.
    plan_created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    plan_prompt: str = ""
    # The plan is gated (planexe_assets/redline.py): a REFUSE verdict of the redline gate stops it.
    refuse_on_redline: bool = False
    # Upper bound on one fan-out's threads. It is deliberately wider than any fan-out of a plan (WBS
    # level 3 is 25-50 calls): the binding limit is the LLM executor's per-endpoint in-flight limit
    # (``max_in_flight``), and a thread waiting for a slot costs nothing but its stack.
    max_concurrency: int = 64

    @property
    def fast(self) -> bool:
        return self.speed_vs_detail == SpeedVsDetail.FAST_BUT_SKIP_DETAILS

    @property
    def current_year(self) -> int:
        return self.plan_created_at.year

    def map_concurrent(self, fn: Callable[[Any], R], items: Iterable[Any]) -> list[Outcome[R]]:
        """Run ``fn`` over ``items`` on threads; results in input order, one ``Outcome`` each.

        A ``PipelineStopRequested`` from any item is re-raised once all started items settle.
        An item that fails as ``transient`` (its endpoint is down, rate limited or timing out, after
        the LLM layer's own retries and circuit breaker) fails the whole fan-out: items not started
        yet are not run, and once the started ones settle a transient ``StepError`` is raised, so
        the orchestrator retries the step later instead of keeping a result with holes an outage
        made. Items that fail otherwise (an unusable reply, a permanent error) are returned as
        failed outcomes for the step to handle, as before.
        """
        items = list(items)
        if not items:
            return []
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

        workers = max(1, min(self.max_concurrency, len(items)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{self.step.name}") as pool:
            list(pool.map(run_one, range(len(items))))
        done = [o for o in outcomes if o is not None]
        for o in done:
            if isinstance(o.error, PipelineStopRequested):
                raise o.error
        if outage.is_set():
            transient = [o for o in done if o.error is not None and failure_kind(o.error) is FailureKind.TRANSIENT]
            succeeded = sum(1 for o in done if o.ok)
            raise StepError(
                f"{self.step.name}: {len(transient)} of {len(items)} items failed transiently, "
                f"{len(items) - len(done)} not started, {succeeded} succeeded; the step is to be retried "
                f"as a whole. First error: {transient[0].error}",
                kind=FailureKind.TRANSIENT,
            ) from transient[0].error
        return done


@dataclass(frozen=True)
class UpstreamFiles:
    """The output files of one upstream step, keyed by PlanExe's output key."""

    step: Step
    contents: Mapping[str, str]  # filename -> text

    def filename(self, key: str = "") -> str:
        try:
            return self.step.outputs[key]
        except KeyError:
            raise StepError(
                f"step {self.step.name} has no output {key!r}; it has {sorted(self.step.outputs)}"
            ) from None

    def text(self, key: str = "") -> str:
        name = self.filename(key)
        try:
            return self.contents[name]
        except KeyError:
            raise StepError(f"upstream file {name} of step {self.step.name} was not loaded") from None

    def json(self, key: str = "") -> Any:
        name = self.filename(key)
        try:
            return json.loads(self.text(key))
        except json.JSONDecodeError as exc:
            raise StepError(f"upstream file {name} is not valid JSON: {exc}") from exc


class StepInputs(Mapping[str, UpstreamFiles]):
    """``inputs["identify_purpose"].json("raw")`` mirrors PlanExe's ``self.input()["identify_purpose"]["raw"]``."""

    def __init__(self, by_key: Mapping[str, UpstreamFiles]):
        self._by_key = dict(by_key)

    def __getitem__(self, key: str) -> UpstreamFiles:
        try:
            return self._by_key[key]
        except KeyError:
            raise StepError(f"no input {key!r}; available: {sorted(self._by_key)}") from None

    def __iter__(self):
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def single(self) -> UpstreamFiles:
        """The one input of a step whose PlanExe requires() returns a single task."""
        return self[""]


@dataclass
class StepResult:
    files: dict[str, str]
    side_files: dict[str, str] = field(default_factory=dict)
    # Free-form facts for the orchestrator's metadata (counts, skipped items, warnings).
    notes: dict[str, Any] = field(default_factory=dict)

    def check_against(self, step: Step) -> None:
        expected = set(step.outputs.values())
        got = set(self.files)
        if got != expected:
            raise StepError(
                f"step {step.name} returned files {sorted(got)}, expected exactly {sorted(expected)}"
            )
        for name in self.side_files:
            if not any(_matches_template(name, t) for t in step.side_outputs):
                raise StepError(f"step {step.name} returned side file {name} matching no template {step.side_outputs}")


def _matches_template(name: str, template: str) -> bool:
    if "{}" not in template:
        return name == template
    prefix, suffix = template.split("{}")
    middle = name[len(prefix) : len(name) - len(suffix)]
    return name.startswith(prefix) and name.endswith(suffix) and middle.isdigit()


StepFunction = Callable[[StepContext, StepInputs], StepResult]
