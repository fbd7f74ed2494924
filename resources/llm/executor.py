"""The LLM executor: ordered models, retries, fail-over, validation, recording, usage.

One logical call (``StepLLM.structured`` or ``StepLLM.text``) walks the models in order. For each:

- transient errors (429, 408, 409, 5xx, timeouts, connection errors, replies without choices) are
  retried with exponential backoff plus jitter, waiting at least the server's ``Retry-After``; after
  the model's retry budget (its ``max_retries``, else ``RetryPolicy.transient_retries``), or when
  ``Retry-After`` asks for longer than ``RetryPolicy.max_retry_after``, the next model is tried;
- permanent errors (400, 401, 403, 404, 422, a missing key variable) go straight to the next model;
- an unusable reply (not JSON, fails validation, empty, or cut off with ``finish_reason == "length"``)
  is repaired once: the model sees its reply and the error and tries again, or, when it was cut off,
  the same request is sent with a larger ``max_tokens``; a second unusable reply moves on;
- a server that rejects the structured-output mode (llama.cpp answers ``json_schema`` with HTTP 500
  "should be 'text' or 'json_object'") is downgraded json_schema -> json_object -> prompt, once per
  model for the life of the executor, with a log line, and the request is sent again at once;
- ``PipelineStopRequested`` (from ``should_stop`` or anywhere below) is never retried or wrapped; the
  stop is checked before every attempt and during backoff waits.

When every model has failed the call raises ``StepError`` naming the step, every model tried and each
one's last error. Every attempt is recorded (see ``recording.py``), API keys scrubbed first.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from planexe_assets.steps.base import (
    CallUsage,
    ChatMessage,
    PipelineStopRequested,
    StepError,
    StructuredReply,
    TextReply,
)
from resources.llm.config import ModelEntry, load_llm_config, resolve_models, safe_url
from resources.llm.providers import (
    Failure,
    Provider,
    ProviderReply,
    ProviderRequest,
    classify_error,
    make_provider,
)
from resources.llm.recording import InteractionRecorder, NullRecorder

T = TypeVar("T", bound=BaseModel)
log = logging.getLogger("planexe.llm")

_ROLES = frozenset({"system", "user", "assistant"})
_MODE_CHAIN = {"json_schema": "json_object", "json_object": "prompt"}
_MODE_REJECTION = re.compile(r"json_schema|json_object|response_format|response format", re.IGNORECASE)
_MODE_REJECTION_STATUS = frozenset({400, 422, 500, 501})
_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}")
_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one model is tried before the next. Tests use tiny delays."""

    transient_retries: int = 3  # retries after the first attempt; a model's max_retries overrides it
    base_delay: float = 1.0  # first backoff, doubled per retry
    max_delay: float = 30.0
    jitter: float = 0.25  # up to this fraction of the delay is added at random
    max_retry_after: float = 60.0  # a longer Retry-After moves on to the next model instead of waiting
    truncation_growth: float = 2.0  # a cut-off reply is retried with max_tokens times this
    assumed_max_tokens: int = 4096  # the budget assumed when a cut-off model had no max_tokens set
    max_tokens_cap: int = 65536

    def backoff(self, retry_number: int, retry_after: float | None, rng: random.Random) -> float:
        delay = min(self.max_delay, self.base_delay * (2 ** max(0, retry_number - 1)))
        delay += delay * self.jitter * rng.random()
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


class InFlightLimiter:
    """A client-side cap on concurrent requests per provider endpoint (``ModelEntry.provider_key``).

    The limit of an endpoint is the smallest of its models' limits: a model's ``max_in_flight``
    argument, else ``limits[model id]``, ``limits[class name]``, ``limits[provider key]``,
    ``limits["default"]``, else ``default``.
    """

    def __init__(self, models: Sequence[ModelEntry], limits: int | Mapping[str, int] = 4, default: int = 4):
        self.limits: dict[str, int] = {}
        for entry in models:
            limit = self._limit_for(entry, limits, default)
            key = entry.provider_key
            self.limits[key] = min(limit, self.limits.get(key, limit))
        self._semaphores = {key: threading.BoundedSemaphore(limit) for key, limit in self.limits.items()}

    @staticmethod
    def _limit_for(entry: ModelEntry, limits: int | Mapping[str, int], default: int) -> int:
        if entry.max_in_flight is not None:
            return entry.max_in_flight
        if isinstance(limits, int):
            return max(1, limits)
        for key in (entry.id, entry.class_name, entry.provider_key, "default"):
            if key in limits:
                return max(1, int(limits[key]))
        return default

    @contextmanager
    def slot(self, entry: ModelEntry) -> Iterator[None]:
        semaphore = self._semaphores[entry.provider_key]
        semaphore.acquire()
        try:
            yield
        finally:
            semaphore.release()


class LLMExecutor:
    """Shared by every step of a run (its in-flight limits and structured-mode downgrades are shared)."""

    def __init__(
        self,
        models: Sequence[ModelEntry],
        recorder: InteractionRecorder | None = None,
        retry: RetryPolicy | None = None,
        in_flight: int | Mapping[str, int] = 4,
        *,
        seed: int | None = None,
    ):
        models = list(models)
        if not models:
            raise ValueError("LLMExecutor needs at least one model")
        ids = [m.id for m in models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"model ids appear more than once: {duplicates}")
        self.models: tuple[ModelEntry, ...] = tuple(models)
        self.recorder: InteractionRecorder = recorder if recorder is not None else NullRecorder()
        self.retry = retry or RetryPolicy()
        self.limiter = InFlightLimiter(models, in_flight)
        self._providers: dict[str, Provider] = {m.id: make_provider(m) for m in models}
        self._modes = {m.id: m.structured_output for m in models}
        self._modes_lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        model: str | None = "auto",
        config_path: str | None = None,
        recorder: InteractionRecorder | None = None,
        retry: RetryPolicy | None = None,
        in_flight: int | Mapping[str, int] = 4,
    ) -> LLMExecutor:
        """Load the config, pick the models (errors come out here, before any plan work) and build."""
        return cls(resolve_models(load_llm_config(config_path), model), recorder=recorder, retry=retry, in_flight=in_flight)

    def __repr__(self) -> str:
        return f"LLMExecutor(models={[m.id for m in self.models]})"

    def for_step(self, plan_id: str, stage: str, should_stop: Callable[[], bool] | None = None) -> StepLLM:
        if should_stop is not None and not callable(should_stop):
            raise TypeError("should_stop must be callable")
        return StepLLM(self, plan_id, stage, should_stop)

    def structured_mode(self, model_id: str) -> str:
        with self._modes_lock:
            return self._modes[model_id]

    # -- one logical call -------------------------------------------------------------------------

    def run_call(
        self,
        *,
        plan_id: str,
        stage: str,
        messages: Sequence[ChatMessage],
        response_model: type[BaseModel] | None,
        label: str | None,
        should_stop: Callable[[], bool] | None,
    ) -> tuple[Any, str, CallUsage]:
        """Returns (validated value or text, reply text, usage). Raises StepError or PipelineStopRequested."""
        checked = _check_messages(messages)
        call = _Call(self, plan_id, stage, checked, response_model, label, should_stop)
        return call.run()

    def _downgrade(self, entry: ModelEntry, rejected_mode: str, stage: str) -> str:
        with self._modes_lock:
            current = self._modes[entry.id]
            if current != rejected_mode:
                return current  # another thread already downgraded this model
            new = _MODE_CHAIN[rejected_mode]
            self._modes[entry.id] = new
        log.warning(
            "%s: model %r rejected structured output mode %r; using %r for this model from now on",
            stage, entry.id, rejected_mode, new,
        )
        return new

    def _jitter_rng(self) -> random.Random:
        with self._rng_lock:
            return random.Random(self._rng.random())


class StepLLM:
    """``LLMCaller`` for one step of one plan; thread-safe, keeps the usage of its calls."""

    def __init__(self, executor: LLMExecutor, plan_id: str, stage: str, should_stop: Callable[[], bool] | None):
        self.executor = executor
        self.plan_id = plan_id
        self.stage = stage
        self.should_stop = should_stop
        self._lock = threading.Lock()
        self._usage: list[CallUsage] = []

    def __repr__(self) -> str:
        return f"StepLLM(plan_id={self.plan_id!r}, stage={self.stage!r}, models={[m.id for m in self.executor.models]})"

    def structured(
        self, messages: Sequence[ChatMessage], response_model: type[T], *, label: str | None = None
    ) -> StructuredReply[T]:
        if not (isinstance(response_model, type) and issubclass(response_model, BaseModel)):
            raise TypeError(f"response_model must be a pydantic model class, got {response_model!r}")
        value, text, usage = self.executor.run_call(
            plan_id=self.plan_id, stage=self.stage, messages=messages, response_model=response_model,
            label=label, should_stop=self.should_stop,
        )
        self._keep(usage)
        return StructuredReply(value=value, text=text, usage=usage)

    def text(self, messages: Sequence[ChatMessage], *, label: str | None = None) -> TextReply:
        _, text, usage = self.executor.run_call(
            plan_id=self.plan_id, stage=self.stage, messages=messages, response_model=None,
            label=label, should_stop=self.should_stop,
        )
        self._keep(usage)
        return TextReply(text=text, usage=usage)

    @property
    def usage(self) -> list[CallUsage]:
        with self._lock:
            return list(self._usage)

    def _keep(self, usage: CallUsage) -> None:
        with self._lock:
            self._usage.append(usage)


# ------------------------------------------------------------------------------------------------


class _Unusable(Exception):
    """A reply that arrived but cannot be used."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _ModelOutcome:
    model_id: str
    attempts: int
    last: Failure


class _Call:
    """State of one logical call across its attempts and models."""

    def __init__(
        self,
        executor: LLMExecutor,
        plan_id: str,
        stage: str,
        messages: list[ChatMessage],
        response_model: type[BaseModel] | None,
        label: str | None,
        should_stop: Callable[[], bool] | None,
    ):
        self.ex = executor
        self.plan_id = plan_id
        self.stage = stage
        self.messages = messages
        self.response_model = response_model
        self.label = label
        self.should_stop = should_stop
        self.call_id = uuid.uuid4().hex
        self.schema = _schema_of(response_model) if response_model is not None else None
        self.schema_name = _schema_name(response_model) if response_model is not None else None
        self.attempts = 0
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cost: float | None = None
        self.rng = executor._jitter_rng()
        self.where = f"{stage}" + (f" [{label}]" if label else "")

    def run(self) -> tuple[Any, str, CallUsage]:
        started = time.perf_counter()
        outcomes: list[_ModelOutcome] = []
        for entry in self.ex.models:
            result = self._try_model(entry)
            if isinstance(result, _ModelOutcome):
                outcomes.append(result)
                continue
            value, text = result
            usage = CallUsage(
                model_id=entry.id,
                duration_seconds=time.perf_counter() - started,
                input_tokens=self.input_tokens,
                output_tokens=self.output_tokens,
                attempts=self.attempts,
                cost_usd=self.cost,
                label=self.label,
            )
            return value, text, usage
        endpoints = {entry.id: entry.endpoint() for entry in self.ex.models}
        tried = "; ".join(
            f"{o.model_id} ({endpoints[o.model_id]}; {o.attempts} attempt{'s' if o.attempts != 1 else ''}, last error "
            f"{o.last.code}: {_shorten(o.last.message, 300)})"
            for o in outcomes
        )
        what = f"call {self.label!r}" if self.label else "an LLM call"
        raise StepError(f"step {self.stage}: every model failed for {what} (plan {self.plan_id}); tried {tried}")

    def _try_model(self, entry: ModelEntry) -> tuple[Any, str] | _ModelOutcome:
        provider = self.ex._providers[entry.id]
        budget = entry.max_retries if entry.max_retries is not None else self.ex.retry.transient_retries
        messages = self.messages
        max_tokens = entry.max_tokens
        transient_retries = 0
        repaired: str | None = None  # why the single repair attempt was used
        model_attempts = 0
        while True:
            self._check_stop()
            mode = self.ex.structured_mode(entry.id) if self.schema is not None else None
            model_attempts += 1
            self.attempts += 1
            request = ProviderRequest(
                messages=_with_schema_instruction(messages, self.schema, mode),
                schema=self.schema,
                schema_name=self.schema_name,
                mode=mode,
                max_tokens=max_tokens,
            )
            outcome = self._attempt(entry, provider, request, model_attempts, repaired)
            if not isinstance(outcome, Failure):
                return outcome
            failure = outcome
            if failure.kind == "cancelled":
                raise PipelineStopRequested(failure.message)
            if mode in _MODE_CHAIN and _is_mode_rejection(failure):
                self.ex._downgrade(entry, mode, self.where)
                continue
            if failure.kind == "invalid" and repaired is None:
                repaired = failure.code
                if failure.code == "truncated":
                    current = max_tokens or self.ex.retry.assumed_max_tokens
                    max_tokens = min(self.ex.retry.max_tokens_cap, int(current * self.ex.retry.truncation_growth))
                    self._log(entry, model_attempts, failure, f"retrying with max_tokens={max_tokens}")
                else:
                    messages = _repair_messages(self.messages, failure, self.schema is not None)
                    self._log(entry, model_attempts, failure, "asking the model to correct its reply")
                continue
            if failure.kind == "transient" and transient_retries < budget:
                if failure.retry_after is not None and failure.retry_after > self.ex.retry.max_retry_after:
                    self._log(entry, model_attempts, failure, f"Retry-After {failure.retry_after:.0f}s is too long; next model")
                    return _ModelOutcome(entry.id, model_attempts, failure)
                transient_retries += 1
                delay = self.ex.retry.backoff(transient_retries, failure.retry_after, self.rng)
                self._log(entry, model_attempts, failure, f"retrying in {delay:.2f}s")
                self._sleep(delay)
                continue
            self._log(entry, model_attempts, failure, "giving up on this model")
            return _ModelOutcome(entry.id, model_attempts, failure)

    def _attempt(
        self,
        entry: ModelEntry,
        provider: Provider,
        request: ProviderRequest,
        model_attempt: int,
        repaired: str | None,
    ) -> tuple[Any, str] | Failure:
        secrets = provider.secret_values()
        started_at = _utcnow()
        handle = self.ex.recorder.attempt_started(
            {
                "plan_id": self.plan_id,
                "llm_model": entry.id,
                "stage": self.stage,
                "prompt_text": _scrub(_render_prompt(request.messages), secrets),
                "prompt_metadata": self._prompt_metadata(entry, request, model_attempt, repaired),
                "status": "pending",
                "started_at": started_at,
            }
        )
        clock = time.perf_counter()
        reply: ProviderReply | None = None
        result: tuple[Any, str] | Failure
        try:
            with self.ex.limiter.slot(entry):
                clock = time.perf_counter()
                reply = provider.complete(request)
            result = self._evaluate(reply)
        except BaseException as exc:  # noqa: BLE001 - classified, recorded, and re-raised if not ours
            failure = classify_error(exc)
            result = Failure(
                failure.kind, failure.code, _scrub(failure.message, secrets), failure.status, failure.retry_after
            )
            if not isinstance(exc, Exception) or failure.kind == "cancelled":
                # A stop (or an interrupt) is recorded, then passes through untouched.
                self._finish(handle, entry, started_at, clock, reply, result, secrets)
                raise
        self._finish(handle, entry, started_at, clock, reply, result, secrets)
        return result

    def _evaluate(self, reply: ProviderReply) -> tuple[Any, str] | Failure:
        try:
            if reply.finish_reason == "length":
                raise _Unusable("truncated", "the reply was cut off at the max_tokens limit")
            if not reply.text.strip():
                raise _Unusable("empty_reply", "the reply is empty")
            if self.response_model is None:
                return reply.text, reply.text
            data, json_text = _extract_json(reply.text)
            try:
                value = self.response_model.model_validate(data)
            except ValidationError as exc:
                raise _Unusable("schema_validation", _summarize_validation(exc)) from None
            return value, json_text
        except _Unusable as bad:
            return Failure("invalid", bad.code, bad.message, reply_text=reply.text)

    def _finish(
        self,
        handle: Any,
        entry: ModelEntry,
        started_at: datetime,
        clock: float,
        reply: ProviderReply | None,
        result: tuple[Any, str] | Failure,
        secrets: list[str],
    ) -> None:
        duration = time.perf_counter() - clock
        failed = isinstance(result, Failure)
        input_tokens = reply.input_tokens if reply else None
        output_tokens = reply.output_tokens if reply else None
        total_tokens = reply.total_tokens if reply else None
        if total_tokens is None and (input_tokens is not None or output_tokens is not None):
            total_tokens = (input_tokens or 0) + (output_tokens or 0)
        cost = entry.cost.usd(input_tokens, output_tokens) if entry.cost is not None else None
        if input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + input_tokens
        if output_tokens is not None:
            self.output_tokens = (self.output_tokens or 0) + output_tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost
        response_metadata: dict[str, Any] = {
            "finish_reason": reply.finish_reason if reply else None,
            "response_id": reply.response_id if reply else None,
            "served_model": reply.served_model if reply else None,
            "cost_usd": cost,
        }
        if failed:
            response_metadata["error_kind"] = result.kind
            if result.status is not None:
                response_metadata["http_status"] = result.status
            if result.retry_after is not None:
                response_metadata["retry_after"] = result.retry_after
        self.ex.recorder.attempt_finished(
            handle,
            {
                "response_text": _scrub(reply.text, secrets) if reply is not None else None,
                "response_metadata": response_metadata,
                "status": "failed" if failed else "completed",
                "completed_at": _utcnow(),
                "duration_seconds": round(duration, 4),
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": total_tokens,
                "error_message": _shorten(result.message, _MAX_ERROR_CHARS) if failed else None,
                "error_code": result.code[:50] if failed else None,
            },
        )
        self.ex.recorder.add_plan_usage(self.plan_id, 1, total_tokens or 0, cost or 0.0)

    def _prompt_metadata(
        self, entry: ModelEntry, request: ProviderRequest, model_attempt: int, repaired: str | None
    ) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": "structured" if self.response_model is not None else "text",
            "response_model": self.response_model.__name__ if self.response_model is not None else None,
            "structured_mode": request.mode,
            "attempt": self.attempts,
            "model_attempt": model_attempt,
            "call_id": self.call_id,
            "repair_of": repaired,
            "max_tokens": request.max_tokens,
            "temperature": entry.temperature,
            "provider_class": entry.class_name,
            "model_name": entry.model,
            "base_url": safe_url(entry.base_url),
            "message_count": len(request.messages),
        }

    def _check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise PipelineStopRequested(f"run stopped during step {self.stage}")

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self._check_stop()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.05) if self.should_stop is not None else remaining)

    def _log(self, entry: ModelEntry, model_attempt: int, failure: Failure, then: str) -> None:
        log.warning(
            "%s: model %r (%s) attempt %d failed (%s): %s; %s",
            self.where, entry.id, entry.endpoint(), model_attempt, failure.code, _shorten(failure.message, 300), then,
        )


# ------------------------------------------------------------------------------------------------
# helpers


def _utcnow() -> datetime:
    # Naive UTC, as the llm_interactions columns are DateTime without a time zone.
    return datetime.now(UTC).replace(tzinfo=None)


def _check_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    if isinstance(messages, str | bytes) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    checked: list[ChatMessage] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if role not in _ROLES or not isinstance(content, str):
            raise ValueError(f"message {index} must be {{'role': system|user|assistant, 'content': str}}, got {message!r:.200}")
        checked.append({"role": role, "content": content})
    return checked


@lru_cache(maxsize=512)
def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with the root object inline (recursive models put it under $defs)."""
    schema = model.model_json_schema()
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        defs = schema.get("$defs", {})
        root = dict(defs.get(ref[len("#/$defs/") :], {}))
        root["$defs"] = defs
        schema = root
    return schema


def _schema_name(model: type[BaseModel]) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", model.__name__)[:64] or "response"


def _schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "Reply with one JSON object and nothing else: no prose before or after it and no code fences. "
        "The object must be valid against this JSON schema:\n"
        + json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    )


def _with_schema_instruction(
    messages: list[ChatMessage], schema: dict[str, Any] | None, mode: str | None
) -> list[ChatMessage]:
    """In json_object and prompt modes the schema travels in the system message.

    It is appended to the first system message rather than added as a new message at the end:
    several local chat templates refuse a system message anywhere but first.
    """
    if schema is None or mode == "json_schema":
        return messages
    instruction = _schema_instruction(schema)
    out = [dict(m) for m in messages]
    for message in out:
        if message["role"] == "system":
            message["content"] = message["content"].rstrip() + "\n\n" + instruction
            return out
    return [{"role": "system", "content": instruction}, *out]


def _repair_messages(messages: list[ChatMessage], failure: Failure, structured: bool) -> list[ChatMessage]:
    bad = failure.reply_text or ""
    if structured:
        ask = (
            f"That reply could not be used: {failure.message}\n"
            "Send the complete answer again as one JSON object that follows the schema exactly, with no other text."
        )
    else:
        ask = f"That reply could not be used: {failure.message}\nPlease answer the request again."
    out = list(messages)
    if bad.strip():
        out.append({"role": "assistant", "content": bad})
    out.append({"role": "user", "content": ask})
    return out


_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)


def _extract_json(text: str) -> tuple[Any, str]:
    """The JSON object in a reply: the whole reply, a fenced block, or the outermost {...}."""
    candidate = text.strip()
    fenced = _FENCE.match(candidate)
    if fenced:
        candidate = fenced.group(1).strip()
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError as first_error:
        start, end = candidate.find("{"), candidate.rfind("}")
        if start == -1 or end <= start:
            raise _Unusable("invalid_json", f"the reply is not JSON ({first_error.msg} at line {first_error.lineno} column {first_error.colno})") from None
        candidate = candidate[start : end + 1]
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError as exc:
            raise _Unusable("invalid_json", f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise _Unusable("schema_validation", f"expected a JSON object, got {type(data).__name__}")
    return data, candidate


def _summarize_validation(exc: ValidationError, limit: int = 8) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:limit]:
        location = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{location}: {err.get('msg', 'invalid')}")
    more = len(errors) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return f"the JSON does not match the schema ({len(errors)} error{'s' if len(errors) != 1 else ''}): " + "; ".join(parts)


def _is_mode_rejection(failure: Failure) -> bool:
    return (
        failure.kind in ("transient", "permanent")
        and failure.status in _MODE_REJECTION_STATUS
        and bool(_MODE_REJECTION.search(failure.message))
    )


def _render_prompt(messages: Sequence[ChatMessage]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def _scrub(text: str | None, secrets: Sequence[str]) -> str | None:
    """Remove API keys: the resolved key itself, bearer tokens and sk-style keys."""
    if text is None:
        return None
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    text = _BEARER.sub("Bearer [REDACTED]", text)
    return _SK_KEY.sub("sk-[REDACTED]", text)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split()) if len(text) > limit else text
    return text if len(text) <= limit else text[: limit - 3] + "..."
