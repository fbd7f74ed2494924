"""Fixtures for the LLM layer tests: a live stub server, a canary API key, configs pointing at the stub."""

from __future__ import annotations

import json
from typing import Any

import pytest

from resources.llm import LLMExecutor, MemoryRecorder, ModelEntry, RetryPolicy, parse_llm_config
from tests.llm.stub_server import StubLLMServer

# A key that must never show up in a log line, a database row, an exception or a repr.
CANARY_KEY = "sk-canary-5f0c2e9a7b4d41c3a8e6"
KEY_VAR = "PLANEXE_TEST_STUB_KEY"

# Backoff small enough that the whole LLM suite stays fast.
FAST_RETRY = RetryPolicy(
    transient_retries=2, base_delay=0.01, max_delay=0.05, jitter=0.2, max_retry_after=5.0
)


@pytest.fixture
def stub():
    server = StubLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def canary_env(monkeypatch):
    monkeypatch.setenv(KEY_VAR, CANARY_KEY)
    return CANARY_KEY


def stub_entries(stub: StubLLMServer, models: dict[str, dict[str, Any]], **shared: Any) -> list[ModelEntry]:
    """Config entries (through the real parser) for models served by the stub, in the given order.

    Each model id is also the model name the stub sees. ``arguments`` default to the stub's URL, the
    canary key variable, a 2 s timeout and 2 transient retries; per-model dicts override them, and
    ``cost`` / ``class`` keys go to the entry rather than its arguments.
    """
    document: dict[str, Any] = {}
    for model_id, overrides in models.items():
        overrides = dict(overrides)
        entry: dict[str, Any] = {"class": overrides.pop("class", "OpenAILike")}
        if "cost" in overrides:
            entry["cost"] = overrides.pop("cost")
        arguments = {
            "model": model_id,
            "base_url": stub.base_url,
            "api_key": "${" + KEY_VAR + "}",
            "timeout": 2.0,
            "max_retries": 2,
            **shared,
            **overrides,
        }
        entry["arguments"] = {k: v for k, v in arguments.items() if v is not None}
        document[model_id] = entry
    config = parse_llm_config(json.dumps(document), source="<stub config>")
    return [config[m] for m in models]


def stub_executor(stub: StubLLMServer, models: dict[str, dict[str, Any]], **kwargs: Any) -> LLMExecutor:
    kwargs.setdefault("recorder", MemoryRecorder())
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("seed", 7)
    return LLMExecutor(stub_entries(stub, models), **kwargs)
