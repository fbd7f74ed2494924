"""Model configuration: PlanExe's ``llm_config.json`` format, read as it is.

The file is one JSON object keyed by model id::

    {
      "openrouter-gemini-2.0-flash": {
        "comment": "free text for humans",
        "priority": 1,                      # optional; entries with a priority form the "auto" list
        "class": "OpenRouter",              # OpenRouter | OpenAI | OpenAILike | Ollama | LMStudio | Offline
        "arguments": {
          "model": "google/gemini-2.0-flash-001",   # or "model_name" (PlanExe's LMStudio entries)
          "api_key": "${OPENROUTER_API_KEY}",        # ${VAR} is read from the environment at call time
          "base_url": "...",                         # or "api_base"; each class has a sensible default
          "temperature": 0.1,
          "top_p": 0.9, "frequency_penalty": 0.3, "presence_penalty": 0.0,   # optional sampling settings
          "timeout": 60.0,                           # or "request_timeout"
          "max_tokens": 8192,
          "max_retries": 3,                          # transient-error retries of this model (executor)
          "structured_output": "json_schema",        # json_schema (default) | json_object | prompt
          "max_in_flight": 4,                        # client-side limit on concurrent calls, per provider
          "context_window": 8192,                    # tokens the model holds (prompt + reply); see below
          "extra_headers": {"X-Title": "..."}        # also default_headers, additional_kwargs.extra_headers
        },
        "cost": {"input": 0.10, "output": 0.40}     # optional, USD per million tokens
      }
    }

Arguments PlanExe passes to llama-index that mean nothing to an OpenAI-compatible client
(``is_function_calling_model``, ``is_chat_model``, ``num_output``, ...) are accepted and ignored.

``context_window`` (optional, the key upstream PlanExe uses) is the model's context length in tokens,
prompt and reply together, as the server is configured (llama.cpp ``--n_ctx``, Ollama ``num_ctx``,
LM Studio's context length). With it the executor sizes each request's ``max_tokens`` to what is left
after the prompt (``executor.py``), fails a call whose prompt alone does not fit as permanent, and
never asks for more than the window. ``max_tokens``, when also set, stays the upper bound of a reply
and must be smaller than the window.

Which file: ``load_llm_config(path)``, else ``$PLANEXE_LLM_CONFIG``, else the packaged
``llm_config.json``. ``PLANEXE_LLM_CONFIG`` may also name a packaged profile: ``local``
(``resources/llm/local.json``: Ollama, LM Studio and llama.cpp server on their default ports).

Model selection (``resolve_models``):

- ``"auto"`` (or ``None``): every entry with a ``priority``, lowest first (file order breaks ties).
  An entry whose ``${VAR}`` is unset is skipped, with a warning naming the variable, as long as at
  least one other prioritized entry is usable; if none is usable the error names every missing
  variable. The shipped default gives ``offline`` no priority, so ``auto`` never silently produces
  offline content.
- a model id: that model only. An unknown id, or a missing variable, is an error.

Secrets: ``api_key`` is kept as written (normally a ``${VAR}`` reference) and expanded only when a
call is made. ``ModelEntry``'s repr shows variable names, never literal keys.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

log = logging.getLogger("planexe.llm")

CONFIG_ENV_VAR = "PLANEXE_LLM_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).with_name("llm_config.json")
# Packaged configurations selectable by name (PLANEXE_LLM_CONFIG=local).
PROFILES = {"default": DEFAULT_CONFIG_PATH, "local": Path(__file__).with_name("local.json")}
# The smallest context window accepted: below it no PlanExe prompt fits.
MIN_CONTEXT_WINDOW = 512

PROVIDER_CLASSES = ("OpenRouter", "OpenAI", "OpenAILike", "Ollama", "LMStudio", "Offline")
STRUCTURED_MODES = ("json_schema", "json_object", "prompt")

_DEFAULT_BASE_URLS = {
    "OpenRouter": "https://openrouter.ai/api/v1",
    "OpenAI": "https://api.openai.com/v1",
    "Ollama": "http://localhost:11434/v1",
    "LMStudio": "http://localhost:1234/v1",
}
# The variable a class reads when the entry names no api_key (PlanExe's files always name one).
_DEFAULT_KEY_VARS = {"OpenRouter": "OPENROUTER_API_KEY", "OpenAI": "OPENAI_API_KEY"}
_DEFAULT_TIMEOUT = 120.0

# Arguments of PlanExe's llama-index classes that an OpenAI-compatible client has no use for.
_IGNORED_ARGUMENTS = frozenset(
    {
        "is_function_calling_model",
        "is_chat_model",
        "num_output",
        "thinking",
        "reasoning_effort",
        "keep_alive",
        "json_mode",
        "strict",
        "api_version",
        "system_prompt",
        "callback_manager",
        "reuse_client",
    }
)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_M = TypeVar("_M", bound=BaseModel)


class LLMConfigError(ValueError):
    """The model configuration is unusable (malformed file, unknown id, missing variable)."""


class MissingEnvironmentVariable(LLMConfigError):
    """A ``${VAR}`` the configuration refers to is unset or empty. Carries the name, never a value."""

    def __init__(self, model_id: str, names: list[str]):
        self.model_id = model_id
        self.names = list(names)
        plural = "s" if len(names) > 1 else ""
        super().__init__(
            f"model {model_id!r} needs the environment variable{plural} {', '.join(names)}, which "
            f"{'are' if plural else 'is'} not set"
        )


@dataclass(frozen=True)
class Cost:
    """USD per million tokens."""

    input: float
    output: float

    def usd(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        if input_tokens is None and output_tokens is None:
            return None
        return ((input_tokens or 0) * self.input + (output_tokens or 0) * self.output) / 1_000_000


@dataclass(frozen=True, repr=False)
class ModelEntry:
    """One model of the configuration. Holds ``${VAR}`` references, expanded by ``resolved_*``."""

    id: str
    class_name: str
    model: str
    comment: str = ""
    priority: int | None = None
    base_url: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None  # -2..2; a positive value discourages repeating tokens
    presence_penalty: float | None = None
    timeout: float = _DEFAULT_TIMEOUT
    max_tokens: int | None = None
    max_retries: int | None = None
    structured_output: str = "json_schema"
    max_in_flight: int | None = None
    context_window: int | None = None  # tokens, prompt + reply
    cost: Cost | None = None
    seed: int | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict, compare=False)
    # As written in the file: normally "${VAR}"; a literal key is allowed but never shown.
    api_key: str | None = field(default=None, compare=False)
    ignored_arguments: tuple[str, ...] = ()

    @property
    def is_offline(self) -> bool:
        return self.class_name == "Offline"

    @property
    def key_is_literal(self) -> bool:
        return self.api_key is not None and not _ENV_REF.search(self.api_key)

    def env_vars(self) -> list[str]:
        """Every variable this entry refers to, in order of appearance."""
        names: list[str] = []
        for value in (self.api_key, self.base_url, self.model, *self.extra_headers.values()):
            for name in _ENV_REF.findall(value or ""):
                if name not in names:
                    names.append(name)
        return names

    def missing_env_vars(self, environ: Mapping[str, str] | None = None) -> list[str]:
        env = os.environ if environ is None else environ
        return [name for name in self.env_vars() if not env.get(name)]

    def check_environment(self, environ: Mapping[str, str] | None = None) -> None:
        missing = self.missing_env_vars(environ)
        if missing:
            raise MissingEnvironmentVariable(self.id, missing)

    def resolved_api_key(self) -> str | None:
        return None if self.api_key is None else self._expand(self.api_key)

    def resolved_base_url(self) -> str | None:
        return None if self.base_url is None else self._expand(self.base_url)

    def resolved_model(self) -> str:
        return self._expand(self.model)

    def endpoint(self) -> str:
        """``model NAME at HOST[:PORT]`` for messages: the base URL's host only (no user info, path or
        query, so never a key); an unset variable is shown by its name."""
        if self.is_offline:
            return "the offline provider"
        try:
            model = self.resolved_model()
        except MissingEnvironmentVariable:
            model = self.model
        try:
            url = self.resolved_base_url()
        except MissingEnvironmentVariable:
            url = None
        if url:
            parts = urlsplit(url)
            host = (parts.hostname or "?") + (f":{parts.port}" if parts.port else "")
        else:
            host = self.base_url or "the provider's default URL"
        return f"model {model} at {host}"

    def resolved_headers(self) -> dict[str, str]:
        return {k: self._expand(v) for k, v in self.extra_headers.items()}

    def _expand(self, text: str) -> str:
        missing = [name for name in _ENV_REF.findall(text) if not os.environ.get(name)]
        if missing:
            raise MissingEnvironmentVariable(self.id, missing)
        return _ENV_REF.sub(lambda m: os.environ[m.group(1)], text)

    @property
    def endpoint_key(self) -> str:
        """What the circuit breaker tracks: the base URL and the model name (one model of one server)."""
        if self.is_offline:
            return "offline"
        return f"{(self.base_url or '').rstrip('/')}#{self.model}"

    @property
    def provider_key(self) -> str:
        """Calls to the same endpoint share one in-flight limit: scheme://host:port of the base URL."""
        if self.is_offline:
            return "offline"
        url = self.base_url or ""
        if _ENV_REF.search(url):
            return f"{self.class_name}:{url}"
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"

    def __repr__(self) -> str:
        if self.api_key is None:
            key = "None"
        elif self.key_is_literal:
            key = "'***'"
        else:
            key = repr(self.api_key)
        return (
            f"ModelEntry(id={self.id!r}, class_name={self.class_name!r}, model={self.model!r}, "
            f"priority={self.priority!r}, base_url={safe_url(self.base_url)!r}, api_key={key}, "
            f"structured_output={self.structured_output!r}, context_window={self.context_window!r})"
        )

    __str__ = __repr__


def safe_url(url: str | None) -> str | None:
    """A URL without user:password, for logs and reprs."""
    if not url or "@" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class LLMConfig:
    entries: Mapping[str, ModelEntry]
    source: str

    def __getitem__(self, model_id: str) -> ModelEntry:
        return self.entries[model_id]

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.entries

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def ids(self) -> list[str]:
        return list(self.entries)

    def prioritized(self) -> list[ModelEntry]:
        """Entries with a priority, lowest first; file order breaks ties."""
        ordered = [e for e in self.entries.values() if e.priority is not None]
        return sorted(ordered, key=lambda e: e.priority or 0)  # never None here; sorted() is stable


# ------------------------------------------------------------------------------------------------
# Loading


def load_llm_config(path: str | os.PathLike[str] | None = None) -> LLMConfig:
    """Read a config file: ``path``, else ``$PLANEXE_LLM_CONFIG``, else the packaged default.

    A bare name without a directory or suffix (``local``) that is not an existing file names a
    packaged profile (``PROFILES``)."""
    if path is None:
        path = os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH
    path = config_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LLMConfigError(f"LLM config file {path} does not exist") from None
    except OSError as exc:
        raise LLMConfigError(f"LLM config file {path} cannot be read: {exc.strerror}") from None
    return parse_llm_config(text, source=str(path))


def config_path(value: str | os.PathLike[str]) -> Path:
    """The file a config reference names: a path, or the name of a packaged profile."""
    path = Path(value)
    if path.exists() or len(path.parts) != 1 or path.suffix:
        return path
    if path.name in PROFILES:
        return PROFILES[path.name]
    raise LLMConfigError(
        f"LLM config {str(value)!r} is neither a file nor a packaged profile; profiles: "
        f"{', '.join(PROFILES)} (or give a path to a JSON file)"
    )


def parse_llm_config(text: str, source: str = "<string>") -> LLMConfig:
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except _DuplicateKey as exc:
        raise LLMConfigError(f"{source}: key {exc.key!r} appears twice in one object") from None
    except json.JSONDecodeError as exc:
        raise LLMConfigError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise LLMConfigError(f"{source}: the top level must be an object keyed by model id")
    if not data:
        raise LLMConfigError(f"{source}: no models are defined")
    problems: list[str] = []
    entries: dict[str, ModelEntry] = {}
    for model_id, raw in data.items():
        entry = _parse_entry(model_id, raw, problems)
        if entry is not None:
            entries[model_id] = entry
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise LLMConfigError(f"{source} has {len(problems)} problem(s):\n{listing}")
    return LLMConfig(entries=entries, source=source)


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------------
# One entry, read by two pydantic models: the entry's top-level keys, then its arguments.
#
# Every check raises its own sentence (``_problem``) so a broken file reads the same as it always
# has: ``model 'x': argument 'timeout' must be a positive number, got 0``. ``{argument}`` in a
# sentence stands for the key as written in the file (``model`` or ``model_name``...).

_ARGUMENT = "{argument}"
_TOP_LEVEL_KEYS = ("comment", "priority", "class", "arguments", "cost")
_ABSENT: Any = object()  # "the file does not name this argument", unlike an explicit null


def _problem(sentence: str) -> PydanticCustomError:
    # The sentence travels in the context: PydanticCustomError would read its braces as placeholders.
    return PydanticCustomError("llm_config", "{sentence}", {"sentence": sentence})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _context(info: ValidationInfo, key: str) -> Any:
    return (info.context or {}).get(key)


# -- the top level ---------------------------------------------------------------------------------


def _check_comment(value: Any) -> Any:
    if not isinstance(value, str):
        raise _problem("'comment' must be a string")
    return value


def _check_priority(value: Any) -> Any:
    if value is not None and not _is_int(value):
        raise _problem(f"'priority' must be an integer, got {value!r}")
    return value


def _check_class(value: Any, info: ValidationInfo) -> Any:
    if value is None and _context(info, "older_format"):
        raise _problem(
            "has 'provider' but no 'class' (an older PlanExe format); write "
            '"class": "OpenRouter" or "OpenAI" and move \'model\' into \'arguments\''
        )
    if value is None:
        raise _problem(f"'class' is missing; use one of {', '.join(PROVIDER_CLASSES)}")
    if value not in PROVIDER_CLASSES:
        raise _problem(f"unknown class {value!r}; use one of {', '.join(PROVIDER_CLASSES)}")
    return value


def _check_arguments(value: Any, info: ValidationInfo) -> Any:
    if _context(info, "older_format"):
        return {}  # the entry is refused for its format; its arguments are not read
    if not isinstance(value, dict):
        raise _problem("'arguments' must be an object")
    return value


class _EntryDocument(BaseModel):
    """The keys of one entry beside the model id. ``cost`` is read with the arguments (it may sit in
    either place); an unknown key is an ``extra_forbidden`` error, reported as one sentence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    comment: Annotated[str, BeforeValidator(_check_comment)] = ""
    priority: Annotated[int | None, BeforeValidator(_check_priority)] = None
    class_name: Annotated[
        str | None, BeforeValidator(_check_class), Field(alias="class", validate_default=True)
    ] = None
    arguments: Annotated[dict[str, Any], BeforeValidator(_check_arguments)] = {}
    cost: Any = None


# -- the arguments ---------------------------------------------------------------------------------


def _check_string(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise _problem(f"argument {_ARGUMENT} must be a non-empty string")
    return value


def _check_model(value: Any, info: ValidationInfo) -> Any:
    if value is not _ABSENT:
        return _check_string(value)
    class_name = _context(info, "class_name")
    if class_name == "Offline":
        return "offline"
    if class_name in PROVIDER_CLASSES:
        raise _problem("argument 'model' is missing")
    return None


def _check_api_key(value: Any, info: ValidationInfo) -> Any:
    if value is not _ABSENT:
        return _check_string(value)
    key_var = _DEFAULT_KEY_VARS.get(_context(info, "class_name"))
    return None if key_var is None else "${" + key_var + "}"


def _check_base_url(value: Any, info: ValidationInfo) -> Any:
    class_name = _context(info, "class_name")
    if value is not _ABSENT:
        value = _check_string(value)
    elif class_name == "OpenAILike":
        raise _problem("class OpenAILike needs 'base_url' (or 'api_base'), e.g. http://localhost:8080/v1")
    else:
        value = _DEFAULT_BASE_URLS.get(class_name or "")
    if value is not None and not _ENV_REF.search(value) and urlsplit(value).scheme not in ("http", "https"):
        raise _problem("base_url must start with http:// or https://")
    if class_name == "Ollama" and value and not value.rstrip("/").endswith("/v1"):
        # llama-index's Ollama takes the bare host; its OpenAI-compatible API lives under /v1.
        value = value.rstrip("/") + "/v1"
    return value


def _check_non_negative(value: Any) -> Any:
    if not _is_number(value) or value < 0:
        raise _problem(f"argument {_ARGUMENT} must be a number >= 0, got {value!r}")
    return value


def _check_positive(value: Any) -> Any:
    if not _is_number(value) or value <= 0:
        raise _problem(f"argument {_ARGUMENT} must be a positive number, got {value!r}")
    return value


def _check_top_p(value: Any) -> Any:
    if _check_positive(value) > 1:
        raise _problem(f"argument 'top_p' must be in (0, 1], got {value!r}")
    return value


def _check_penalty(value: Any) -> Any:
    if value is not None and (not _is_number(value) or not -2 <= value <= 2):
        raise _problem(f"argument {_ARGUMENT} must be a number from -2 to 2, got {value!r}")
    return value


def _at_least(minimum: int) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not _is_int(value) or value < minimum:
            raise _problem(f"argument {_ARGUMENT} must be an integer >= {minimum}, got {value!r}")
        return value

    return BeforeValidator(check)


def _check_context_window(value: Any, info: ValidationInfo) -> Any:
    if not _is_int(value) or value < MIN_CONTEXT_WINDOW:
        raise _problem(
            f"argument 'context_window' must be the model's context length in tokens, an "
            f"integer >= {MIN_CONTEXT_WINDOW}, got {value!r}"
        )
    max_tokens = info.data.get("max_tokens")  # only there when it was valid
    if max_tokens is not None and max_tokens >= value:
        raise _problem(
            f"'max_tokens' ({max_tokens}) must be smaller than 'context_window' "
            f"({value}), which holds the prompt as well as the reply; lower max_tokens "
            f"or leave it out (the reply then gets what the prompt leaves)"
        )
    return value


def _check_seed(value: Any) -> Any:
    if not _is_int(value):
        raise _problem("argument 'seed' must be an integer")
    return value


def _check_structured_output(value: Any) -> Any:
    if value not in STRUCTURED_MODES:
        raise _problem(f"'structured_output' must be one of {', '.join(STRUCTURED_MODES)}, got {value!r}")
    return value


def _check_headers(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _problem(f"{name!r} must map header names to strings")
    return value


def _check_additional_kwargs(value: Any) -> Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _problem("'additional_kwargs' must be an object")
    # Of llama-index's additional_kwargs only the headers mean something to an OpenAI client.
    return {"extra_headers": _check_headers(value.get("extra_headers"), "additional_kwargs.extra_headers")}


def _check_cost(value: Any) -> Any:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or set(value) != {"input", "output"}
        or not all(_is_number(v) and v >= 0 for v in value.values())
    ):
        raise _problem('\'cost\' must be {"input": <USD per 1M tokens>, "output": <USD per 1M tokens>}')
    return Cost(input=float(value["input"]), output=float(value["output"]))


def _one_of(*names: str, required: bool = False) -> Any:
    """The first of ``names`` the file uses (PlanExe's files spell some arguments two ways); with
    ``required`` the check also runs when the file names none of them."""
    return Field(validation_alias=AliasChoices(*names), validate_default=required)


_Headers = Annotated[dict[str, str], BeforeValidator(lambda v, info: _check_headers(v, info.field_name))]


class _Arguments(BaseModel):
    """An entry's ``arguments``, checked in the order the problems are listed. The entry's class comes
    in the validation context (``class_name``): it decides defaults and what is required. Arguments
    this model does not name are ignored (``ModelEntry.ignored_arguments`` lists them)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: Annotated[
        str | None, BeforeValidator(_check_model), _one_of("model", "model_name", required=True)
    ] = _ABSENT
    api_key: Annotated[str | None, BeforeValidator(_check_api_key), Field(validate_default=True)] = _ABSENT
    base_url: Annotated[
        str | None, BeforeValidator(_check_base_url), _one_of("base_url", "api_base", required=True)
    ] = _ABSENT
    temperature: Annotated[float | None, BeforeValidator(_check_non_negative)] = None
    top_p: Annotated[float | None, BeforeValidator(_check_top_p)] = None
    frequency_penalty: Annotated[float | None, BeforeValidator(_check_penalty)] = None
    presence_penalty: Annotated[float | None, BeforeValidator(_check_penalty)] = None
    timeout: Annotated[float, BeforeValidator(_check_positive), _one_of("timeout", "request_timeout")] = (
        _DEFAULT_TIMEOUT
    )
    max_tokens: Annotated[int | None, _at_least(1)] = None
    max_retries: Annotated[int | None, _at_least(0)] = None
    max_in_flight: Annotated[int | None, _at_least(1)] = None
    context_window: Annotated[int | None, BeforeValidator(_check_context_window)] = None
    seed: Annotated[int | None, BeforeValidator(_check_seed)] = None
    structured_output: Annotated[str, BeforeValidator(_check_structured_output)] = "json_schema"
    additional_kwargs: Annotated[dict[str, dict[str, str]], BeforeValidator(_check_additional_kwargs)] = {}
    default_headers: _Headers = {}
    extra_headers: _Headers = {}
    cost: Annotated[Cost | None, BeforeValidator(_check_cost)] = None

    def headers(self) -> dict[str, str]:
        """Every header source merged; a later source wins (extra_headers over default_headers)."""
        return {
            **self.additional_kwargs.get("extra_headers", {}),
            **self.default_headers,
            **self.extra_headers,
        }


# Every argument name the model reads, aliases included; the others are ignored (and listed).
_KNOWN_ARGUMENTS = frozenset(
    name
    for field_name, info in _Arguments.model_fields.items()
    for name in (
        info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else [field_name]
    )
)


def _problems_of(exc: ValidationError) -> list[str]:
    """Pydantic's errors as the config's sentences: unknown top-level keys first, as one sentence."""
    unknown = sorted(str(err["loc"][0]) for err in exc.errors() if err["type"] == "extra_forbidden")
    out = []
    if unknown:
        out.append(f"unknown key(s) {unknown}; allowed: {', '.join(_TOP_LEVEL_KEYS)}")
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            continue
        key = err["loc"][-1] if err["loc"] else ""
        if err["type"] == "llm_config":
            out.append(err["msg"].replace(_ARGUMENT, repr(key)))
        else:  # a value our checks let through but the field's type refuses (a float out of range...)
            out.append(f"{key!r}: {err['msg']}")
    return out


def _validate(model: type[_M], data: Any, context: dict[str, Any], problems: list[str]) -> _M | None:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems.extend(_problems_of(exc))
        return None


def _parse_entry(model_id: str, raw: Any, problems: list[str]) -> ModelEntry | None:
    """One entry as a ``ModelEntry``, or None with its problems (``model 'x': ...``) added."""
    if not model_id.strip():
        problems.append("a model id is empty")
        return None
    if not isinstance(raw, dict):
        problems.append(f"model {model_id!r}: must be an object with 'class' and 'arguments'")
        return None
    found: list[str] = []
    older_format = raw.get("class") is None and "provider" in raw
    document = _validate(_EntryDocument, raw, {"older_format": older_format}, found)
    args = raw.get("arguments", {})
    args = args if isinstance(args, dict) else {}
    arguments = None
    if not older_format:
        class_name = raw.get("class") if raw.get("class") in PROVIDER_CLASSES else None
        # A top-level cost (PlanExe's place for it) wins over one among the arguments.
        data = {**args, "cost": raw["cost"]} if "cost" in raw else args
        arguments = _validate(_Arguments, data, {"class_name": class_name}, found)
    problems.extend(f"model {model_id!r}: {problem}" for problem in found)
    if document is None or arguments is None:  # one of them failed: ``found`` says why
        return None
    return _model_entry(model_id, document, arguments, args)


def _model_entry(model_id: str, document: _EntryDocument, arguments: _Arguments, args: dict) -> ModelEntry:
    ignored = tuple(sorted(k for k in args if k not in _KNOWN_ARGUMENTS))
    unexpected = [k for k in ignored if k not in _IGNORED_ARGUMENTS]
    if unexpected:
        log.debug("model %r: ignoring argument(s) %s", model_id, unexpected)
    if document.class_name is None:  # _check_class refuses a missing class; this tells the type checker
        raise ValueError(f"model {model_id!r}: no class after validation")
    return ModelEntry(
        id=model_id,
        class_name=document.class_name,
        model=arguments.model or "",
        comment=document.comment,
        priority=document.priority,
        base_url=arguments.base_url,
        temperature=arguments.temperature,
        top_p=arguments.top_p,
        frequency_penalty=arguments.frequency_penalty,
        presence_penalty=arguments.presence_penalty,
        timeout=arguments.timeout,
        max_tokens=arguments.max_tokens,
        max_retries=arguments.max_retries,
        structured_output=arguments.structured_output,
        max_in_flight=arguments.max_in_flight,
        context_window=arguments.context_window,
        cost=arguments.cost,
        seed=arguments.seed,
        extra_headers=arguments.headers(),
        api_key=arguments.api_key,
        ignored_arguments=ignored,
    )


# ------------------------------------------------------------------------------------------------
# Selection


def resolve_models(
    config: LLMConfig, name: str | None = "auto", environ: Mapping[str, str] | None = None
) -> list[ModelEntry]:
    """The ordered models a run uses. Raises ``LLMConfigError`` before any plan work starts."""
    if name is None or name.strip() == "" or name.strip().lower() == "auto":
        return _resolve_auto(config, environ)
    name = name.strip()
    if name not in config:
        known = ", ".join(config.ids())
        raise LLMConfigError(
            f"unknown model {name!r} (config {config.source}); known models: {known}, or 'auto'"
        )
    entry = config[name]
    entry.check_environment(environ)
    return [entry]


def _resolve_auto(config: LLMConfig, environ: Mapping[str, str] | None) -> list[ModelEntry]:
    ranked = config.prioritized()
    if not ranked:
        raise LLMConfigError(
            f"no model in {config.source} has a 'priority', so 'auto' has nothing to choose; "
            f"name one with --model: {', '.join(config.ids())}"
        )
    usable: list[ModelEntry] = []
    missing: dict[str, list[str]] = {}
    for entry in ranked:
        names = entry.missing_env_vars(environ)
        if names:
            missing[entry.id] = names
        else:
            usable.append(entry)
    if not usable:
        lines = "; ".join(f"{mid} needs {', '.join(names)}" for mid, names in missing.items())
        others = [e.id for e in config if e.priority is None]
        hint = f" Or pick a model without a key: {', '.join(others)}." if others else ""
        raise LLMConfigError(
            f"no prioritized model is usable because environment variables are not set: {lines}.{hint}"
        )
    for mid, names in missing.items():
        log.warning("model %r skipped by 'auto': environment variable %s not set", mid, ", ".join(names))
    return usable
