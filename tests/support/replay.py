"""A scripted ``LLMCaller`` for step tests: answers from recorded real model outputs.

It is not a fake model: it replays what real models answered in the recorded PlanExe runs
(``tests/fixtures/planexe_runs``), validating each answer with the step's own response model exactly
as the real LLM layer does, so a step test proves the step handles real replies end to end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from planexe_assets.core import (
    STEP_BY_NAME,
    CallUsage,
    ChatMessage,
    Step,
    StepContext,
    StepInputs,
    StructuredReply,
    TextReply,
    UpstreamFiles,
    step_file,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "planexe_runs"

Answer = dict | str | BaseModel
Responder = Callable[[Sequence[ChatMessage], type[BaseModel] | None, str | None], Answer]


class ReplayLLM:
    """Answers calls from a list (in call order) or from a responder function (for concurrent fan-outs)."""

    def __init__(
        self,
        answers: Sequence[Answer] | None = None,
        responder: Responder | None = None,
        model_id: str = "replay",
    ):
        if (answers is None) == (responder is None):
            raise ValueError("give answers or responder")
        self._answers = list(answers or [])
        self._responder = responder
        self._lock = threading.Lock()
        self.model_id = model_id
        self.calls: list[dict[str, Any]] = []
        self._usage: list[CallUsage] = []

    def _next(self, messages, response_model, label, max_tokens=None) -> Answer:
        with self._lock:
            self.calls.append(
                {
                    "messages": [dict(m) for m in messages],
                    "response_model": response_model,
                    "label": label,
                    "max_tokens": max_tokens,
                }
            )
            if self._responder is None:
                if not self._answers:
                    raise AssertionError(
                        f"ReplayLLM ran out of answers (call {len(self.calls)}, label={label})"
                    )
                return self._answers.pop(0)
        # Outside the lock, so concurrent fan-out calls really overlap in tests.
        return self._responder(messages, response_model, label)

    def _record(self, label) -> CallUsage:
        usage = CallUsage(
            model_id=self.model_id, duration_seconds=0.0, input_tokens=10, output_tokens=20, label=label
        )
        with self._lock:
            self._usage.append(usage)
        return usage

    def structured(self, messages, response_model, *, label=None, max_tokens=None) -> StructuredReply:
        answer = self._next(messages, response_model, label, max_tokens)
        if isinstance(answer, BaseModel):
            answer = answer.model_dump(mode="json")
        if isinstance(answer, str):
            text = answer
            value = response_model.model_validate_json(answer)
        else:
            fields = {k: v for k, v in answer.items() if k in response_model.model_fields}
            text = json.dumps(fields, ensure_ascii=False)
            value = response_model.model_validate(fields)
        return StructuredReply(value=value, text=text, usage=self._record(label))

    def text(self, messages, *, label=None, max_tokens=None) -> TextReply:
        answer = self._next(messages, None, label, max_tokens)
        if not isinstance(answer, str):
            raise AssertionError("text() call got a non-string scripted answer")
        return TextReply(text=answer, usage=self._record(label))

    @property
    def usage(self) -> list[CallUsage]:
        with self._lock:
            return list(self._usage)


def load_run_file(run: str, filename: str) -> str:
    return (FIXTURES / run / filename).read_text(encoding="utf-8")


def load_run_json(run: str, filename: str) -> Any:
    return json.loads(load_run_file(run, filename))


def inputs_from_run(step_name: str, run: str) -> StepInputs:
    """The step's StepInputs, loaded from a recorded run's files (only files present are loaded)."""
    step = STEP_BY_NAME[step_name]
    by_key: dict[str, UpstreamFiles] = {}
    for key, upstream_name in step.all_requires.items():
        upstream: Step = STEP_BY_NAME[upstream_name]
        contents = {}
        for filename in upstream.outputs.values():
            path = FIXTURES / run / filename
            if path.exists():
                contents[filename] = path.read_text(encoding="utf-8")
        by_key[key] = UpstreamFiles(step=upstream, contents=contents)
    return StepInputs(by_key)


def context_for(
    step_name: str, llm, *, fast: bool = False, prompt: str = "", run: str | None = None
) -> StepContext:
    from datetime import UTC, datetime

    from planexe_assets.core import SpeedVsDetail

    if run is not None and not prompt:
        prompt = load_run_file(run, step_file("setup"))
    return StepContext(
        plan_id="test_plan",
        step=STEP_BY_NAME[step_name],
        llm=llm,
        speed_vs_detail=SpeedVsDetail.FAST_BUT_SKIP_DETAILS if fast else SpeedVsDetail.ALL_DETAILS_BUT_SLOW,
        plan_created_at=datetime(2026, 3, 10, 19, 21, 45, tzinfo=UTC),
        plan_prompt=prompt,
    )


def all_strings(value: Any) -> list[str]:
    """Every non-empty string leaf of a JSON-like value (for "the markdown lost nothing" checks)."""
    out: list[str] = []
    if isinstance(value, str):
        if value.strip():
            out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            out.extend(all_strings(v))
    elif isinstance(value, (list, tuple)):
        for v in value:
            out.extend(all_strings(v))
    return out


def norm(text: str) -> str:
    """Whitespace collapsed to single spaces, for "does this text survive into the markdown" checks."""
    return " ".join(text.split())


def missing_from(strings: list[str], markdown: str) -> list[str]:
    """The strings that do not appear in ``markdown`` (both whitespace-normalised)."""
    flat = norm(markdown)
    return [s for s in strings if norm(s) not in flat]
