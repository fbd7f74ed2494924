"""The executor against a real HTTP server: fail-over, retries, backoff, repair, modes, stop, limits."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from planexe_assets.core import PipelineStopRequested, StepError
from resources.llm import LLMExecutor, MemoryRecorder, RetryPolicy
from tests.llm.conftest import FAST_RETRY, KEY_VAR, stub_entries, stub_executor
from tests.llm.stub_server import LLAMACPP_REJECTION, Drop, Hang, Raw, Reply, Status


class Risk(BaseModel):
    title: str
    severity: Literal["low", "medium", "high"]


class RiskReport(BaseModel):
    summary: str
    risks: list[Risk] = Field(min_length=1)


VALID = json.dumps({"summary": "Two risks.", "risks": [{"title": "Permits", "severity": "high"}]})
MESSAGES = [
    {"role": "system", "content": "List the main risks of the plan."},
    {"role": "user", "content": "Plan: open a bakery in Lisbon."},
]


def rows_of(executor: LLMExecutor) -> list[dict]:
    return executor.recorder.rows  # MemoryRecorder


# -- the happy path ---------------------------------------------------------------------------------


def test_structured_call_sends_json_schema_and_validates(stub, canary_env):
    stub.script("alpha", Reply(VALID, prompt_tokens=120, completion_tokens=30))
    executor = stub_executor(stub, {"alpha": {"temperature": 0.2, "max_tokens": 900}})
    llm = executor.for_step("plan_1", "identify_risks")

    reply = llm.structured(MESSAGES, RiskReport, label="risks")

    assert reply.value == RiskReport.model_validate_json(VALID)
    assert json.loads(reply.text) == json.loads(VALID)
    assert (reply.usage.model_id, reply.usage.attempts, reply.usage.label) == ("alpha", 1, "risks")
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (120, 30, 150)
    assert llm.usage == [reply.usage]
    [seen] = stub.seen("alpha")
    fmt = seen.response_format
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "RiskReport"
    assert fmt["json_schema"]["schema"]["properties"].keys() == {"summary", "risks"}
    assert seen.body["temperature"] == 0.2 and seen.body["max_tokens"] == 900
    assert seen.messages == MESSAGES  # json_schema mode leaves the prompt alone
    assert seen.headers["authorization"] == f"Bearer {canary_env}"
    # The plan and step travel as headers, for gateways and the bench's in-flight log.
    assert (seen.headers["x-planexe-plan-id"], seen.headers["x-planexe-stage"]) == (
        "plan_1",
        "identify_risks",
    )


def test_text_call_and_multi_turn_conversation(stub, canary_env):
    stub.script("alpha", Reply("# Summary\n\nShort."), Reply("## More\n\nDetail."))
    llm = stub_executor(stub, {"alpha": {}}).for_step("plan_1", "shorten")

    first = llm.text(MESSAGES, label="turn 1")
    conversation = [
        *MESSAGES,
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "Go on."},
    ]
    second = llm.text(conversation, label="turn 2")

    assert (first.text, second.text) == ("# Summary\n\nShort.", "## More\n\nDetail.")
    assert "response_format" not in stub.seen("alpha")[0].body
    assert stub.seen("alpha")[1].messages == conversation
    assert [u.label for u in llm.usage] == ["turn 1", "turn 2"]


# -- fail-over and retries --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_permanent_errors_go_straight_to_the_next_model(stub, canary_env, status):
    stub.script("alpha", then=Status(status, "nope"))
    stub.script("beta", Reply(VALID))
    executor = stub_executor(stub, {"alpha": {}, "beta": {}})

    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)

    assert reply.usage.model_id == "beta" and reply.usage.attempts == 2
    assert len(stub.seen("alpha")) == 1
    assert [(r["llm_model"], r["status"], r["error_code"]) for r in rows_of(executor)] == [
        ("alpha", "failed", f"http_{status}"),
        ("beta", "completed", None),
    ]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 408])
def test_transient_errors_are_retried_on_the_same_model(stub, canary_env, status):
    stub.script("alpha", Status(status), Status(status), Reply(VALID))
    executor = stub_executor(stub, {"alpha": {"max_retries": 2}, "beta": {}})

    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)

    assert reply.usage.model_id == "alpha" and reply.usage.attempts == 3
    assert stub.seen("beta") == []


def test_retry_budget_then_next_model_in_order(stub, canary_env):
    stub.script("alpha", then=Status(503, "overloaded"))
    stub.script("beta", then=Status(500, "boom"))
    stub.script("gamma", Reply(VALID))
    executor = stub_executor(stub, {"alpha": {"max_retries": 1}, "beta": {"max_retries": 3}, "gamma": {}})

    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)

    assert reply.usage.model_id == "gamma"
    assert [r.model for r in stub.seen()] == ["alpha"] * 2 + ["beta"] * 4 + ["gamma"]
    assert reply.usage.attempts == 7


def test_policy_retry_count_applies_when_model_sets_none(stub, canary_env):
    stub.script("alpha", then=Status(500))
    executor = stub_executor(
        stub, {"alpha": {"max_retries": None}}, retry=RetryPolicy(transient_retries=4, base_delay=0.001)
    )
    with pytest.raises(StepError):
        executor.for_step("plan_1", "s").text(MESSAGES)
    assert len(stub.seen("alpha")) == 5


def test_retry_after_is_honoured(stub, canary_env):
    stub.script("alpha", Status(429, "slow down", {"Retry-After": "1"}), Reply(VALID))
    executor = stub_executor(stub, {"alpha": {}})

    executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)

    first, second = stub.seen("alpha")
    assert second.at - first.at >= 1.0
    assert rows_of(executor)[0]["response_metadata"]["retry_after"] == 1.0


def test_retry_after_ms_is_honoured(stub, canary_env):
    stub.script("alpha", Status(503, "busy", {"retry-after-ms": "300"}), Reply(VALID))
    executor = stub_executor(stub, {"alpha": {}})
    executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    first, second = stub.seen("alpha")
    assert 0.3 <= second.at - first.at < 2.0


def test_retry_after_longer_than_the_cap_moves_on(stub, canary_env):
    stub.script("alpha", then=Status(429, "come back tomorrow", {"Retry-After": "3600"}))
    stub.script("beta", Reply(VALID))
    executor = stub_executor(stub, {"alpha": {}, "beta": {}})
    started = time.monotonic()
    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    assert reply.usage.model_id == "beta" and len(stub.seen("alpha")) == 1
    assert time.monotonic() - started < 2


def test_backoff_grows_exponentially():
    import random

    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, jitter=0.0)
    rng = random.Random(0)
    assert [policy.backoff(n, None, rng) for n in (1, 2, 3, 4, 5)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    jittery = RetryPolicy(base_delay=0.1, max_delay=1.0, jitter=0.5)
    delays = [jittery.backoff(1, None, rng) for _ in range(50)]
    assert all(0.1 <= d <= 0.15 for d in delays) and len(set(delays)) > 1
    assert policy.backoff(1, 2.5, rng) == 2.5  # Retry-After wins when longer


def test_backoff_waits_between_transient_retries(stub, canary_env):
    stub.script("alpha", Status(500), Status(500), Reply(VALID))
    retry = RetryPolicy(transient_retries=2, base_delay=0.2, max_delay=1.0, jitter=0.0)
    executor = stub_executor(stub, {"alpha": {}}, retry=retry)
    executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    times = [r.at for r in stub.seen("alpha")]
    assert times[1] - times[0] >= 0.2
    assert times[2] - times[1] >= 0.4


def test_timeout_is_transient(stub, canary_env):
    stub.script("alpha", Hang(1.5), Reply(VALID))
    executor = stub_executor(stub, {"alpha": {"timeout": 0.3}})
    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    assert reply.usage.attempts == 2
    assert rows_of(executor)[0]["error_code"] == "timeout"


def test_connection_errors_are_retried_then_fail_over(stub, canary_env):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    stub.script("beta", Reply(VALID))
    executor = stub_executor(stub, {"dead": {"base_url": f"http://127.0.0.1:{dead_port}/v1"}, "beta": {}})
    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    assert reply.usage.model_id == "beta" and reply.usage.attempts == 4
    assert [r["error_code"] for r in rows_of(executor)][:3] == ["connection_error"] * 3


def test_dropped_connection_and_non_json_body_are_transient(stub, canary_env):
    stub.script("alpha", Drop(), Raw(b"<html><body>502 Bad Gateway</body></html>"), Reply(VALID))
    executor = stub_executor(stub, {"alpha": {}})
    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    assert reply.usage.attempts == 3
    assert [r["error_code"] for r in rows_of(executor)] == ["connection_error", "bad_response", None]


def test_broken_json_body_is_transient(stub, canary_env):
    stub.script("alpha", Raw(b'{"choices": [', content_type="application/json"), Reply(VALID))
    executor = stub_executor(stub, {"alpha": {}})
    assert executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport).usage.attempts == 2


# -- unusable replies -------------------------------------------------------------------------------


def test_non_json_reply_is_repaired_once_with_the_error_shown(stub, canary_env):
    stub.script("alpha", Reply("Sure! The risks are permits and staff."), Reply(VALID))
    executor = stub_executor(stub, {"alpha": {}})
    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    assert reply.usage.attempts == 2
    repair = stub.seen("alpha")[1].messages
    assert repair[: len(MESSAGES)] == MESSAGES
    assert repair[-2] == {"role": "assistant", "content": "Sure! The risks are permits and staff."}
    assert repair[-1]["role"] == "user" and "not JSON" in repair[-1]["content"]
    assert rows_of(executor)[0]["error_code"] == "invalid_json"
    assert rows_of(executor)[1]["prompt_metadata"]["repair_of"] == "invalid_json"


def test_schema_invalid_twice_fails_over(stub, canary_env):
    wrong = json.dumps({"summary": "x", "risks": [{"title": "Permits", "severity": "catastrophic"}]})
    stub.script("alpha", Reply(wrong), Reply(wrong))
    stub.script("beta", Reply(VALID))
    executor = stub_executor(stub, {"alpha": {}, "beta": {}})

    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)

    assert reply.usage.model_id == "beta"
    assert len(stub.seen("alpha")) == 2
    shown = stub.seen("alpha")[1].messages[-1]["content"]
    assert "risks.0.severity" in shown
    assert [r["error_code"] for r in rows_of(executor)] == ["schema_validation", "schema_validation", None]
    assert rows_of(executor)[0]["response_text"] == wrong


def test_json_in_code_fences_or_prose_is_accepted(stub, canary_env):
    stub.script("alpha", Reply(f"```json\n{VALID}\n```"), Reply(f"Here you go:\n{VALID}\nThanks."))
    llm = stub_executor(stub, {"alpha": {}}).for_step("plan_1", "s")
    assert llm.structured(MESSAGES, RiskReport).text == VALID
    assert llm.structured(MESSAGES, RiskReport).text == VALID


def test_truncated_reply_is_retried_with_more_tokens(stub, canary_env):
    stub.script("alpha", Reply(VALID[:20], finish_reason="length"), Reply(VALID))
    executor = stub_executor(stub, {"alpha": {"max_tokens": 500}})
    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    assert reply.usage.attempts == 2
    first, second = stub.seen("alpha")
    assert (first.body["max_tokens"], second.body["max_tokens"]) == (500, 1000)
    assert second.messages == MESSAGES
    assert rows_of(executor)[0]["error_code"] == "truncated"


def test_truncated_text_without_max_tokens_gets_a_budget(stub, canary_env):
    stub.script("alpha", Reply("# Cut", finish_reason="length"), Reply("# Whole"))
    executor = stub_executor(
        stub, {"alpha": {}}, retry=RetryPolicy(assumed_max_tokens=3000, base_delay=0.001)
    )
    assert executor.for_step("plan_1", "s").text(MESSAGES).text == "# Whole"
    assert "max_tokens" not in stub.seen("alpha")[0].body
    assert stub.seen("alpha")[1].body["max_tokens"] == 6000


def test_truncated_twice_fails_over(stub, canary_env):
    stub.script("alpha", then=Reply("{", finish_reason="length"))
    stub.script("beta", Reply(VALID))
    executor = stub_executor(stub, {"alpha": {"max_tokens": 100}, "beta": {}})
    assert executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport).usage.model_id == "beta"
    assert len(stub.seen("alpha")) == 2


def test_empty_reply_is_unusable(stub, canary_env):
    stub.script("alpha", Reply(None), Reply(""))
    stub.script("beta", Reply("fine"))
    executor = stub_executor(stub, {"alpha": {}, "beta": {}})
    assert executor.for_step("plan_1", "s").text(MESSAGES).text == "fine"
    assert [r["error_code"] for r in rows_of(executor)] == ["empty_reply", "empty_reply", None]


# -- structured output modes ------------------------------------------------------------------------


def test_llamacpp_rejection_downgrades_once_with_a_log_line(stub, canary_env, caplog):
    stub.behave_like_llamacpp("llama")
    stub.script("llama", then=Reply(VALID))
    executor = stub_executor(stub, {"llama": {}})
    llm = executor.for_step("plan_1", "s")

    with caplog.at_level(logging.WARNING, logger="planexe.llm"):
        llm.structured(MESSAGES, RiskReport)
        llm.structured(MESSAGES, RiskReport)

    modes = [r.response_format["type"] for r in stub.seen("llama")]
    assert modes == ["json_schema", "json_object", "json_object"]
    downgraded = stub.seen("llama")[1]
    assert downgraded.response_format["schema"]["properties"].keys() == {"summary", "risks"}
    assert "JSON schema" in downgraded.messages[0]["content"]  # the schema also travels in the prompt
    assert len(downgraded.messages) == len(MESSAGES)
    assert executor.structured_mode("llama") == "json_object"
    downgrade_lines = [r for r in caplog.records if "rejected structured output mode" in r.getMessage()]
    assert len(downgrade_lines) == 1
    assert rows_of(executor)[0]["error_message"].endswith(LLAMACPP_REJECTION)


def test_steps_starting_at_once_send_a_rejected_mode_once(stub, canary_env):
    """Real plan on llama.cpp: nine steps starting together each sent json_schema and each got a 500.
    One call probes an unanswered mode; the others wait for its verdict."""
    stub.behave_like_llamacpp("llama")
    stub.script("llama", then=Reply(VALID, delay=0.2))
    executor = stub_executor(stub, {"llama": {"max_in_flight": 8}})
    with ThreadPoolExecutor(6) as pool:
        calls = [
            pool.submit(executor.for_step("plan_1", f"step_{i}").structured, MESSAGES, RiskReport)
            for i in range(6)
        ]
        for call in calls:
            call.result()
    modes = [r.response_format["type"] for r in stub.seen("llama")]
    assert modes == ["json_schema"] + ["json_object"] * 6
    assert [r["status"] for r in rows_of(executor)].count("failed") == 1
    # Once answered, the mode is not probed again: calls go out together.
    stub.peak_in_flight = 0
    with ThreadPoolExecutor(4) as pool:
        llm = executor.for_step("plan_1", "s")
        for call in [pool.submit(llm.structured, MESSAGES, RiskReport) for _ in range(4)]:
            call.result()
    assert stub.peak_in_flight > 1


def test_json_object_rejection_downgrades_to_prompt(stub, canary_env):
    stub.script("picky", Status(400, "response_format is not supported by this model"), Reply(VALID))
    executor = stub_executor(stub, {"picky": {"structured_output": "json_object"}})
    executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    first, second = stub.seen("picky")
    assert first.response_format == {"type": "json_object", "schema": RiskReport.model_json_schema()}
    assert "response_format" not in second.body
    assert executor.structured_mode("picky") == "prompt"


def test_prompt_mode_puts_the_schema_in_the_system_message(stub, canary_env):
    stub.script("local", Reply(VALID))
    executor = stub_executor(stub, {"local": {"structured_output": "prompt"}})
    executor.for_step("plan_1", "s").structured([{"role": "user", "content": "Plan: x"}], RiskReport)
    [seen] = stub.seen("local")
    assert "response_format" not in seen.body
    assert seen.messages[0]["role"] == "system" and '"risks"' in seen.messages[0]["content"]
    assert seen.messages[1] == {"role": "user", "content": "Plan: x"}


def test_openai_class_gets_plain_json_object(stub, canary_env):
    stub.script("gpt", Reply(VALID))
    executor = stub_executor(stub, {"gpt": {"class": "OpenAI", "structured_output": "json_object"}})
    executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    [seen] = stub.seen("gpt")
    assert seen.response_format == {"type": "json_object"}
    assert "JSON" in seen.messages[0]["content"]  # OpenAI requires the word in the prompt


# -- all models fail, stop, limits ------------------------------------------------------------------


def test_all_models_failing_raises_step_error_naming_each(stub, canary_env):
    stub.script("alpha", then=Status(401, "bad key"))
    stub.script("beta", then=Status(503, "overloaded"))
    stub.script("gamma", then=Reply("not json at all"))
    executor = stub_executor(stub, {"alpha": {}, "beta": {"max_retries": 1}, "gamma": {}})

    with pytest.raises(StepError) as caught:
        executor.for_step("plan_9", "make_assumptions").structured(MESSAGES, RiskReport, label="assumptions")

    message = str(caught.value)
    assert "make_assumptions" in message and "'assumptions'" in message and "plan_9" in message
    host = stub.base_url.split("//", 1)[1].split("/", 1)[0]  # 127.0.0.1:PORT
    assert f"alpha (model alpha at {host}; 1 attempt, last error http_401: HTTP 401: bad key)" in message
    assert f"beta (model beta at {host}; 2 attempts, last error http_503: HTTP 503: overloaded)" in message
    assert f"gamma (model gamma at {host}; 2 attempts, last error invalid_json" in message
    assert canary_env not in message
    assert message.index("alpha") < message.index("beta") < message.index("gamma")
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_should_stop_before_any_attempt(stub, canary_env):
    executor = stub_executor(stub, {"alpha": {}})
    llm = executor.for_step("plan_1", "s", should_stop=lambda: True)
    with pytest.raises(PipelineStopRequested):
        llm.structured(MESSAGES, RiskReport)
    assert stub.seen() == [] and rows_of(executor) == []


def test_stop_during_backoff_is_not_retried_or_wrapped(stub, canary_env):
    stub.script("alpha", then=Status(429, "slow down", {"Retry-After": "3"}))
    stub.script("beta", Reply(VALID))
    stop = threading.Event()
    executor = stub_executor(stub, {"alpha": {}, "beta": {}})
    llm = executor.for_step("plan_1", "s", should_stop=stop.is_set)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(PipelineStopRequested):
        llm.structured(MESSAGES, RiskReport)
    assert time.monotonic() - started < 1.5
    assert len(stub.seen("alpha")) == 1 and stub.seen("beta") == []


def test_stop_raised_by_the_callback_propagates_unchanged(stub, canary_env):
    class Stop(PipelineStopRequested):
        pass

    def should_stop():
        raise Stop("user pressed stop")

    llm = stub_executor(stub, {"alpha": {}}).for_step("plan_1", "s", should_stop=should_stop)
    with pytest.raises(Stop, match="user pressed stop"):
        llm.text(MESSAGES)


def test_in_flight_limit_per_provider(stub, canary_env):
    stub.script("alpha", then=Reply(VALID, delay=0.15))
    executor = stub_executor(stub, {"alpha": {}}, in_flight=2)
    llm = executor.for_step("plan_1", "fanout")
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda _: llm.structured(MESSAGES, RiskReport), range(6)))
    assert len(replies) == 6 and len(llm.usage) == 6
    assert stub.peak_in_flight == 2
    assert executor.limiter.limits == {stub.base_url.rsplit("/v1", 1)[0]: 2}


def test_model_argument_sets_the_in_flight_limit_for_its_endpoint(stub, canary_env):
    stub.script("alpha", then=Reply(VALID, delay=0.1))
    executor = stub_executor(
        stub, {"alpha": {"max_in_flight": 3}, "beta": {"max_in_flight": 5}}, in_flight=10
    )
    llm = executor.for_step("plan_1", "fanout")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: llm.structured(MESSAGES, RiskReport), range(8)))
    assert stub.peak_in_flight == 3  # both models share one endpoint: the smaller limit wins


def test_missing_variable_at_call_time_fails_over(stub, monkeypatch):
    monkeypatch.setenv(KEY_VAR, "sk-temporary-value-123456")
    entries = stub_entries(stub, {"alpha": {}, "beta": {"api_key": "open-sesame"}})
    monkeypatch.delenv(KEY_VAR)
    stub.script("beta", Reply(VALID))
    executor = LLMExecutor(entries, recorder=MemoryRecorder(), retry=FAST_RETRY)
    reply = executor.for_step("plan_1", "s").structured(MESSAGES, RiskReport)
    assert reply.usage.model_id == "beta" and stub.seen("alpha") == []
    first = executor.recorder.rows[0]
    assert first["error_code"] == "missing_env" and KEY_VAR in first["error_message"]


def test_bad_messages_and_models_are_rejected_early(stub, canary_env):
    executor = stub_executor(stub, {"alpha": {}})
    llm = executor.for_step("plan_1", "s")
    with pytest.raises(ValueError):
        llm.text([])
    with pytest.raises(ValueError):
        llm.text([{"role": "tool", "content": "x"}])
    with pytest.raises(TypeError):
        llm.structured(MESSAGES, dict)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LLMExecutor([])
    with pytest.raises(TypeError):
        executor.for_step("plan_1", "s", should_stop="yes")  # type: ignore[arg-type]
    assert stub.seen() == []
