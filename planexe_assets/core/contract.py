"""The contract between a step and whichever orchestrator runs it.

A step is a plain function ``run(ctx: StepContext, inputs: StepInputs) -> StepResult``. It imports
neither Dagster nor Luigi: the Dagster asset and the Luigi task both build a ``StepContext``, load the
upstream files into ``StepInputs``, call the same function and hand the ``StepResult`` to the same
dual writer (run directory + ``plan_content``).

- ``StepInputs`` is keyed like PlanExe's ``self.input()``: the requires() key (``""`` when PlanExe's
  requires() returns a single task), then the upstream output key (``"raw"``, ``"markdown"``,
  ``"clean"``, ...; ``""`` for a single output).
- ``StepResult.files`` must hold exactly the step's output() file names from the step table;
  ``side_files`` holds the side files the table declares, named with ``ctx.step.side_file(key,
  index)`` (per-item files fill the template's ``{}``).
- A fan-out runs its items with ``ctx.map_concurrent`` (the failure policy is in ``core.fanout``).
- LLM calls go through ``ctx.llm`` (see ``LLMCaller``), which records every attempt and keeps the
  usage of this step's calls so the orchestrator can report it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from planexe_assets.core.failures import StepError
from planexe_assets.core.fanout import AllFailedMessage, Outcome, fan_out
from planexe_assets.core.step_table import Step, matches_template

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


class SpeedVsDetail(StrEnum):
    ALL_DETAILS_BUT_SLOW = "all_details_but_slow"
    FAST_BUT_SKIP_DETAILS = "fast_but_skip_details"


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

    ``max_tokens`` bounds this call's reply below every model's own ``max_tokens`` (a step whose
    answer is short need not pay for a model that loops to a large budget); a reply cut off at it
    is not sent again with a larger one. ``None``: the models' own budgets.
    """

    def structured(
        self,
        messages: Sequence[ChatMessage],
        response_model: type[T],
        *,
        label: str | None = None,
        max_tokens: int | None = None,
    ) -> StructuredReply[T]: ...

    def text(
        self, messages: Sequence[ChatMessage], *, label: str | None = None, max_tokens: int | None = None
    ) -> TextReply: ...

    @property
    def usage(self) -> list[CallUsage]: ...


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
    # The plan is gated (planexe_assets/lifecycle/redline.py): a REFUSE verdict of the redline gate stops it.
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

    def map_concurrent(
        self, fn: Callable[[Any], R], items: Iterable[Any], *, all_failed: AllFailedMessage | None = None
    ) -> list[Outcome[R]]:
        """Run ``fn`` over ``items`` on threads, within this step's ``max_concurrency``; one ``Outcome``
        per item, in input order. The failure policy is ``planexe_assets.core.fanout``'s: a stop or a
        transient item failure fails the fan-out at once, and when every item failed a ``StepError``
        is raised with the message ``all_failed(failed outcomes)`` builds."""
        return fan_out(
            fn, items, name=self.step.name, max_concurrency=self.max_concurrency, all_failed=all_failed
        )


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
            if not any(matches_template(name, t) for t in step.side_outputs):
                raise StepError(
                    f"step {step.name} returned side file {name} matching no template {step.side_outputs}"
                )


StepFunction = Callable[[StepContext, StepInputs], StepResult]
