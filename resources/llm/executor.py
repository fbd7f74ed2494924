"""The LLM executor: ordered models, retries, fail-over, validation, recording, usage.

One logical call (``StepLLM.structured`` or ``StepLLM.text``) walks the models in order. For each:

- the model's circuit breaker (``breaker.py``, one per base URL + model) is asked first: a model
  that failed ``RetryPolicy.breaker_failures`` times in a row with connection or server errors is
  not sent anything during its cool-down; the call is recorded as ``skipped`` (error code
  ``circuit_open``) and the next model is tried;
- with a ``context_window`` (from the config, or learned from the server, see below),
  ``max_tokens`` is what the window leaves after the prompt (``budget.py`` estimates the prompt
  without a tokenizer and corrects itself from the server's reported usage), capped by the model's
  own ``max_tokens`` and by the call's (``max_tokens=`` of ``structured``/``text``). A prompt that
  leaves less than ``RetryPolicy.min_reply_tokens`` fails at once
  as permanent (recorded ``skipped``, error code ``context_window``), naming the model, the window
  and the estimated prompt size;
- transient errors (429, 408, 409, 5xx, timeouts, connection errors, replies without choices) are
  retried with exponential backoff plus jitter (after a timeout with a longer one, up to
  ``RetryPolicy.timeout_growth_cap`` times the model's), waiting at least the server's ``Retry-After``; after
  the model's retry budget (its ``max_retries``, else ``RetryPolicy.transient_retries``), when
  ``Retry-After`` asks for longer than ``RetryPolicy.max_retry_after``, or once the model's breaker
  has opened, the next model is tried;
- permanent errors (400, 401, 403, 404, 422, a missing key variable) go straight to the next model.
  A refusal naming the context length (HTTP 400 "maximum context length is N tokens ...") is
  permanent too, except once: when the server's figures show that the prompt fits and only
  ``max_tokens`` was too large, the request is sent again with what the window leaves;
- an unusable reply (not JSON, fails validation, empty) is repaired once: the model sees its reply
  and the error and tries again; a second unusable reply moves on. JSON is read leniently: code
  fences and prose around the object are dropped and raw control characters (newlines) inside
  strings are accepted; the schema is always enforced;
- a reply cut off at ``max_tokens`` (``finish_reason == "length"``) is sent again once with a larger
  ``max_tokens``, never past the context window nor the call's own bound; it moves on at once when
  that cannot help: the reply repeats itself (the model loops), the budget already is all the window
  leaves or the call's bound, or the server
  stopped the reply before ``max_tokens`` because its own window was full (llama.cpp shrinks
  ``max_tokens`` silently). In that last case, and from a context-length refusal naming the window,
  the window is learned for the life of the executor;
- a structured reply cut off where another attempt cannot help (it loops, or the window is full)
  keeps its complete part when that satisfies the schema: the reply up to its last complete JSON
  array item, closed, with items that repeat an earlier one dropped (``salvage.py``); the row is
  ``completed`` with ``response_metadata.salvaged`` saying what was kept. When that part lacks only
  top-level fields the loop never reached (a ``summary`` after a looping list), a second, short call
  shows the model the kept part and asks for just those fields; the two are merged and validated
  against the full schema (the cut-off attempt's row stays ``failed``; the second call has its own
  row, labelled ``<label>: rest``, and counts in the call's usage);
- a server that rejects the structured-output mode (llama.cpp answers ``json_schema`` with HTTP 500
  "should be 'text' or 'json_object'") is downgraded json_schema -> json_object -> prompt, once per
  model for the life of the executor, with a log line, and the request is sent again at once;
- ``PipelineStopRequested`` (from ``should_stop`` or anywhere below) is never retried or wrapped; the
  stop is checked before every attempt and during backoff waits.

When every model has failed the call raises ``StepError`` naming the step, every model tried and each
one's last error, with a ``FailureKind``: ``transient`` if any model's last failure was transient
(including a model skipped by its breaker), ``permanent`` if every one was permanent, else
``content``. The orchestrators decide from it whether retrying the step can help.

Recording: every attempt sent to a server is one ``llm_interactions`` row (status ``completed`` or
``failed``; ``response_metadata.failure_kind`` holds the attempt's ``FailureKind`` and
``error_code`` the precise cause), API keys scrubbed first. A call that was not sent (breaker open,
prompt larger than the window) is a row with status ``skipped``: no duration, no tokens, and it is
not counted in ``plan_metrics.total_llm_calls`` nor in ``CallUsage.attempts``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from planexe_assets.core import (
    CallUsage,
    ChatMessage,
    PipelineStopRequested,
    StepError,
    StructuredReply,
    TextReply,
    combined_kind,
)
from resources.llm.breaker import BreakerBoard, BreakerState
from resources.llm.budget import Throughput, TokenEstimator, repeats_itself
from resources.llm.config import MIN_CONTEXT_WINDOW, ModelEntry, load_llm_config, resolve_models, safe_url
from resources.llm.providers import (
    Failure,
    Provider,
    ProviderReply,
    ProviderRequest,
    classify_error,
    make_provider,
)
from resources.llm.recording import InteractionRecorder, NullRecorder
from resources.llm.salvage import (
    complete_prefixes,
    drop_repeated_items,
    missing_fields,
    rest_messages,
    rest_model,
)
from resources.models import NOT_SENT

T = TypeVar("T", bound=BaseModel)
log = logging.getLogger("planexe.llm")

_ROLES = frozenset({"system", "user", "assistant"})
_MODE_CHAIN = {"json_schema": "json_object", "json_object": "prompt"}
_MODE_REJECTION = re.compile(r"json_schema|json_object|response_format|response format", re.IGNORECASE)
_MODE_REJECTION_STATUS = frozenset({400, 422, 500, 501})
_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}")
_MAX_ERROR_CHARS = 2000
BREAKER_FAILURES_ENV = "PLANEXE_LLM_BREAKER_FAILURES"
BREAKER_COOLDOWN_ENV = "PLANEXE_LLM_BREAKER_COOLDOWN"
# Attempt outcomes that count as a failure of the endpoint for its breaker (see breaker.py).
_BREAKER_CODES = frozenset({"connection_error", "no_choices", "bad_response"})
PER_REQUEST_MARGIN = 16  # tokens kept free when max_tokens is sized from the server's own prompt count


def _env_int(name: str, default: int, low: int, high: int) -> int:
    return int(_env_float(name, default, low, high, whole=True))


def _env_float(name: str, default: float, low: float, high: float, whole: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a {'whole ' if whole else ''}number") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={raw!r} is out of range; use {low:g} to {high:g}")
    return value


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
    # After a timeout the same call's next request to that model waits this many times longer, up
    # to timeout_growth_cap times the model's timeout: a local server that is merely slow (or still
    # busy with the abandoned request, which llama-cpp-python finishes anyway) gets the time it needs.
    timeout_growth: float = 2.0
    timeout_growth_cap: float = 4.0
    # Context windows (budget.py): the smallest reply a budget may leave; a prompt leaving less fails.
    min_reply_tokens: int = 256
    chars_per_token: float = 3.5  # the estimate before the server reported any usage
    prompt_margin: float = 0.1  # added to the estimate when sizing max_tokens
    # Circuit breaker (breaker.py): consecutive connection/server errors that open it, and its cool-down.
    breaker_failures: int = field(default_factory=lambda: _env_int(BREAKER_FAILURES_ENV, 5, 1, 1000))
    breaker_cooldown: float = field(
        default_factory=lambda: _env_float(BREAKER_COOLDOWN_ENV, 30.0, 0.0, 3600.0)
    )
    breaker_max_cooldown: float = 300.0  # a probe that fails doubles the cool-down, up to this

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
        # A model's structured mode is probed by one call at a time until a server has answered it:
        # otherwise every step starting at once sends the mode a server rejects (llama.cpp answers
        # json_schema with HTTP 500), and each rejection counts as a failed attempt.
        self._mode_probe = threading.Condition(self._modes_lock)
        self._confirmed_modes: set[str] = set()
        self._probing: dict[str, int] = {}  # model id -> the thread probing it
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.breakers = BreakerBoard(
            self.retry.breaker_failures, self.retry.breaker_cooldown, self.retry.breaker_max_cooldown
        )
        self.tokens = TokenEstimator(self.retry.chars_per_token, self.retry.prompt_margin)
        self.throughput = Throughput()
        self._learned_windows: dict[str, int] = {}
        self._warned: set[tuple[str, str]] = set()

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
        return cls(
            resolve_models(load_llm_config(config_path), model),
            recorder=recorder,
            retry=retry,
            in_flight=in_flight,
        )

    def __repr__(self) -> str:
        return f"LLMExecutor(models={[m.id for m in self.models]})"

    def for_step(self, plan_id: str, stage: str, should_stop: Callable[[], bool] | None = None) -> StepLLM:
        if should_stop is not None and not callable(should_stop):
            raise TypeError("should_stop must be callable")
        return StepLLM(self, plan_id, stage, should_stop)

    def structured_mode(self, model_id: str) -> str:
        with self._modes_lock:
            return self._modes[model_id]

    def claim_mode(self, model_id: str, check_stop: Callable[[], None]) -> tuple[str, bool]:
        """The structured mode for a call, and whether this call probes it. While a mode no server
        has answered yet is being probed by another call, wait for that call's verdict (the mode may
        be downgraded meanwhile). ``check_stop`` raises when the run is stopping."""
        with self._mode_probe:
            while True:
                mode = self._modes[model_id]
                if mode not in _MODE_CHAIN or model_id in self._confirmed_modes:
                    return mode, False  # the prompt mode cannot be rejected
                if self._probing.get(model_id) == threading.get_ident():
                    return mode, False  # a call made by the probing call (the rest of a cut-off reply)
                if model_id not in self._probing:
                    self._probing[model_id] = threading.get_ident()
                    return mode, True
                self._mode_probe.wait(timeout=0.5)
                check_stop()

    def end_probe(self, model_id: str, mode: str, answered: bool) -> None:
        """The probing call of ``claim_mode`` ended; ``answered``: the server took ``mode`` (a reply
        came back, usable or not), so later calls send it without waiting."""
        with self._mode_probe:
            self._probing.pop(model_id, None)
            if answered and self._modes[model_id] == mode:
                self._confirmed_modes.add(model_id)
            self._mode_probe.notify_all()

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
        max_tokens: int | None = None,
    ) -> tuple[Any, str, CallUsage]:
        """Returns (validated value or text, reply text, usage). Raises StepError or PipelineStopRequested.
        ``max_tokens``: this call's bound on the reply, below each model's own."""
        checked = _check_messages(messages)
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise ValueError(f"max_tokens must be a positive whole number or None, got {max_tokens!r}")
        call = _Call(self, plan_id, stage, checked, response_model, label, should_stop, max_tokens)
        return call.run()

    def context_window(self, entry: ModelEntry) -> int | None:
        """The model's window: the smaller of its ``context_window`` and what its server revealed."""
        with self._modes_lock:
            learned = self._learned_windows.get(entry.id)
        known = [w for w in (entry.context_window, learned) if w is not None]
        return min(known) if known else None

    def learn_window(self, entry: ModelEntry, window: int, how: str) -> None:
        with self._modes_lock:
            before = self._learned_windows.get(entry.id)
            if before is not None and before <= window:
                return
            self._learned_windows[entry.id] = window
        if entry.context_window is None or window < entry.context_window:
            log.warning(
                "model %r: %s, so its context window is taken to be %d tokens from now on; set "
                '"context_window": %d in its llm_config.json entry to size requests from the start',
                entry.id,
                how,
                window,
                window,
            )

    def warn_once(self, entry: ModelEntry, topic: str, message: str) -> None:
        with self._modes_lock:
            if (entry.id, topic) in self._warned:
                return
            self._warned.add((entry.id, topic))
        log.warning("model %r: %s", entry.id, message)

    def _downgrade(self, entry: ModelEntry, rejected_mode: str, stage: str) -> str:
        with self._modes_lock:
            current = self._modes[entry.id]
            if current != rejected_mode:
                return current  # another thread already downgraded this model
            new = _MODE_CHAIN[rejected_mode]
            self._modes[entry.id] = new
        log.warning(
            "%s: model %r rejected structured output mode %r; using %r for this model from now on",
            stage,
            entry.id,
            rejected_mode,
            new,
        )
        return new

    def _jitter_rng(self) -> random.Random:
        with self._rng_lock:
            return random.Random(self._rng.random())


class StepLLM:
    """``LLMCaller`` for one step of one plan; thread-safe, keeps the usage of its calls."""

    def __init__(
        self, executor: LLMExecutor, plan_id: str, stage: str, should_stop: Callable[[], bool] | None
    ):
        self.executor = executor
        self.plan_id = plan_id
        self.stage = stage
        self.should_stop = should_stop
        self._lock = threading.Lock()
        self._usage: list[CallUsage] = []

    def __repr__(self) -> str:
        return f"StepLLM(plan_id={self.plan_id!r}, stage={self.stage!r}, models={[m.id for m in self.executor.models]})"

    def structured(
        self,
        messages: Sequence[ChatMessage],
        response_model: type[T],
        *,
        label: str | None = None,
        max_tokens: int | None = None,
    ) -> StructuredReply[T]:
        if not (isinstance(response_model, type) and issubclass(response_model, BaseModel)):
            raise TypeError(f"response_model must be a pydantic model class, got {response_model!r}")
        value, text, usage = self.executor.run_call(
            plan_id=self.plan_id,
            stage=self.stage,
            messages=messages,
            response_model=response_model,
            label=label,
            should_stop=self.should_stop,
            max_tokens=max_tokens,
        )
        self._keep(usage)
        return StructuredReply(value=value, text=text, usage=usage)

    def text(
        self, messages: Sequence[ChatMessage], *, label: str | None = None, max_tokens: int | None = None
    ) -> TextReply:
        _, text, usage = self.executor.run_call(
            plan_id=self.plan_id,
            stage=self.stage,
            messages=messages,
            response_model=None,
            label=label,
            should_stop=self.should_stop,
            max_tokens=max_tokens,
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


@dataclass
class _Tries:
    """One model's attempts so far: what the next one sends and which one-off corrections are used."""

    messages: list[ChatMessage]
    max_tokens: int | None
    attempts: int = 0
    transient_retries: int = 0
    repaired: str | None = None  # why the single repair attempt was used
    resized: bool = False  # the single correction after a context-length refusal was used
    timeout: float | None = None  # the model's own until a request times out


# Content failures that another attempt on the same model cannot fix.
_HOPELESS_CODES = frozenset({"looping", "context_full"})
# Cut-off replies whose complete JSON array items are kept when they satisfy the schema (salvage.py).
_SALVAGE_CODES = _HOPELESS_CODES
# A request's timeout is at least this many times what the model's observed speed needs for its
# max_tokens (see _Call._timeout_for).
TIMEOUT_MARGIN = 1.5


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
        max_tokens: int | None = None,
    ):
        self.ex = executor
        self.call_max_tokens = max_tokens
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
        self.salvaged: str | None = None  # how the last reply was salvaged (salvage.py), for its row
        # A cut-off reply's closed prefix lacking only top-level fields, and their names (salvage.py).
        self.partial: tuple[dict[str, Any], list[str]] | None = None
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
        kind = combined_kind(o.last.kind for o in outcomes)
        what = f"call {self.label!r}" if self.label else "an LLM call"
        raise StepError(
            f"step {self.stage}: every model failed for {what} (plan {self.plan_id}; {kind.value}); tried {tried}",
            kind=kind,
        )

    def _try_model(self, entry: ModelEntry) -> tuple[Any, str] | _ModelOutcome:
        provider = self.ex._providers[entry.id]
        # The reply's upper bound: the model's, lowered by the call's own; the window may lower it per request.
        tries = _Tries(messages=self.messages, max_tokens=_smaller(entry.max_tokens, self.call_max_tokens))
        while True:
            self._check_stop()
            mode, probing = (
                self.ex.claim_mode(entry.id, self._check_stop) if self.schema is not None else (None, False)
            )
            outcome: Any = None
            try:
                result = self._one_try(entry, provider, tries, mode)
                outcome = result[0]
            finally:
                if probing and mode is not None:
                    answered = not isinstance(outcome, Failure) or outcome.kind == "content"
                    self.ex.end_probe(entry.id, mode, outcome is not None and answered)
            if result[1] is not None:
                return result[1]

    def _one_try(
        self, entry: ModelEntry, provider: Provider, tries: _Tries, mode: str | None
    ) -> tuple[Any, tuple[Any, str] | _ModelOutcome | None]:
        """One attempt on ``entry``: (the attempt's outcome or None if nothing was sent, what
        ``_try_model`` returns, or None to try again)."""
        sent = _with_schema_instruction(tries.messages, self.schema, mode)
        sized = self._size(entry, sent, tries.max_tokens)
        if isinstance(sized, Failure):  # the prompt alone does not fit: nothing is sent
            self._record_unsent(entry, sent, mode, sized)
            self._log(entry, tries.attempts + 1, sized, "not sent; giving up on this model")
            return None, _ModelOutcome(entry.id, tries.attempts, sized)
        request = ProviderRequest(
            messages=sent,
            schema=self.schema,
            schema_name=self.schema_name,
            mode=mode,
            max_tokens=sized,
            timeout=self._timeout_for(entry, sized, tries.timeout),
            plan_id=self.plan_id,
            stage=self.stage,
        )
        outcome = self._attempt(entry, provider, request, tries.attempts + 1, tries.repaired)
        if isinstance(outcome, Failure) and outcome.code == "circuit_open":  # not sent
            return None, _ModelOutcome(entry.id, tries.attempts, outcome)
        tries.attempts += 1
        self.attempts += 1
        if not isinstance(outcome, Failure):
            return outcome, outcome
        if self.partial is not None:
            rest = self._complete_rest()
            if rest is not None:
                return outcome, rest
        return outcome, self._after_failure(entry, outcome, tries, mode, sent, sized)

    def _after_failure(
        self,
        entry: ModelEntry,
        failure: Failure,
        tries: _Tries,
        mode: str | None,
        sent: list[ChatMessage],
        sized: int | None,
    ) -> _ModelOutcome | None:
        """What follows a failed attempt: None to try this model again (``tries`` says how: a simpler
        structured mode, a resized or grown reply, a repair prompt, a transient retry after its
        backoff), or the model's outcome when it is given up."""
        if failure.kind == "cancelled":
            raise PipelineStopRequested(failure.message)
        if mode in _MODE_CHAIN and _is_mode_rejection(failure):
            self.ex._downgrade(entry, mode, self.where)
            return None
        if failure.code == "context_length":
            return self._retry_resized(entry, sent, failure, tries)
        if failure.kind == "content" and tries.repaired is None and failure.code not in _HOPELESS_CODES:
            return self._retry_corrected(entry, sent, sized, failure, tries)
        budget = entry.max_retries if entry.max_retries is not None else self.ex.retry.transient_retries
        if failure.kind == "transient" and tries.transient_retries < budget:
            tries.timeout = self._next_timeout(entry, failure, tries.timeout)
            delay = self._transient_delay(
                entry, failure, tries.attempts, tries.transient_retries + 1, tries.timeout
            )
            if delay is None:
                return _ModelOutcome(entry.id, tries.attempts, failure)
            tries.transient_retries += 1
            self._sleep(delay)
            return None
        self._log(entry, tries.attempts, failure, "giving up on this model")
        return _ModelOutcome(entry.id, tries.attempts, failure)

    def _retry_resized(
        self, entry: ModelEntry, sent: list[ChatMessage], failure: Failure, tries: _Tries
    ) -> _ModelOutcome | None:
        """After a context-length refusal: None with ``tries`` set to a smaller reply, or the outcome."""
        retry_with = self._resize_after_refusal(entry, sent, failure, tries.resized, tries.attempts)
        if isinstance(retry_with, _ModelOutcome):
            return retry_with
        tries.resized = True
        tries.max_tokens = retry_with
        return None

    def _retry_corrected(
        self, entry: ModelEntry, sent: list[ChatMessage], sized: int | None, failure: Failure, tries: _Tries
    ) -> _ModelOutcome | None:
        """The single correction of an unusable reply: a truncated one gets more tokens, any other a
        repair prompt. None with ``tries`` set for it, or the outcome when it cannot be corrected."""
        if failure.code == "truncated":
            grown = self._grow_after_truncation(entry, sent, sized, failure, tries.attempts)
            if isinstance(grown, _ModelOutcome):
                return grown
            tries.max_tokens = grown
        else:
            tries.messages = _repair_messages(self.messages, failure, self.schema is not None)
            self._log(entry, tries.attempts, failure, "asking the model to correct its reply")
        tries.repaired = failure.code
        return None

    def _timeout_for(self, entry: ModelEntry, max_tokens: int | None, timeout: float | None) -> float | None:
        """A request's timeout: the model's (or the longer one after a timeout), raised to what this
        model's observed speed needs to write ``max_tokens`` (with a margin), up to the growth cap. A
        local server goes on writing a reply its client gave up on, so a timeout shorter than the
        reply needs costs the reply and the retry's wait behind it."""
        if max_tokens is None:
            return timeout
        needed = self.ex.throughput.seconds_for(entry.id, max_tokens)
        current = timeout if timeout is not None else entry.timeout
        if needed is None or needed * TIMEOUT_MARGIN <= current:
            return timeout
        raised = min(entry.timeout * self.ex.retry.timeout_growth_cap, needed * TIMEOUT_MARGIN)
        if raised <= current:
            return timeout
        self.ex.warn_once(
            entry,
            "slow-timeout",
            f"it writes about {max_tokens / needed:.1f} tokens/s, so requests for many tokens get a longer "
            f"timeout than its {entry.timeout:.0f} s (here {raised:.0f} s for max_tokens={max_tokens})",
        )
        return raised

    def _next_timeout(self, entry: ModelEntry, failure: Failure, timeout: float | None) -> float | None:
        """The timeout of the next request: after a timeout, the last one grown (up to the cap)."""
        if failure.code != "timeout":
            return timeout
        policy = self.ex.retry
        return min(
            entry.timeout * policy.timeout_growth_cap, (timeout or entry.timeout) * policy.timeout_growth
        )

    def _resize_after_refusal(
        self, entry: ModelEntry, sent: list[ChatMessage], failure: Failure, resized: bool, attempts: int
    ) -> int | _ModelOutcome:
        """After a context-length refusal: the max_tokens to retry with, or this model's outcome."""
        retry_with = self._after_context_refusal(entry, sent, failure, resized)
        if retry_with is not None:
            self._log(entry, attempts, failure, f"the prompt fits: retrying with max_tokens={retry_with}")
            return retry_with
        failure = replace(failure, message=f"{failure.message} [{self._fit_summary(entry, sent, failure)}]")
        self._log(entry, attempts, failure, "the prompt does not fit this model; giving up on it")
        return _ModelOutcome(entry.id, attempts, failure)

    def _grow_after_truncation(
        self, entry: ModelEntry, sent: list[ChatMessage], sized: int | None, failure: Failure, attempts: int
    ) -> int | _ModelOutcome:
        """After a truncated reply: a larger max_tokens (within the cap and the window), or this
        model's outcome when the reply already had all it can get."""
        policy = self.ex.retry
        current = sized or policy.assumed_max_tokens
        grown = min(policy.max_tokens_cap, int(current * policy.truncation_growth))
        if self.call_max_tokens is not None:
            grown = min(grown, self.call_max_tokens)
        room = self._room(entry, sent)
        if room is not None:
            grown = min(grown, room)
        if grown <= current:
            limit = self._growth_limit(entry, room, current)
            failure = replace(failure, message=f"{failure.message}; max_tokens={current} is already {limit}")
            self._log(entry, attempts, failure, "giving up on this model")
            return _ModelOutcome(entry.id, attempts, failure)
        self._log(entry, attempts, failure, f"retrying with max_tokens={grown}")
        return grown

    def _growth_limit(self, entry: ModelEntry, room: int | None, current: int) -> str:
        """What stops a truncated reply from getting more tokens, for the failure's message."""
        if room is not None and room <= current:
            return f"all that the context window of {self.ex.context_window(entry)} tokens leaves after the prompt"
        if self.call_max_tokens is not None and self.call_max_tokens <= current:
            return f"this call's own bound ({self.call_max_tokens})"
        return f"the largest allowed ({self.ex.retry.max_tokens_cap})"

    def _transient_delay(
        self, entry: ModelEntry, failure: Failure, attempts: int, retry: int, timeout: float | None
    ) -> float | None:
        """The backoff before transient retry number ``retry``, or None to move on to the next model
        (its circuit breaker is open, or the server asks for a longer wait than allowed). ``timeout``:
        the longer one the retry of a timed-out request gets, None for the model's own."""
        policy = self.ex.retry
        if self.ex.breakers.get(entry.endpoint_key).is_open:
            self._log(entry, attempts, failure, "its circuit breaker is open; next model")
            return None
        if failure.retry_after is not None and failure.retry_after > policy.max_retry_after:
            self._log(
                entry, attempts, failure, f"Retry-After {failure.retry_after:.0f}s is too long; next model"
            )
            return None
        delay = policy.backoff(retry, failure.retry_after, self.rng)
        then = f"retrying in {delay:.2f}s"
        if failure.code == "timeout" and timeout is not None:
            then += f" with a timeout of {timeout:.0f}s"
        self._log(entry, attempts, failure, then)
        return delay

    # -- context window ---------------------------------------------------------------------------

    def _room(self, entry: ModelEntry, sent: list[ChatMessage]) -> int | None:
        """Tokens the window leaves for the reply after the prompt (with the estimate's margin)."""
        window = self.ex.context_window(entry)
        if window is None:
            return None
        return window - self.ex.tokens.estimate(entry.id, sent).high

    def _size(
        self, entry: ModelEntry, sent: list[ChatMessage], max_tokens: int | None
    ) -> int | None | Failure:
        """The request's max_tokens, or a permanent failure when the prompt leaves no room for a reply."""
        window = self.ex.context_window(entry)
        if window is None:
            return max_tokens
        floor = self.ex.retry.min_reply_tokens
        estimate = self.ex.tokens.estimate(entry.id, sent)
        if window - estimate.low < floor:
            how = (
                "measured against this model's reported usage"
                if estimate.measured
                else "estimated from its length"
            )
            return Failure(
                "permanent",
                "context_window",
                f"the prompt (about {estimate.low} tokens, {how}) does not fit the context window of model "
                f"{entry.id!r} ({window} tokens) with room for a reply of at least {floor} tokens; use a model "
                f"with a larger window, or raise its context_window if its server allows it",
            )
        room = max(floor, window - estimate.high)
        return min(max_tokens, room) if max_tokens is not None else room

    def _after_context_refusal(
        self, entry: ModelEntry, sent: list[ChatMessage], failure: Failure, resized: bool
    ) -> int | None:
        """After HTTP 400 "context length": learn what the server said; the max_tokens to retry with
        when the prompt fits and only the reply's budget was too large, else None (permanent)."""
        if failure.prompt_tokens is not None:
            self.ex.tokens.observe(entry.id, sent, failure.prompt_tokens)
        if failure.context_window is not None:
            self.ex.learn_window(
                entry, failure.context_window, "its server refused a request as longer than its context"
            )
        window = self.ex.context_window(entry)
        if resized or window is None or failure.prompt_tokens is None:
            return None
        room = window - failure.prompt_tokens - PER_REQUEST_MARGIN
        return room if room >= self.ex.retry.min_reply_tokens else None

    def _fit_summary(self, entry: ModelEntry, sent: list[ChatMessage], failure: Failure) -> str:
        window = self.ex.context_window(entry)
        if failure.prompt_tokens is not None:
            prompt = f"{failure.prompt_tokens} tokens as the server counted them"
        else:
            prompt = f"about {self.ex.tokens.estimate(entry.id, sent).low} tokens, estimated"
        where = f"{window} tokens" if window is not None else "not configured (set context_window)"
        return f"model {entry.id!r}: context window {where}; prompt {prompt}"

    # -- one attempt ------------------------------------------------------------------------------

    def _attempt(
        self,
        entry: ModelEntry,
        provider: Provider,
        request: ProviderRequest,
        model_attempt: int,
        repaired: str | None,
    ) -> tuple[Any, str] | Failure:
        """One request. When the endpoint's breaker is open nothing is sent: the call is recorded
        ``skipped`` and the failure has code ``circuit_open``."""
        breaker = self.ex.breakers.get(entry.endpoint_key)
        blocked = breaker.peek()
        if blocked is not None:
            return self._record_skip(entry, request, blocked)
        probe = False
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
                # Decided here, not before waiting for the slot: the endpoint may have gone down
                # while this call queued behind others (a fan-out against a server that died).
                admitted, state = breaker.admit()
                if not admitted:
                    unsent = {
                        **self._prompt_metadata(entry, request, model_attempt, repaired),
                        "attempt": None,
                    }
                    return self._skip_pending(handle, state, unsent)
                probe = state is not None
                clock = time.perf_counter()
                try:
                    reply = provider.complete(request)
                except BaseException as exc:
                    # Reported while the slot is held, so the next request queued for this endpoint
                    # already sees the breaker this failure may have opened. The breaker keeps the
                    # last error for the rows of skipped calls: scrubbed like everything recorded.
                    seen = classify_error(exc)
                    seen = replace(seen, message=_scrub(seen.message, secrets) or "")
                    self._report_health(entry, breaker, seen, probe, request.mode)
                    raise
                breaker.success()  # a reply arrived, usable or not: the endpoint is up
                self.ex.throughput.observe(entry.id, reply.output_tokens, time.perf_counter() - clock)
            result = self._evaluate(entry, request, reply)
        except BaseException as exc:  # noqa: BLE001 - classified, recorded, and re-raised if not ours
            failure = classify_error(exc)
            result = replace(failure, message=_scrub(failure.message, secrets) or "")
            if not isinstance(exc, Exception) or failure.kind == "cancelled":
                # A stop (or an interrupt) is recorded, then passes through untouched.
                self._finish(handle, entry, started_at, clock, reply, result, secrets)
                raise
        self._finish(handle, entry, started_at, clock, reply, result, secrets)
        return result

    def _report_health(
        self, entry: ModelEntry, breaker: Any, result: Failure, probe: bool, mode: str | None
    ) -> None:
        """Tell the endpoint's breaker what a request that raised says about the endpoint."""
        down = result.code in _BREAKER_CODES or (
            result.status is not None
            and result.status >= 500
            and not (mode in _MODE_CHAIN and _is_mode_rejection(result))
        )
        if down:
            if breaker.failure(f"{result.code}: {_shorten(result.message, 120)}", probe=probe):
                log.warning(
                    "%s: model %r at %s: %d consecutive connection/server errors; its circuit breaker is "
                    "open: calls skip it for the next %.0fs",
                    self.where,
                    entry.id,
                    safe_url(entry.base_url),
                    breaker.threshold,
                    breaker._cooldown,
                )
        elif result.code in ("timeout", "http_429", "cancelled") or result.kind == "cancelled":
            breaker.neutral(probe)
        else:
            breaker.success()  # the server answered (4xx, an unusable reply): it is up

    def _evaluate(
        self, entry: ModelEntry, request: ProviderRequest, reply: ProviderReply
    ) -> tuple[Any, str] | Failure:
        if reply.input_tokens is not None and not self.ex.tokens.observe(
            entry.id, request.messages, reply.input_tokens
        ):
            self.ex.warn_once(
                entry,
                "prompt-dropped",
                f"its server counted {reply.input_tokens} prompt tokens for a prompt of "
                f"{self.ex.tokens.characters(request.messages)} characters: it most likely dropped part of "
                f"the prompt to fit its context (Ollama does this silently); give the server a larger "
                f"context and set context_window to match",
            )
        try:
            if reply.finish_reason == "length":
                cut = self._cut_off(entry, request, reply)
                if self.response_model is not None and cut.code in _SALVAGE_CODES:
                    kept = self._salvage(entry, reply.text, cut)
                    if kept is not None:
                        return kept
                raise cut
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
            return Failure("content", bad.code, bad.message, reply_text=reply.text)

    def _cut_off(self, entry: ModelEntry, request: ProviderRequest, reply: ProviderReply) -> _Unusable:
        """Why a reply ended with ``finish_reason == "length"``."""
        asked, got, prompt = request.max_tokens, reply.output_tokens, reply.input_tokens
        if (
            asked is not None
            and got is not None
            and prompt is not None
            and got < asked - max(16, asked // 10)
            and prompt + got >= MIN_CONTEXT_WINDOW
        ):
            # The server stopped well before max_tokens: its context window was full (llama.cpp
            # shrinks max_tokens to what its window leaves without saying so).
            window = prompt + got
            self.ex.learn_window(
                entry, window, f"its server cut a reply off after {got} of max_tokens={asked} tokens"
            )
            return _Unusable(
                "context_full",
                f"the reply was cut off after {got} tokens although max_tokens was {asked}: the server's "
                f"context window (about {window} tokens) was full with the prompt ({prompt} tokens) and the reply",
            )
        budget = f"max_tokens={asked}" if asked is not None else "the server's default max_tokens"
        if repeats_itself(reply.text):
            return _Unusable(
                "looping", f"the reply repeats itself until it was cut off at {budget} (the model looped)"
            )
        return _Unusable("truncated", f"the reply was cut off at {budget}")

    def _salvage(self, entry: ModelEntry, text: str, cut: _Unusable) -> tuple[Any, str] | None:
        """The complete part of a reply cut off inside a JSON array (``salvage.py``), when it is valid
        against the schema; else None. Only for cut-offs that another attempt cannot fix (a loop, a
        full window): a reply cut off only by ``max_tokens`` is first sent again with a larger one."""
        assert self.response_model is not None
        self.partial = None
        for candidate in complete_prefixes(text):
            try:
                data = _LENIENT.decode(candidate)
            except json.JSONDecodeError:
                continue
            data, repeated = drop_repeated_items(data)
            try:
                value = self.response_model.model_validate(data)
            except ValidationError as exc:
                if self.partial is None:  # the longest prefix lacking only top-level fields
                    missing = missing_fields(self.response_model, exc)
                    if missing:
                        self.partial = (data, missing)
                continue
            note = (
                f"kept the first {len(candidate)} of {len(text)} characters of a reply cut off at max_tokens "
                f"({cut.code}), closed after its last complete array item; {repeated} repeated item(s) dropped"
            )
            self.salvaged = note
            self.ex.warn_once(entry, f"salvaged:{self.stage}", f"{self.where}: {note}")
            return value, json.dumps(data, ensure_ascii=False)
        return None

    def _complete_rest(self) -> tuple[Any, str] | None:
        """The fields a cut-off reply did not reach, asked for in a second call (its own rows, its
        tokens added to this call's usage) and merged with the salvaged part; None if that fails."""
        assert self.response_model is not None and self.partial is not None
        data, missing = self.partial
        self.partial = None
        label = f"{self.label or self.stage}: rest"
        try:
            rest, _text, usage = self.ex.run_call(
                plan_id=self.plan_id,
                stage=self.stage,
                messages=rest_messages(list(self.messages), data, missing),
                response_model=rest_model(self.response_model, missing),
                label=label,
                should_stop=self.should_stop,
                max_tokens=self.call_max_tokens,
            )
        except StepError as exc:
            log.warning("%s: could not complete a cut-off reply's missing %s: %s", self.where, missing, exc)
            return None
        self.attempts += usage.attempts
        self._add_usage(usage.input_tokens, usage.output_tokens, usage.cost_usd)
        merged = {**data, **rest.model_dump(mode="json", by_alias=True)}
        try:
            value = self.response_model.model_validate(merged)
        except ValidationError as exc:
            log.warning("%s: a cut-off reply completed with %s still fails: %s", self.where, missing, exc)
            return None
        log.warning(
            "%s: a reply cut off before %s kept its complete part; a second call (%r) wrote %s",
            self.where,
            ", ".join(missing),
            label,
            ", ".join(missing),
        )
        return value, json.dumps(merged, ensure_ascii=False)

    # -- recording --------------------------------------------------------------------------------

    def _record_skip(
        self, entry: ModelEntry, request: ProviderRequest, state: BreakerState | None
    ) -> Failure:
        message = (
            state.describe() if state is not None else "not sent: the endpoint's circuit breaker is open"
        )
        failure = Failure("transient", "circuit_open", message)
        self._record_unsent(entry, request.messages, request.mode, failure)
        return failure

    def _skip_pending(
        self, handle: Any, state: BreakerState | None, prompt_metadata: dict[str, Any]
    ) -> Failure:
        """The breaker opened while this attempt waited for its in-flight slot: its pending row
        becomes a ``skipped`` one."""
        message = (
            state.describe() if state is not None else "not sent: the endpoint's circuit breaker is open"
        )
        failure = Failure("transient", "circuit_open", message)
        self.ex.recorder.attempt_finished(
            handle,
            {
                "status": NOT_SENT,
                "completed_at": _utcnow(),
                "response_metadata": {"failure_kind": failure.kind},
                "error_message": message,
                "error_code": failure.code,
                "prompt_metadata": prompt_metadata,
            },
        )
        return failure

    def _record_unsent(
        self, entry: ModelEntry, sent: Sequence[ChatMessage], mode: str | None, failure: Failure
    ) -> None:
        """A row for a call that was not sent: status ``skipped``, no tokens, not counted as a call."""
        now = _utcnow()
        request = ProviderRequest(messages=sent, schema=self.schema, schema_name=self.schema_name, mode=mode)
        metadata = self._prompt_metadata(entry, request, 0, None)
        metadata["attempt"] = None
        self.ex.recorder.attempt_started(
            {
                "plan_id": self.plan_id,
                "llm_model": entry.id,
                "stage": self.stage,
                "prompt_text": _scrub(_render_prompt(sent), self.ex._providers[entry.id].secret_values()),
                "prompt_metadata": metadata,
                "response_metadata": {"failure_kind": failure.kind},
                "status": NOT_SENT,
                "started_at": now,
                "completed_at": now,
                "error_message": _shorten(failure.message, _MAX_ERROR_CHARS),
                "error_code": failure.code,
            }
        )

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
        failure = result if isinstance(result, Failure) else None
        input_tokens, output_tokens, total_tokens = _token_counts(reply)
        cost = entry.cost.usd(input_tokens, output_tokens) if entry.cost is not None else None
        self._add_usage(input_tokens, output_tokens, cost)
        self.ex.recorder.attempt_finished(
            handle,
            {
                "response_text": _scrub(reply.text, secrets) if reply is not None else None,
                "response_metadata": _response_metadata(reply, result, cost, self.salvaged),
                "status": "failed" if failure is not None else "completed",
                "completed_at": _utcnow(),
                "duration_seconds": round(duration, 4),
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": total_tokens,
                "error_message": _shorten(failure.message, _MAX_ERROR_CHARS) if failure is not None else None,
                "error_code": failure.code[:50] if failure is not None else None,
            },
        )
        self.ex.recorder.add_plan_usage(self.plan_id, 1, total_tokens or 0, cost or 0.0)

    def _add_usage(self, input_tokens: int | None, output_tokens: int | None, cost: float | None) -> None:
        """Add one attempt's tokens and cost to the call's totals (None: the server did not say)."""
        if input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + input_tokens
        if output_tokens is not None:
            self.output_tokens = (self.output_tokens or 0) + output_tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def _prompt_metadata(
        self, entry: ModelEntry, request: ProviderRequest, model_attempt: int, repaired: str | None
    ) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": "structured" if self.response_model is not None else "text",
            "response_model": self.response_model.__name__ if self.response_model is not None else None,
            "structured_mode": request.mode,
            "attempt": self.attempts + 1,  # counted once the attempt is sent
            "model_attempt": model_attempt,
            "call_id": self.call_id,
            "repair_of": repaired,
            "max_tokens": request.max_tokens,
            "timeout": request.timeout if request.timeout is not None else entry.timeout,
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
            self.where,
            entry.id,
            entry.endpoint(),
            model_attempt,
            failure.code,
            _shorten(failure.message, 300),
            then,
        )


# ------------------------------------------------------------------------------------------------
# helpers


def _smaller(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


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
            raise ValueError(
                f"message {index} must be {{'role': system|user|assistant, 'content': str}}, got {message!r:.200}"
            )
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


_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.DOTALL)
_LENIENT = json.JSONDecoder(strict=False)  # raw newlines and tabs inside strings are accepted
_MAX_OBJECT_STARTS = 50


def _token_counts(reply: ProviderReply | None) -> tuple[int | None, int | None, int | None]:
    """Input, output and total tokens of a reply; the total is their sum when the server gave none."""
    if reply is None:
        return None, None, None
    total = reply.total_tokens
    if total is None and (reply.input_tokens is not None or reply.output_tokens is not None):
        total = (reply.input_tokens or 0) + (reply.output_tokens or 0)
    return reply.input_tokens, reply.output_tokens, total


def _response_metadata(
    reply: ProviderReply | None,
    result: tuple[Any, str] | Failure,
    cost: float | None,
    salvaged: str | None = None,
) -> dict[str, Any]:
    """What an attempt's record keeps about the reply (and how it was salvaged, when it was), and
    about the failure when it failed."""
    metadata: dict[str, Any] = {
        "finish_reason": reply.finish_reason if reply else None,
        "response_id": reply.response_id if reply else None,
        "served_model": reply.served_model if reply else None,
        "cost_usd": cost,
    }
    if salvaged is not None and not isinstance(result, Failure):
        metadata["salvaged"] = salvaged
    if isinstance(result, Failure):
        metadata["failure_kind"] = result.kind
        optional = {
            "context_window": result.context_window,
            "prompt_tokens": result.prompt_tokens,
            "http_status": result.status,
            "retry_after": result.retry_after,
        }
        metadata.update({key: value for key, value in optional.items() if value is not None})
    return metadata


def _extract_json(text: str) -> tuple[Any, str]:
    """The JSON object in a reply: the whole reply, a fenced block, or the first complete {...} in it
    (prose before or after it is dropped). Control characters inside strings (raw newlines, which
    small local models emit) are accepted. Returns the object and its JSON text: the model's own
    text when it is strict JSON, else the object re-serialized, so later readers need no leniency."""
    stripped = text.strip()
    candidates = [stripped, *(m.group(1).strip() for m in _FENCE.finditer(stripped))]
    first_error: json.JSONDecodeError | None = None
    for candidate in candidates:
        try:
            found = _LENIENT.decode(candidate)
        except json.JSONDecodeError as exc:
            first_error = first_error or exc
            continue
        if isinstance(found, dict):
            return found, _strict_text(candidate, found)
        raise _Unusable("schema_validation", f"expected a JSON object, got {type(found).__name__}")
    # The first complete object anywhere in the reply.
    start = stripped.find("{")
    tried = 0
    while start != -1 and tried < _MAX_OBJECT_STARTS:
        tried += 1
        try:
            data, end = _LENIENT.raw_decode(stripped, start)
        except json.JSONDecodeError:
            start = stripped.find("{", start + 1)
            continue
        if isinstance(data, dict):
            return data, _strict_text(stripped[start:end], data)
        start = stripped.find("{", end)
    assert first_error is not None
    raise _Unusable(
        "invalid_json",
        f"the reply is not JSON ({first_error.msg} at line {first_error.lineno} column {first_error.colno})",
    )


def _strict_text(candidate: str, data: Any) -> str:
    try:
        json.loads(candidate)
    except json.JSONDecodeError:
        return json.dumps(data, ensure_ascii=False)
    return candidate


def _summarize_validation(exc: ValidationError, limit: int = 8) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:limit]:
        location = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{location}: {err.get('msg', 'invalid')}")
    more = len(errors) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return (
        f"the JSON does not match the schema ({len(errors)} error{'s' if len(errors) != 1 else ''}): "
        + "; ".join(parts)
    )


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
