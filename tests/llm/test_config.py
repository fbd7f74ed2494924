"""Config parsing (PlanExe's llm_config.json format), model selection and clear errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from resources.llm import (
    DEFAULT_CONFIG_PATH,
    LLMConfigError,
    LLMExecutor,
    MissingEnvironmentVariable,
    load_llm_config,
    parse_llm_config,
    resolve_models,
)
from tests.llm.conftest import CANARY_KEY

PLANEXE_FORMAT = Path(__file__).parent / "data" / "planexe_format_config.json"


def entry(cls: str = "OpenAILike", priority: int | None = None, **arguments) -> dict:
    arguments.setdefault("model", "m")
    if cls == "OpenAILike":
        arguments.setdefault("base_url", "http://127.0.0.1:9/v1")
    out = {"class": cls, "arguments": arguments}
    if priority is not None:
        out["priority"] = priority
    return out


def config(**entries: dict):
    return parse_llm_config(json.dumps(entries), source="test.json")


# -- PlanExe's format -------------------------------------------------------------------------------


def test_planexe_format_is_read_as_it_is():
    cfg = load_llm_config(PLANEXE_FORMAT)
    assert cfg.ids() == [
        "openrouter-paid-llama-3.3-70b",
        "openrouter-paid-mistral-small",
        "openai-direct",
        "ollama-mistral",
        "ollama-remote-box",
        "lmstudio-phi-4",
        "vllm-box",
    ]
    llama = cfg["openrouter-paid-llama-3.3-70b"]
    assert (llama.class_name, llama.model, llama.priority) == (
        "OpenRouter",
        "meta-llama/llama-3.3-70b-instruct",
        2,
    )
    assert (llama.temperature, llama.timeout, llama.max_tokens, llama.max_retries) == (0.1, 60.0, 8192, 5)
    assert llama.base_url == "https://openrouter.ai/api/v1"
    assert llama.api_key == "${OPENROUTER_API_KEY}"
    assert llama.ignored_arguments == ("is_chat_model", "is_function_calling_model")

    openai_entry = cfg["openai-direct"]
    assert openai_entry.base_url == "https://api.openai.com/v1" and openai_entry.priority is None

    assert cfg["ollama-mistral"].base_url == "http://localhost:11434/v1"  # Ollama's OpenAI endpoint
    assert cfg["ollama-mistral"].timeout == 120.0  # request_timeout
    assert cfg["ollama-mistral"].api_key is None
    assert cfg["ollama-remote-box"].base_url == "http://192.168.1.20:11434/v1"
    assert cfg["lmstudio-phi-4"].model == "phi-4"  # model_name
    assert cfg["lmstudio-phi-4"].base_url == "http://localhost:1234/v1"

    vllm = cfg["vllm-box"]
    assert vllm.context_window == 32768  # the key upstream PlanExe uses, now read
    assert "context_window" not in vllm.ignored_arguments
    assert vllm.base_url == "http://10.0.0.5:8000/v1"  # api_base
    assert dict(vllm.extra_headers) == {"X-Team": "planning"}
    assert vllm.structured_output == "json_schema"
    assert vllm.provider_key == "http://10.0.0.5:8000"
    assert len({*cfg}) == len(cfg)  # entries are hashable


def test_auto_orders_by_priority_and_names_pick_one(monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", CANARY_KEY)
    cfg = load_llm_config(PLANEXE_FORMAT)
    assert [e.id for e in resolve_models(cfg)] == [
        "openrouter-paid-mistral-small",
        "openrouter-paid-llama-3.3-70b",
    ]
    assert [e.id for e in resolve_models(cfg, "auto")] == [e.id for e in resolve_models(cfg, None)]
    assert [e.id for e in resolve_models(cfg, "ollama-mistral")] == ["ollama-mistral"]


def test_equal_priorities_keep_file_order():
    cfg = config(b=entry(priority=1), a=entry(priority=1), c=entry(priority=0), d=entry())
    assert [e.id for e in resolve_models(cfg)] == ["c", "b", "a"]


def test_shipped_default_config():
    cfg = load_llm_config(DEFAULT_CONFIG_PATH)
    classes = {e.class_name for e in cfg}
    assert {"OpenRouter", "OpenAI", "Ollama", "LMStudio", "Offline"} <= classes
    assert cfg["offline"].priority is None and cfg["offline"].is_offline
    ranked = cfg.prioritized()
    assert ranked[0].class_name == "OpenRouter"
    assert all(not e.is_offline for e in ranked)
    assert all(e.cost is not None for e in ranked)


def test_default_path_and_environment_override(tmp_path, monkeypatch):
    monkeypatch.delenv("PLANEXE_LLM_CONFIG", raising=False)
    assert load_llm_config().source == str(DEFAULT_CONFIG_PATH)
    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps({"only": entry()}))
    monkeypatch.setenv("PLANEXE_LLM_CONFIG", str(custom))
    assert load_llm_config().ids() == ["only"]
    assert load_llm_config(PLANEXE_FORMAT).source == str(PLANEXE_FORMAT)  # an argument beats the variable


def test_local_profile_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLANEXE_LLM_CONFIG", "local")
    cfg = load_llm_config()
    assert cfg.source.endswith("resources/llm/local.json")
    assert {e.class_name for e in cfg} == {"OpenAILike", "Ollama", "LMStudio"}
    for model in cfg:
        assert model.context_window and model.max_in_flight == 1 and model.timeout == 300.0
        assert model.structured_output in ("json_object", "json_schema") and model.priority is not None
        assert model.max_tokens < model.context_window and model.api_key is None
    assert [e.id for e in resolve_models(cfg)] == [e.id for e in cfg.prioritized()]  # no key needed
    (tmp_path / "local").write_text(json.dumps({"mine": entry()}))
    assert load_llm_config().ids() == ["mine"]  # a file of that name wins over the profile
    monkeypatch.setenv("PLANEXE_LLM_CONFIG", "remote")
    with pytest.raises(
        LLMConfigError, match="'remote' is neither a file nor a packaged profile; profiles: default, local"
    ):
        load_llm_config()


def test_local_entries_of_the_default_config():
    cfg = load_llm_config(DEFAULT_CONFIG_PATH)
    for model_id in ("ollama-llama3.1", "lmstudio-qwen2.5-7b-instruct", "llamacpp-local"):
        model = cfg[model_id]
        assert model.context_window == 32768 and model.max_in_flight == 1 and model.timeout == 300.0
        assert model.priority is None  # never chosen by 'auto' over a configured remote model


def test_offline_through_auto_never_happens_silently(monkeypatch):
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = load_llm_config(DEFAULT_CONFIG_PATH)
    with pytest.raises(LLMConfigError) as caught:
        resolve_models(cfg, "auto")
    message = str(caught.value)
    assert "OPENROUTER_API_KEY" in message and "OPENAI_API_KEY" in message and "offline" in message
    assert [e.id for e in resolve_models(cfg, "offline")] == ["offline"]


# -- environment variables --------------------------------------------------------------------------


def test_auto_skips_models_whose_variable_is_unset(monkeypatch, caplog):
    monkeypatch.setenv("OPENROUTER_API_KEY", CANARY_KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = load_llm_config(DEFAULT_CONFIG_PATH)
    with caplog.at_level(logging.WARNING, logger="planexe.llm"):
        chosen = resolve_models(cfg)
    assert [e.class_name for e in chosen] == ["OpenRouter", "OpenRouter"]
    assert any("OPENAI_API_KEY" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    assert CANARY_KEY not in caplog.text


def test_named_model_with_missing_variable_names_it_never_a_value(monkeypatch):
    monkeypatch.setenv("PRESENT_KEY", CANARY_KEY)
    monkeypatch.delenv("ABSENT_KEY", raising=False)
    cfg = config(x=entry(api_key="${PRESENT_KEY}", base_url="http://${ABSENT_KEY}/v1"))
    with pytest.raises(MissingEnvironmentVariable) as caught:
        resolve_models(cfg, "x")
    assert caught.value.names == ["ABSENT_KEY"]
    assert "ABSENT_KEY" in str(caught.value) and CANARY_KEY not in str(caught.value)
    assert isinstance(caught.value, LLMConfigError) and isinstance(caught.value, ValueError)


def test_empty_variable_counts_as_missing(monkeypatch):
    monkeypatch.setenv("EMPTY_KEY", "")
    with pytest.raises(LLMConfigError, match="EMPTY_KEY"):
        resolve_models(config(x=entry(api_key="${EMPTY_KEY}")), "x")


def test_key_is_expanded_at_call_time_not_at_load_time(monkeypatch):
    monkeypatch.setenv("ROTATING_KEY", "sk-first-value-000000")
    [model] = resolve_models(config(x=entry(api_key="${ROTATING_KEY}")), "x")
    assert model.api_key == "${ROTATING_KEY}"
    monkeypatch.setenv("ROTATING_KEY", "sk-second-value-11111")
    assert model.resolved_api_key() == "sk-second-value-11111"


def test_unknown_model_lists_the_known_ones():
    cfg = config(alpha=entry(), beta=entry())
    with pytest.raises(LLMConfigError, match=r"unknown model 'gamma'.*alpha, beta"):
        resolve_models(cfg, "gamma")


def test_auto_without_priorities_is_an_error():
    with pytest.raises(LLMConfigError, match="no model .* has a 'priority'.*alpha"):
        resolve_models(config(alpha=entry()), "auto")


# -- malformed files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", r"not valid JSON: .* line 1 column 2"),
        ("[]", "top level must be an object"),
        ("{}", "no models"),
        ('{"a": 3}', "model 'a': must be an object"),
        ('{"a": {"arguments": {"model": "m"}}}', "'class' is missing"),
        ('{"a": {"class": "Anthropic", "arguments": {"model": "m"}}}', "unknown class 'Anthropic'"),
        ('{"a": {"class": "OpenAI", "arguments": {}}}', "argument 'model' is missing"),
        ('{"a": {"class": "OpenAI", "arguments": "model=m"}}', "'arguments' must be an object"),
        (
            '{"a": {"class": "OpenAI", "priority": "1", "arguments": {"model": "m"}}}',
            "'priority' must be an integer",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "temperature": "hot"}}}',
            "'temperature' must be",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "timeout": 0}}}',
            "'timeout' must be a positive number",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "max_tokens": 1.5}}}',
            "'max_tokens' must be an integer",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "max_retries": -1}}}',
            "'max_retries' must be an integer >= 0",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "structured_output": "xml"}}}',
            "'structured_output' must be one of",
        ),
        ('{"a": {"class": "OpenAI", "arguments": {"model": "m"}, "cost": {"input": 1}}}', "'cost' must be"),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "base_url": "ftp://x"}}}',
            "base_url must start with http",
        ),
        ('{"a": {"class": "OpenAILike", "arguments": {"model": "m"}}}', "OpenAILike needs 'base_url'"),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m"}}, "a": {"class": "OpenAI", "arguments": {"model": "n"}}}',
            "'a' appears twice",
        ),
        ('{"a": {"provider": "openrouter", "model": "x/y"}}', "older PlanExe format"),
        (
            '{"a": {"class": "OpenAI", "prio": 1, "arguments": {"model": "m"}}}',
            r"unknown key\(s\) \['prio'\]",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "frequency_penalty": 3}}}',
            r"'frequency_penalty' must be a number from -2 to 2, got 3",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "presence_penalty": "high"}}}',
            r"'presence_penalty' must be a number from -2 to 2",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "top_p": 1.5}}}',
            r"'top_p' must be in \(0, 1\], got 1.5",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "context_window": "8k"}}}',
            r"'context_window' must be the model's context length in tokens, an integer >= 512, got '8k'",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "context_window": 100}}}',
            r"'context_window' .* >= 512, got 100",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "context_window": 8192.0}}}',
            r"'context_window' .* got 8192.0",
        ),
        (
            '{"a": {"class": "OpenAI", "arguments": {"model": "m", "context_window": 4096, "max_tokens": 4096}}}',
            r"'max_tokens' \(4096\) must be smaller than 'context_window' \(4096\)",
        ),
    ],
)
def test_malformed_config_gives_a_clear_error(text, expected):
    with pytest.raises(LLMConfigError, match=expected):
        parse_llm_config(text, source="bad.json")


@pytest.mark.parametrize(
    ("entry_text", "expected"),
    [
        ('{"class": "OpenAI", "comment": 3, "arguments": {"model": "m"}}', "'comment' must be a string"),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "api_key": ""}}',
            "argument 'api_key' must be a non-empty string",
        ),
        (
            '{"class": "LMStudio", "arguments": {"model_name": " "}}',
            "argument 'model_name' must be a non-empty string",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "api_base": 7}}',
            "argument 'api_base' must be a non-empty string",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "temperature": -1}}',
            "argument 'temperature' must be a number >= 0, got -1",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "request_timeout": true}}',
            "argument 'request_timeout' must be a positive number, got True",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "max_in_flight": 0}}',
            "argument 'max_in_flight' must be an integer >= 1, got 0",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "seed": "x"}}',
            "argument 'seed' must be an integer",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "additional_kwargs": []}}',
            "'additional_kwargs' must be an object",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "extra_headers": {"X": 1}}}',
            "'extra_headers' must map header names to strings",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "default_headers": "X: y"}}',
            "'default_headers' must map header names to strings",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "additional_kwargs": {"extra_headers": 1}}}',
            "'additional_kwargs.extra_headers' must map header names to strings",
        ),
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "cost": {"input": 1, "output": -1}}}',
            "'cost' must be",
        ),
        # Beyond a float: a clear problem, not an OverflowError.
        (
            '{"class": "OpenAI", "arguments": {"model": "m", "timeout": 1' + "0" * 400 + "}}",
            "model 'a': 'timeout': ",
        ),
    ],
)
def test_each_argument_problem_names_the_argument(entry_text, expected):
    with pytest.raises(LLMConfigError) as caught:
        parse_llm_config(f'{{"a": {entry_text}}}', source="bad.json")
    assert expected in str(caught.value)
    assert str(caught.value).startswith("bad.json has 1 problem(s):\n  - model 'a': ")


def test_an_empty_model_id_is_a_problem():
    with pytest.raises(LLMConfigError, match="a model id is empty"):
        parse_llm_config('{" ": {"class": "Offline", "arguments": {}}}', source="bad.json")


def test_one_entry_lists_its_problems_in_file_order():
    text = json.dumps(
        {
            "a": {
                "class": "OpenAI",
                "priority": "first",
                "prio": 1,
                "arguments": {"model": "", "temperature": "hot", "max_tokens": 0, "structured_output": "xml"},
                "cost": {"input": 1},
            }
        }
    )
    with pytest.raises(LLMConfigError) as caught:
        parse_llm_config(text, source="bad.json")
    assert str(caught.value).splitlines() == [
        "bad.json has 7 problem(s):",
        "  - model 'a': unknown key(s) ['prio']; allowed: comment, priority, class, arguments, cost",
        "  - model 'a': 'priority' must be an integer, got 'first'",
        "  - model 'a': argument 'model' must be a non-empty string",
        "  - model 'a': argument 'temperature' must be a number >= 0, got 'hot'",
        "  - model 'a': argument 'max_tokens' must be an integer >= 1, got 0",
        "  - model 'a': 'structured_output' must be one of json_schema, json_object, prompt, got 'xml'",
        "  - model 'a': 'cost' must be {\"input\": <USD per 1M tokens>, \"output\": <USD per 1M tokens>}",
    ]


def test_a_broken_file_names_the_file_and_the_entry(tmp_path):
    path = tmp_path / "llm_config.json"
    path.write_text(json.dumps({"good": entry(), "broken": entry(timeout=0)}))
    with pytest.raises(LLMConfigError) as caught:
        load_llm_config(path)
    assert str(caught.value) == (
        f"{path} has 1 problem(s):\n  - model 'broken': argument 'timeout' must be a positive number, got 0"
    )


def test_arguments_spelled_the_planexe_way_and_header_sources_merge():
    cfg = config(
        x=entry(
            "OpenAI",
            additional_kwargs={"extra_headers": {"A": "1", "B": "1"}},
            default_headers={"B": "2", "C": "2"},
            extra_headers={"C": "3"},
            request_timeout=30,
        ),
        y={"class": "Ollama", "arguments": {"model": "m", "api_base": "http://box:11434/"}},
    )
    assert dict(cfg["x"].extra_headers) == {"A": "1", "B": "2", "C": "3"}
    assert cfg["x"].timeout == 30.0 and isinstance(cfg["x"].timeout, float)
    assert cfg["y"].base_url == "http://box:11434/v1"


def test_every_problem_is_reported_at_once():
    text = json.dumps(
        {"a": {"class": "Nope", "arguments": {"model": "m"}}, "b": {"class": "OpenAI", "arguments": {}}}
    )
    with pytest.raises(LLMConfigError) as caught:
        parse_llm_config(text, source="bad.json")
    message = str(caught.value)
    assert "2 problem(s)" in message and "model 'a'" in message and "model 'b'" in message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(LLMConfigError, match="does not exist"):
        load_llm_config(tmp_path / "nope.json")


def test_cost_and_extensions():
    cfg = config(
        x=entry(structured_output="prompt", max_in_flight=2, seed=4) | {"cost": {"input": 0.5, "output": 2}},
    )
    model = cfg["x"]
    assert (model.structured_output, model.max_in_flight, model.seed) == ("prompt", 2, 4)
    assert model.cost.usd(1_000_000, 500_000) == pytest.approx(1.5)
    assert model.cost.usd(None, None) is None


# -- secrets ----------------------------------------------------------------------------------------


def test_repr_never_shows_a_literal_key(monkeypatch):
    monkeypatch.setenv("SOME_KEY", CANARY_KEY)
    cfg = config(
        literal=entry(api_key=CANARY_KEY, base_url="https://user:hunter2@example.com/v1"),
        ref=entry(api_key="${SOME_KEY}"),
    )
    literal, ref = cfg["literal"], cfg["ref"]
    for text in (repr(literal), str(literal), repr(ref), repr(cfg), repr(LLMExecutor([literal, ref]))):
        assert CANARY_KEY not in text and "hunter2" not in text
    assert "api_key='***'" in repr(literal)
    assert "${SOME_KEY}" in repr(ref)


def test_endpoint_names_model_and_host_never_credentials(monkeypatch):
    document = {
        "proxy": {
            "class": "OpenAILike",
            "arguments": {
                "model": "${PLANEXE_TEST_MODEL}",
                "base_url": "https://user:s3cret@llm.example.org:8443/v1?key=abc",
                "api_key": "${PLANEXE_TEST_KEY}",
            },
        },
        "router": {"class": "OpenRouter", "arguments": {"model": "google/gemma-3-4b-it"}},
        "unset": {
            "class": "OpenAILike",
            "arguments": {"model": "m", "base_url": "${PLANEXE_TEST_URL}", "api_key": "x"},
        },
        "offline": {"class": "Offline", "arguments": {}},
    }
    config = parse_llm_config(json.dumps(document))
    monkeypatch.setenv("PLANEXE_TEST_MODEL", "llama-3")
    monkeypatch.delenv("PLANEXE_TEST_URL", raising=False)
    endpoint = config["proxy"].endpoint()
    assert endpoint == "model llama-3 at llm.example.org:8443"
    assert "s3cret" not in endpoint and "user" not in endpoint and "key" not in endpoint
    assert config["router"].endpoint() == "model google/gemma-3-4b-it at openrouter.ai"
    assert config["unset"].endpoint() == "model m at ${PLANEXE_TEST_URL}"
    assert config["offline"].endpoint() == "the offline provider"
