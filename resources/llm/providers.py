"""Providers: one request in, one reply out. No retries, no validation, no recording here.

``OpenAICompatibleProvider`` talks to every remote class (OpenRouter, OpenAI, Ollama's ``/v1``,
LM Studio, any vLLM or llama.cpp server) through the official ``openai`` client, built with
``max_retries=0`` because the executor owns retries. ``OfflineProvider`` answers locally and
deterministically. Both return the reply text plus the provider's token counts; the executor parses,
validates, retries, fails over and records.

The API key is read from the environment when a call is made (``${VAR}`` in the config), kept only
inside the ``openai`` client, and handed to the executor solely so it can scrub it from anything it
records or logs.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai

from planexe_assets.core import PipelineStopRequested
from resources.llm.budget import context_error
from resources.llm.config import MissingEnvironmentVariable, ModelEntry, safe_url
from resources.llm.offline import known_ids, offline_json, offline_markdown, request_seed

# Local servers accept any key, but the openai client insists on one.
_PLACEHOLDER_KEY = "not-needed"
_APP_HEADERS = {"OpenRouter": {"X-Title": "PlanExe (planexe-dagster)"}}
# Classes whose servers understand {"type": "json_object", "schema": ...} (llama.cpp, vLLM, Ollama,
# LM Studio). OpenAI and OpenRouter get the plain json_object form.
_SCHEMA_IN_JSON_OBJECT = frozenset({"OpenAILike", "Ollama", "LMStudio"})


@dataclass(frozen=True)
class ProviderRequest:
    messages: Sequence[dict[str, str]]
    schema: dict[str, Any] | None = None  # JSON schema of the response model; None for free text
    schema_name: str | None = None
    mode: str | None = None  # json_schema | json_object | prompt; None for free text
    max_tokens: int | None = None
    timeout: float | None = None  # seconds for this request; None: the model's configured timeout
    plan_id: str | None = None  # sent as X-PlanExe-Plan-Id, so a gateway can attribute the call
    stage: str | None = None  # the step making the call, sent as X-PlanExe-Stage


@dataclass(frozen=True)
class ProviderReply:
    text: str
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    response_id: str | None = None
    served_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    entry: ModelEntry

    def complete(self, request: ProviderRequest) -> ProviderReply: ...

    def secret_values(self) -> list[str]:
        """Values that must never be stored or logged (the resolved API key)."""
        ...


class ReplyWithoutChoices(RuntimeError):
    """HTTP 200 but no choices: gateways such as OpenRouter report upstream failures this way."""


class BadResponse(RuntimeError):
    """HTTP 200 whose body is not a chat completion (an HTML error page from a proxy, broken JSON)."""


class OpenAICompatibleProvider:
    def __init__(self, entry: ModelEntry):
        if entry.is_offline:
            raise ValueError("OpenAICompatibleProvider cannot serve the Offline class")
        self.entry = entry
        self._lock = threading.Lock()
        self._client: openai.OpenAI | None = None
        self._client_fingerprint: str | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider({self.entry.id!r}, base_url={safe_url(self.entry.base_url)!r})"

    def secret_values(self) -> list[str]:
        """The resolved key, plus header values filled from the environment (they may carry tokens)."""
        secrets: list[str] = []
        try:
            key = self.entry.resolved_api_key()
        except MissingEnvironmentVariable:
            key = None
        if key and key != _PLACEHOLDER_KEY:
            secrets.append(key)
        for name, template in self.entry.extra_headers.items():
            if "${" in template:
                try:
                    secrets.append(self.entry.resolved_headers()[name])
                except MissingEnvironmentVariable:
                    pass
        return secrets

    def client(self) -> openai.OpenAI:
        """The client for the current environment; rebuilt when the key or URL changes."""
        key = self.entry.resolved_api_key() or _PLACEHOLDER_KEY
        base_url = self.entry.resolved_base_url()
        headers = {**_APP_HEADERS.get(self.entry.class_name, {}), **self.entry.resolved_headers()}
        fingerprint = hashlib.sha256(
            "\0".join([key, base_url or "", repr(sorted(headers.items()))]).encode()
        ).hexdigest()
        with self._lock:
            if self._client is None or fingerprint != self._client_fingerprint:
                # The old client is left to the garbage collector: another thread may still be using it.
                self._client = openai.OpenAI(
                    api_key=key,
                    base_url=base_url,
                    timeout=self.entry.timeout,
                    max_retries=0,
                    default_headers=headers or None,
                )
                self._client_fingerprint = fingerprint
            return self._client

    def response_format(self, request: ProviderRequest) -> dict[str, Any] | None:
        if request.schema is None or request.mode in (None, "prompt"):
            return None
        if request.mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name or "response",
                    "schema": request.schema,
                    "strict": False,
                },
            }
        if request.mode == "json_object":
            if self.entry.class_name in _SCHEMA_IN_JSON_OBJECT:
                return {"type": "json_object", "schema": request.schema}
            return {"type": "json_object"}
        raise ValueError(f"unknown structured mode {request.mode!r}")

    def complete(self, request: ProviderRequest) -> ProviderReply:
        kwargs = self.request_arguments(request)
        if request.timeout is not None:  # a retry after a timeout waits longer than the model's own
            kwargs["timeout"] = request.timeout
        try:
            response = self.client().chat.completions.create(**kwargs)
        except json.JSONDecodeError as exc:
            raise BadResponse(f"the server's body is not valid JSON ({exc.msg})") from None
        return _provider_reply(response)

    def request_arguments(self, request: ProviderRequest) -> dict[str, Any]:
        """The chat-completion call's arguments: model, messages, the entry's sampling settings."""
        kwargs: dict[str, Any] = {"model": self.entry.resolved_model(), "messages": list(request.messages)}
        for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
            value = getattr(self.entry, name)
            if value is not None:
                kwargs[name] = value
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if self.entry.seed is not None:
            kwargs["seed"] = self.entry.seed
        response_format = self.response_format(request)
        if response_format is not None:
            kwargs["response_format"] = response_format
        headers = call_headers(request)
        if headers:
            kwargs["extra_headers"] = headers
        return kwargs


# Which plan and step a call belongs to, for gateways, proxies and servers that log or limit by
# header (the prompt the call carries already tells the server far more than these names).
PLAN_HEADER = "X-PlanExe-Plan-Id"
STAGE_HEADER = "X-PlanExe-Stage"


def call_headers(request: ProviderRequest) -> dict[str, str]:
    headers = {}
    if request.plan_id:
        headers[PLAN_HEADER] = request.plan_id
    if request.stage:
        headers[STAGE_HEADER] = request.stage
    return headers


def _provider_reply(response: Any) -> ProviderReply:
    """The first choice's text, finish reason and token counts of a chat completion."""
    if isinstance(response, str | bytes):
        raise BadResponse(f"the server answered with a non-JSON body starting {str(response)[:80]!r}")
    choices = getattr(response, "choices", None) or []
    if not choices:
        detail = getattr(response, "error", None) or (getattr(response, "model_extra", None) or {}).get(
            "error"
        )
        raise ReplyWithoutChoices(f"reply has no choices{f': {detail}' if detail else ''}")
    choice = choices[0]
    message = choice.message
    usage = getattr(response, "usage", None)
    input_tokens = getattr(usage, "prompt_tokens", None)
    output_tokens = getattr(usage, "completion_tokens", None)
    total = getattr(usage, "total_tokens", None)
    if total is None and (input_tokens is not None or output_tokens is not None):
        total = (input_tokens or 0) + (output_tokens or 0)
    return ProviderReply(
        text=(message.content if message is not None else None) or "",
        finish_reason=choice.finish_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total,
        response_id=getattr(response, "id", None),
        served_model=getattr(response, "model", None),
    )


class OfflineProvider:
    """No network: deterministic answers seeded by the request, marked as offline content."""

    def __init__(self, entry: ModelEntry):
        self.entry = entry

    def __repr__(self) -> str:
        return f"OfflineProvider({self.entry.id!r})"

    def secret_values(self) -> list[str]:
        return []

    def complete(self, request: ProviderRequest) -> ProviderReply:
        seed = request_seed(request.messages, request.schema)
        if request.schema is not None:
            text = offline_json(request.schema, seed, known_ids(request.messages))
        else:
            text = offline_markdown(request.messages, seed)
        input_tokens = sum(_estimate_tokens(m.get("content", "")) + 4 for m in request.messages)
        output_tokens = _estimate_tokens(text)
        return ProviderReply(
            text=text,
            finish_reason="stop",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            response_id=f"offline-{seed:016x}",
            served_model=self.entry.model or "offline",
        )


def _estimate_tokens(text: str) -> int:
    # Roughly four characters per token for English text: enough for offline bookkeeping.
    return max(1, (len(text) + 3) // 4)


def make_provider(entry: ModelEntry) -> Provider:
    if entry.is_offline:
        return OfflineProvider(entry)
    return OpenAICompatibleProvider(entry)


# ------------------------------------------------------------------------------------------------
# Error classification


@dataclass(frozen=True)
class Failure:
    """What went wrong in one attempt, in terms the executor acts on.

    kind: a ``FailureKind`` value, ``transient`` (retry this model after a backoff), ``permanent``
    (next model), ``content`` (the reply was unusable: repaired once, then next model), or
    ``cancelled`` (a stop). A refusal because the request does not fit the model's context window is
    ``permanent`` with code ``context_length`` and carries what the server said about the window and
    the prompt's size.
    """

    kind: str
    code: str
    message: str
    status: int | None = None
    retry_after: float | None = None
    reply_text: str | None = None
    context_window: int | None = None
    prompt_tokens: int | None = None


_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})


def classify_error(exc: BaseException) -> Failure:
    if isinstance(exc, PipelineStopRequested):
        return Failure("cancelled", "cancelled", str(exc) or "run stopped")
    if isinstance(exc, MissingEnvironmentVariable):
        return Failure("permanent", "missing_env", str(exc))
    if isinstance(exc, openai.APITimeoutError):
        return Failure("transient", "timeout", "request timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        detail = f" ({type(cause).__name__})" if cause is not None else ""
        return Failure("transient", "connection_error", f"connection error{detail}")
    if isinstance(exc, openai.APIStatusError):
        return _status_failure(exc)
    if isinstance(exc, ReplyWithoutChoices):
        return Failure("transient", "no_choices", str(exc))
    if isinstance(exc, BadResponse):
        return Failure("transient", "bad_response", str(exc))
    if isinstance(exc, openai.APIResponseValidationError):
        return Failure("content", "bad_response", "the server's reply is not a chat completion")
    if isinstance(exc, openai.APIError):
        return Failure("permanent", "api_error", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError | TypeError | KeyError):
        return Failure("permanent", "provider_error", f"{type(exc).__name__}: {exc}")
    return Failure("permanent", "error", f"{type(exc).__name__}: {exc}")


def _status_failure(exc: openai.APIStatusError) -> Failure:
    """An HTTP error: a context-window refusal, a transient status (408/409/425/429, 5xx, with the
    server's Retry-After) or a permanent one."""
    status = exc.status_code
    detail = _status_detail(exc)
    too_long = context_error(status, detail, exc.body)
    if too_long is not None:
        return Failure(
            "permanent",
            "context_length",
            f"HTTP {status}: {detail}",
            status=status,
            context_window=too_long.window,
            prompt_tokens=too_long.prompt_tokens,
        )
    kind = "transient" if status in _TRANSIENT_STATUS or status >= 500 else "permanent"
    return Failure(
        kind,
        f"http_{status}",
        f"HTTP {status}: {detail}",
        status=status,
        retry_after=retry_after_seconds(exc.response.headers) if kind == "transient" else None,
    )


def _status_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    try:
        text = exc.response.text
    except Exception:  # noqa: BLE001 - a body we cannot read is no detail
        text = ""
    return text.strip()[:500] or exc.message


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
