"""What real local servers do, replayed by the stub: context windows, loops, lenient JSON, a server that
goes away mid fan-out, a model that always answers 500. Each failure is classified (``FailureKind``)
and every attempt, sent or skipped, is recorded honestly."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, Field

from planexe_assets.core import STEP_BY_NAME, FailureKind, StepContext, StepError, combined_kind, failure_kind
from resources.llm import RetryPolicy
from resources.llm.breaker import CircuitBreaker
from resources.llm.budget import TokenEstimator, context_error, repeats_itself
from tests.llm.conftest import FAST_RETRY, stub_executor
from tests.llm.stub_server import Drop, EchoAuth, Reply, Status

# What llama-cpp-python's server answers when the prompt alone is longer than its --n_ctx (measured).
LLAMACPP_TOO_LONG = (
    "This model's maximum context length is 8192 tokens. However, you requested 9019 tokens "
    "(9009 in the messages, 10 in the completion). Please reduce the length of the messages or completion."
)


class Purpose(BaseModel):
    purpose: str
    topic: str


VALID = json.dumps({"purpose": "business", "topic": "bakery"})
SHORT = [{"role": "system", "content": "Classify the plan."}, {"role": "user", "content": "Open a bakery."}]


def long_messages(chars: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Classify the plan."},
        {"role": "user", "content": "word " * (chars // 5)},
    ]


def rows(executor) -> list[dict]:
    return executor.recorder.rows


def policy(**changes) -> RetryPolicy:
    from dataclasses import replace

    return replace(FAST_RETRY, **changes)


# -- lenient JSON (item 5) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        '{"purpose": "business", "topic": "a bakery\nin Lisbon"}',  # a raw newline inside a string
        'Sure! Here it is:\n```json\n{"purpose": "business",\n "topic": "a bakery\tin Lisbon"}\n```\nAnything else?',
        'The answer is {"purpose": "business", "topic": "a bakery {with braces}"} and that is all. {not json}',
        '```\n{"purpose": "business", "topic": "bakery"}\n```',
    ],
)
def test_raw_control_characters_fences_and_prose_are_accepted(stub, canary_env, reply):
    stub.script("local", Reply(reply))
    executor = stub_executor(stub, {"local": {}})
    result = executor.for_step("p", "identify_purpose").structured(SHORT, Purpose)
    assert result.value.purpose == "business"
    assert json.loads(result.text) == result.value.model_dump()  # strict JSON for later readers
    assert len(stub.seen("local")) == 1 and rows(executor)[0]["status"] == "completed"


def test_the_schema_is_still_enforced(stub, canary_env):
    stub.script("local", Reply('{"purpose": "business"}'), Reply('{"purpose": "business"}'))
    executor = stub_executor(stub, {"local": {}})
    with pytest.raises(StepError) as caught:
        executor.for_step("p", "identify_purpose").structured(SHORT, Purpose)
    assert caught.value.kind is FailureKind.CONTENT
    assert [r["error_code"] for r in rows(executor)] == ["schema_validation", "schema_validation"]
    assert {r["response_metadata"]["failure_kind"] for r in rows(executor)} == {"content"}


def test_a_json_array_is_not_taken_for_its_first_object(stub, canary_env):
    stub.script("local", then=Reply('[{"purpose": "business", "topic": "bakery"}]'))
    executor = stub_executor(stub, {"local": {}})
    with pytest.raises(StepError, match="expected a JSON object, got list"):
        executor.for_step("p", "identify_purpose").structured(SHORT, Purpose)


# -- context window (item 4) ---------------------------------------------------------------------


def test_max_tokens_is_what_the_window_leaves_after_the_prompt(stub, canary_env):
    stub.script("local", Reply(VALID), Reply(VALID))
    executor = stub_executor(stub, {"local": {"context_window": 4096, "max_tokens": 3000}})
    llm = executor.for_step("p", "s")
    llm.structured(SHORT, Purpose)  # short prompt: the model's own max_tokens is the bound
    llm.structured(long_messages(7000), Purpose)  # ~2000 tokens: the window is the bound
    first, second = (s.body["max_tokens"] for s in stub.seen("local"))
    assert first == 3000
    estimate = executor.tokens.estimate("local", stub.seen("local")[1].messages)
    assert second == 4096 - estimate.high and 1500 < second < 2300


def test_a_prompt_larger_than_the_window_fails_permanently_without_a_request(stub, canary_env):
    stub.script("local", then=Reply(VALID))
    executor = stub_executor(stub, {"local": {"context_window": 2048}})
    with pytest.raises(StepError) as caught:
        executor.for_step("p", "potential_levers").structured(long_messages(9000), Purpose)
    message = str(caught.value)
    assert caught.value.kind is FailureKind.PERMANENT and not caught.value.kind.recoverable
    assert "context window of model 'local' (2048 tokens)" in message and "about 25" in message
    assert stub.seen("local") == []
    [row] = rows(executor)
    assert (row["status"], row["error_code"], row["response_metadata"]) == (
        "skipped",
        "context_window",
        {"failure_kind": "permanent"},
    )
    assert executor.recorder.metrics == {}  # not an attempt: nothing added to plan_metrics


def test_http_400_naming_the_context_length_is_permanent_and_names_the_window(stub, canary_env):
    stub.script("local", then=Status(400, LLAMACPP_TOO_LONG))
    executor = stub_executor(stub, {"local": {"max_retries": 3}})
    with pytest.raises(StepError) as caught:
        executor.for_step("p", "review_plan").structured(SHORT, Purpose)
    assert caught.value.kind is FailureKind.PERMANENT
    assert "maximum context length is 8192 tokens" in str(caught.value) and "context_length" in str(
        caught.value
    )
    assert len(stub.seen("local")) == 1  # neither retried nor "retried with a larger max_tokens"
    [row] = rows(executor)
    assert row["error_code"] == "context_length"
    assert (
        row["response_metadata"]["context_window"] == 8192
        and row["response_metadata"]["prompt_tokens"] == 9009
    )
    assert executor.context_window(executor.models[0]) == 8192  # learned for the next calls


def test_http_400_when_only_max_tokens_was_too_large_is_resized_once(stub, canary_env):
    too_much = (
        "This model's maximum context length is 4096 tokens. However, you requested 6000 tokens "
        "(1000 in the messages, 5000 in the completion)."
    )
    stub.script("local", Status(400, too_much), Reply(VALID))
    executor = stub_executor(stub, {"local": {"max_tokens": 5000}})
    reply = executor.for_step("p", "s").structured(SHORT, Purpose)
    assert reply.value.purpose == "business"
    assert [s.body["max_tokens"] for s in stub.seen("local")] == [5000, 4096 - 1000 - 16]


def test_a_reply_the_server_cut_short_teaches_the_window_and_is_not_grown(stub, canary_env):
    # llama.cpp with a small --n_ctx: asked for 4000 tokens, it stops after what the window leaves.
    stub.script(
        "local",
        Reply(
            '{"purpose": "busi',
            finish_reason="length",
            prompt_tokens=1800,
            completion_tokens=248,
            cut_at_max_tokens=False,
        ),
        Reply(VALID, prompt_tokens=1800),
    )
    executor = stub_executor(stub, {"local": {"max_tokens": 4000}})
    llm = executor.for_step("p", "s")
    with pytest.raises(StepError) as caught:
        llm.structured(long_messages(6000), Purpose)
    assert caught.value.kind is FailureKind.CONTENT and "context window (about 2048 tokens)" in str(
        caught.value
    )
    assert len(stub.seen("local")) == 1  # not retried with max_tokens=8000: it could not help
    assert executor.context_window(executor.models[0]) == 2048
    llm.structured(SHORT, Purpose)
    assert stub.seen("local")[1].body["max_tokens"] < 2048  # sized to the learned window


def test_a_cut_off_reply_grows_only_up_to_the_window(stub, canary_env):
    stub.script(
        "local",
        Reply('{"purpose": "b', finish_reason="length"),
        Reply('{"purpose": "bu', finish_reason="length"),
    )
    executor = stub_executor(stub, {"local": {"max_tokens": 1000, "context_window": 1800}})
    with pytest.raises(StepError) as caught:
        executor.for_step("p", "s").structured(SHORT, Purpose)
    sent = [s.body["max_tokens"] for s in stub.seen("local")]
    assert sent[0] == 1000 and 1000 < sent[1] <= 1800 - executor.tokens.estimate("local", SHORT).high
    assert caught.value.kind is FailureKind.CONTENT


def test_reported_usage_corrects_the_estimate(stub, canary_env):
    messages = long_messages(4000)
    stub.script("local", Reply(VALID, prompt_tokens=2000))
    executor = stub_executor(stub, {"local": {"context_window": 8192}})
    before = executor.tokens.estimate("local", messages)
    executor.for_step("p", "s").structured(messages, Purpose)
    after = executor.tokens.estimate("local", stub.seen("local")[0].messages)
    assert not before.measured and after.measured
    assert after.low == pytest.approx(2000, rel=0.02)


def test_estimator_ignores_a_count_that_means_the_server_dropped_the_prompt():
    estimator = TokenEstimator()
    text = [{"role": "user", "content": "plan " * 4000}]
    assert estimator.observe("m", text, 800) is False  # 20000 characters cannot be 800 tokens
    assert estimator.ratio("m") == (estimator.default_ratio, False)


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, LLAMACPP_TOO_LONG, (8192, 9009)),
        (
            400,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens.",
            (128000, 130512),
        ),
        (400, "the request exceeds the available context size, try increasing it", (None, None)),
        (
            400,
            "Trying to keep the first 5000 tokens when context the overflows. However, the model is loaded with context length of only 4096 tokens",
            (4096, None),
        ),
        (400, "Invalid value for 'temperature'", None),
        (500, "'response_format' type should be 'text' or 'json_object'", None),
        (500, "llama_decode failed while the context was being shifted", None),
    ],
)
def test_context_errors_are_read_from_what_servers_say(status, message, expected):
    found = context_error(status, message)
    assert (None if found is None else (found.window, found.prompt_tokens)) == expected


# -- loops (item 3) ------------------------------------------------------------------------------


def test_sampling_settings_against_loops_reach_the_server(stub, canary_env):
    stub.script("local", Reply(VALID))
    executor = stub_executor(
        stub, {"local": {"frequency_penalty": 0.5, "presence_penalty": -0.25, "top_p": 0.9}}
    )
    executor.for_step("p", "s").structured(SHORT, Purpose)
    body = stub.seen("local")[0].body
    assert (body["frequency_penalty"], body["presence_penalty"], body["top_p"]) == (0.5, -0.25, 0.9)
    stub.script("plain", Reply(VALID))
    stub_executor(stub, {"plain": {}}).for_step("p", "s").structured(SHORT, Purpose)
    assert not {"frequency_penalty", "presence_penalty", "top_p"} & set(stub.seen("plain")[0].body)


def test_a_reply_that_loops_to_max_tokens_is_a_content_failure_sent_once(stub, canary_env):
    loop = '{"purpose": "business", "topic": "' + "the bakery sells bread and " * 60
    stub.script("local", then=Reply(loop, finish_reason="length"))
    executor = stub_executor(stub, {"local": {"max_tokens": 512}})
    with pytest.raises(StepError) as caught:
        executor.for_step("p", "s").structured(SHORT, Purpose)
    assert caught.value.kind is FailureKind.CONTENT and caught.value.kind.recoverable
    assert "repeats itself" in str(caught.value) and "max_tokens=512" in str(caught.value)
    assert len(stub.seen("local")) == 1  # a longer loop would not help
    assert rows(executor)[0]["error_code"] == "looping"


def test_repetition_detector():
    assert repeats_itself("intro " + "we bake bread every day. " * 20)
    assert repeats_itself("x" * 50 + "- item\n- item\n" * 30)
    assert not repeats_itself(
        "A long answer that goes on with new words every time, " + " ".join(str(i) for i in range(400))
    )
    assert not repeats_itself("short short short")


# -- classification of a whole call --------------------------------------------------------------


def test_call_kind_from_each_models_last_failure(stub, canary_env):
    stub.script("a", then=Status(401, "bad key"))
    stub.script("b", then=Status(404, "no such model"))
    stub.script("c", then=Status(503, "overloaded"))
    stub.script("d", then=Reply("not json at all"))
    llm = stub_executor(stub, {"a": {}, "b": {}}).for_step("p", "s")
    with pytest.raises(StepError) as caught:
        llm.structured(SHORT, Purpose)
    assert caught.value.kind is FailureKind.PERMANENT
    llm = stub_executor(stub, {"a": {}, "d": {}}).for_step("p", "s")
    with pytest.raises(StepError) as caught:
        llm.structured(SHORT, Purpose)
    assert caught.value.kind is FailureKind.CONTENT
    llm = stub_executor(stub, {"a": {}, "c": {"max_retries": 0}, "d": {}}).for_step("p", "s")
    with pytest.raises(StepError) as caught:
        llm.structured(SHORT, Purpose)
    assert caught.value.kind is FailureKind.TRANSIENT
    assert failure_kind(caught.value) is FailureKind.TRANSIENT
    assert combined_kind([]) is FailureKind.CONTENT


# -- the circuit breaker (item 6) -----------------------------------------------------------------


def fan_out_context(max_concurrency: int = 64) -> StepContext:
    return StepContext(
        plan_id="p",
        step=STEP_BY_NAME["wbs_level3"],
        llm=None,
        plan_created_at=datetime.now(UTC),
        max_concurrency=max_concurrency,
    )


def test_server_gone_mid_fan_out_opens_the_breaker_and_stops_the_fan_out(stub, canary_env):
    items = 40
    answered = {"n": 0}

    def answer_then_die(body):
        answered["n"] += 1
        if answered["n"] > 4:
            return Drop()  # a request that got in while it died
        if answered["n"] == 4:
            stub.go_away()  # the server dies after its fourth answer
        return Reply(VALID, prompt_tokens=30, completion_tokens=10)

    stub.script("local", then=answer_then_die)
    executor = stub_executor(
        stub, {"local": {"max_in_flight": 2, "max_retries": 3}}, retry=policy(breaker_failures=3)
    )
    llm = executor.for_step("p", "wbs_level3")
    with pytest.raises(StepError) as caught:
        fan_out_context().map_concurrent(
            lambda i: llm.structured(SHORT, Purpose, label=f"item {i}"), range(items)
        )
    assert caught.value.kind is FailureKind.TRANSIENT and "failed transiently" in str(caught.value)
    recorded = rows(executor)
    sent = [r for r in recorded if r["status"] != "skipped"]
    refused = [r for r in sent if r["error_code"] == "connection_error"]
    skipped = [r for r in recorded if r["status"] == "skipped"]
    # Three consecutive connection errors open the breaker; at most one more attempt per in-flight
    # slot was already on its way. Every other item is skipped, not sent.
    assert 3 <= len(refused) <= 3 + 2, [(r["status"], r["error_code"]) for r in recorded]
    assert len([r for r in sent if r["status"] == "completed"]) == 4
    assert all(
        r["error_code"] == "circuit_open" and "times in a row (last: connection_error" in r["error_message"]
        for r in skipped
    )
    assert len(sent) + len(skipped) <= items + 3 + 2
    assert executor.recorder.metrics["p"]["total_llm_calls"] == len(sent)  # skips are not calls


def test_sequential_fan_out_stops_at_the_first_outage(stub, canary_env):
    stub.script("local", then=Status(503, "down"))
    executor = stub_executor(stub, {"local": {"max_retries": 1}}, retry=policy(breaker_failures=100))
    llm = executor.for_step("p", "wbs_level3")
    calls = {"n": 0}

    def item(i):
        calls["n"] += 1
        return llm.structured(SHORT, Purpose)

    with pytest.raises(StepError, match="1 of 12 items failed transiently, 11 not started"):
        fan_out_context(max_concurrency=1).map_concurrent(item, range(12))
    assert calls["n"] == 1 and len(stub.seen("local")) == 2


def test_content_failures_in_a_fan_out_stay_per_item(stub, canary_env):
    stub.script(
        "local",
        then=lambda body: Reply("no json here") if "odd" in json.dumps(body["messages"]) else Reply(VALID),
    )
    executor = stub_executor(stub, {"local": {}})
    llm = executor.for_step("p", "wbs_level3")
    outcomes = fan_out_context().map_concurrent(
        lambda i: llm.structured(
            [*SHORT[:1], {"role": "user", "content": "odd" if i % 2 else "even"}], Purpose
        ),
        range(6),
    )
    assert [o.ok for o in outcomes] == [True, False] * 3
    assert all(failure_kind(o.error) is FailureKind.CONTENT for o in outcomes if not o.ok)


def test_a_model_that_always_answers_500_is_skipped_during_its_cool_down(stub, canary_env):
    stub.script("broken", then=Status(500, "model crashed"))
    stub.script("working", then=Reply(VALID))
    executor = stub_executor(
        stub,
        {"broken": {"max_retries": 1}, "working": {}},
        retry=policy(breaker_failures=3, breaker_cooldown=60.0),
    )
    llm = executor.for_step("p", "s")
    for _ in range(20):
        assert llm.structured(SHORT, Purpose).usage.model_id == "working"
    # Call 1 tries "broken" twice (1 + max_retries); its third failure, the first attempt of call 2,
    # opens the breaker, so call 2 moves on at once and calls 3-20 skip "broken" without a request.
    assert len(stub.seen("broken")) == 3
    assert len(stub.seen("working")) == 20
    skipped = [r for r in rows(executor) if r["status"] == "skipped"]
    assert len(skipped) == 18 and {r["llm_model"] for r in skipped} == {"broken"}
    assert all(r["error_code"] == "circuit_open" for r in skipped)
    assert llm.usage[-1].attempts == 1  # a skip is not an attempt
    assert executor.recorder.metrics["p"]["total_llm_calls"] == 3 + 20


def test_after_the_cool_down_one_probe_goes_out(stub, canary_env):
    stub.script(
        "broken", Status(500, "down"), Status(500, "down"), Status(500, "still down"), then=Reply(VALID)
    )
    stub.script("working", then=Reply(VALID))
    executor = stub_executor(
        stub,
        {"broken": {"max_retries": 0}, "working": {}},
        retry=policy(breaker_failures=2, breaker_cooldown=0.3),
    )
    llm = executor.for_step("p", "s")
    for _ in range(3):  # two failures open the breaker; the third call skips "broken"
        llm.structured(SHORT, Purpose)
    assert len(stub.seen("broken")) == 2
    time.sleep(0.35)
    assert llm.structured(SHORT, Purpose).usage.model_id == "working"  # the probe fails: open again
    assert len(stub.seen("broken")) == 3
    assert llm.structured(SHORT, Purpose).usage.model_id == "working"  # skipped: cool-down doubled
    assert len(stub.seen("broken")) == 3
    time.sleep(0.65)
    assert llm.structured(SHORT, Purpose).usage.model_id == "broken"  # the probe succeeds: closed
    assert llm.structured(SHORT, Purpose).usage.model_id == "broken"


def test_breaker_states_with_a_fake_clock():
    now = {"t": 0.0}
    breaker = CircuitBreaker("k", failures=2, cooldown=10, max_cooldown=25, clock=lambda: now["t"])
    assert breaker.admit() == (True, None)
    assert breaker.failure("connection_error") is False
    breaker.success()  # a success in between: the count starts again
    assert breaker.failure("connection_error") is False
    assert breaker.failure("connection_error") is True and breaker.is_open
    admitted, state = breaker.admit()
    assert not admitted and state.retry_in == 10 and state.failures == 2
    now["t"] = 10.0
    admitted, state = breaker.admit()
    assert admitted and state is not None  # the probe
    assert breaker.admit()[0] is False  # only one probe at a time
    assert breaker.failure("connection_error", probe=True) is True
    now["t"] = 29.9
    assert breaker.admit()[0] is False  # cool-down doubled to 20
    now["t"] = 30.0
    assert breaker.admit()[0] is True
    breaker.failure("connection_error", probe=True)
    now["t"] = 54.9
    assert breaker.admit()[0] is False  # capped at 25
    now["t"] = 55.0
    assert breaker.admit()[0] is True
    breaker.success()
    assert not breaker.is_open and breaker.admit() == (True, None)


def test_timeouts_and_rate_limits_do_not_open_the_breaker(stub, canary_env):
    stub.script("slow", then=Status(429, "slow down"))
    executor = stub_executor(stub, {"slow": {"max_retries": 4}}, retry=policy(breaker_failures=2))
    with pytest.raises(StepError) as caught:
        executor.for_step("p", "s").structured(SHORT, Purpose)
    assert caught.value.kind is FailureKind.TRANSIENT
    assert len(stub.seen("slow")) == 5 and not executor.breakers.get(executor.models[0].endpoint_key).is_open


def test_breaker_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("PLANEXE_LLM_BREAKER_FAILURES", "7")
    monkeypatch.setenv("PLANEXE_LLM_BREAKER_COOLDOWN", "12.5")
    assert (RetryPolicy().breaker_failures, RetryPolicy().breaker_cooldown) == (7, 12.5)
    monkeypatch.setenv("PLANEXE_LLM_BREAKER_FAILURES", "zero")
    with pytest.raises(ValueError, match="PLANEXE_LLM_BREAKER_FAILURES='zero' is not a whole number"):
        RetryPolicy()


def test_a_skipped_calls_reason_never_holds_the_key(stub, canary_env):
    """The breaker keeps the endpoint's last error for the rows of skipped calls; a server that quotes
    the Authorization header back in its 500 must not put the key there."""
    stub.script("leaky", then=EchoAuth(500))
    stub.script("working", then=Reply(VALID))
    executor = stub_executor(
        stub, {"leaky": {"max_retries": 0}, "working": {}}, retry=policy(breaker_failures=1)
    )
    llm = executor.for_step("p", "s")
    for _ in range(2):
        llm.structured(SHORT, Purpose)
    [skipped] = [r for r in rows(executor) if r["status"] == "skipped"]
    assert "[REDACTED]" in skipped["error_message"] and canary_env not in json.dumps(
        rows(executor), default=str
    )


# -- a call's own bound on its reply ---------------------------------------------------------------


def test_a_call_bounds_its_own_reply_below_the_models_max_tokens(stub, canary_env):
    stub.script("local", Reply(VALID), Reply(VALID), Reply(VALID))
    executor = stub_executor(stub, {"local": {"max_tokens": 3000, "context_window": 4096}})
    llm = executor.for_step("p1", "identify_purpose")
    llm.structured(SHORT, Purpose, max_tokens=200)
    llm.text(SHORT, max_tokens=5000)  # above the model's own: the model's wins
    llm.structured(SHORT, Purpose)
    assert [s.body["max_tokens"] for s in stub.seen("local")] == [200, 3000, 3000]
    assert [r["prompt_metadata"]["max_tokens"] for r in rows(executor)] == [200, 3000, 3000]


def test_a_reply_cut_off_at_the_calls_bound_is_not_grown(stub, canary_env):
    stub.script("local", Reply('{"purpose": "business", "topic": "a bakery that', finish_reason="length"))
    executor = stub_executor(stub, {"local": {"max_tokens": 3000}})
    with pytest.raises(StepError) as caught:
        executor.for_step("p1", "identify_purpose").structured(SHORT, Purpose, max_tokens=200)
    assert caught.value.kind is FailureKind.CONTENT
    assert "this call's own bound (200)" in str(caught.value)
    assert [s.body["max_tokens"] for s in stub.seen("local")] == [200]


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_a_calls_bound_must_be_a_positive_whole_number(stub, canary_env, bad):
    executor = stub_executor(stub, {"local": {}})
    with pytest.raises(ValueError, match="max_tokens"):
        executor.for_step("p1", "identify_purpose").text(SHORT, max_tokens=bad)
    assert stub.seen("local") == []


# -- what is kept of a reply that looped inside a JSON array -------------------------------------------


class Decision(BaseModel):
    lever_id: str
    classification: str


class Decisions(BaseModel):
    decisions: list[Decision]


def _decision(n: int) -> str:
    return json.dumps({"lever_id": f"lever-{n}", "classification": "keep"})


def test_a_looping_array_keeps_its_complete_items(stub, canary_env):
    """What Gemma 3 270M sent for deduplicate_levers, in short: good items, then one item repeated
    until max_tokens. The complete items are kept; the repeats and the cut-off item are dropped."""
    loop = (
        '{ "decisions": [ '
        + ", ".join([_decision(1), _decision(2), *[_decision(3)] * 30])
        + ', {"lever_id": "lev'
    )
    stub.script("local", Reply(loop, finish_reason="length"))
    executor = stub_executor(stub, {"local": {"max_tokens": 512}})
    reply = executor.for_step("p", "deduplicate_levers").structured(SHORT, Decisions)
    assert [d.lever_id for d in reply.value.decisions] == ["lever-1", "lever-2", "lever-3"]
    assert json.loads(reply.text) == reply.value.model_dump()
    assert len(stub.seen("local")) == 1
    [row] = rows(executor)
    assert row["status"] == "completed" and row["response_metadata"]["finish_reason"] == "length"
    assert "29 repeated item(s) dropped" in row["response_metadata"]["salvaged"]


def test_a_looping_reply_whose_complete_part_fails_the_schema_still_fails(stub, canary_env):
    # The loop is inside a string of a required field: no array item is complete, nothing is kept.
    loop = '{"purpose": "business", "topic": "' + "the bakery sells bread and " * 60
    stub.script("local", Reply(loop, finish_reason="length"))
    executor = stub_executor(stub, {"local": {"max_tokens": 512}})
    with pytest.raises(StepError, match="repeats itself"):
        executor.for_step("p", "s").structured(SHORT, Purpose)

    # An array loop of items that fail the schema, before a required field that never came.
    class Later(BaseModel):
        items: list[int]
        summary: str

    stub.script("local", Reply('{"items": [' + '"x", ' * 200, finish_reason="length"))
    with pytest.raises(StepError, match="repeats itself"):
        executor.for_step("p", "s").structured(SHORT, Later)
    assert [r["status"] for r in rows(executor)] == ["failed", "failed"]
    assert len(stub.seen("local")) == 2  # no second call for the rest: the part it has is wrong


class Assessments(BaseModel):
    decisions: list[Decision]
    summary: str = Field(description="What the decisions add up to.")


def test_a_loop_before_a_required_field_gets_the_rest_in_a_second_call(stub, canary_env):
    """What Gemma 3 270M sent for focus_on_vital_few_levers: an assessment list that loops until
    max_tokens, so the required ``summary`` after it never came. The complete items are kept and a
    short second call, shown them, writes only ``summary``."""
    loop = '{ "decisions": [ ' + ", ".join([_decision(1), *[_decision(2)] * 30]) + ', {"lever_id'
    stub.script(
        "local",
        Reply(loop, finish_reason="length", prompt_tokens=40),
        Reply('{"summary": "Keep both."}', prompt_tokens=90, completion_tokens=6),
    )
    executor = stub_executor(stub, {"local": {"max_tokens": 512}})
    reply = executor.for_step("p", "focus_on_vital_few_levers").structured(SHORT, Assessments, label="vital")
    assert [d.lever_id for d in reply.value.decisions] == ["lever-1", "lever-2"]
    assert reply.value.summary == "Keep both."
    assert json.loads(reply.text) == reply.value.model_dump()
    assert reply.usage.attempts == 2 and reply.usage.input_tokens == 130
    first, second = stub.seen("local")
    assert second.response_format["json_schema"]["schema"]["properties"].keys() == {"summary"}
    assert second.messages[: len(first.messages)] == first.messages
    shown, asked = second.messages[-2:]
    assert (
        shown["role"] == "assistant" and json.loads(shown["content"])["decisions"][1]["lever_id"] == "lever-2"
    )
    assert asked["role"] == "user" and '"summary"' in asked["content"]
    cut, rest = rows(executor)
    assert (cut["status"], cut["error_code"]) == ("failed", "looping")
    assert (rest["status"], rest["prompt_metadata"]["label"]) == ("completed", "vital: rest")

    # When the second call fails too, the call fails as the loop did.
    stub.script("local", Reply(loop, finish_reason="length"), Reply("not json at all"), Reply("still not"))
    with pytest.raises(StepError, match="repeats itself"):
        executor.for_step("p", "focus_on_vital_few_levers").structured(SHORT, Assessments)


def test_a_reply_cut_off_only_by_max_tokens_is_grown_not_salvaged(stub, canary_env):
    cut = '{ "decisions": [ ' + ", ".join(_decision(n) for n in range(1, 4)) + ', { "lever_id": "lev'
    whole = '{ "decisions": [ ' + ", ".join(_decision(n) for n in range(1, 6)) + "]}"
    stub.script("local", Reply(cut, finish_reason="length"), Reply(whole))
    executor = stub_executor(stub, {"local": {"max_tokens": 300}})
    reply = executor.for_step("p", "s").structured(SHORT, Decisions)
    assert len(reply.value.decisions) == 5
    assert [s.body["max_tokens"] for s in stub.seen("local")] == [300, 600]


def test_complete_prefixes_close_what_is_open():
    from resources.llm.salvage import complete_prefixes, drop_repeated_items

    text = 'Here: {"a": [1, "x, ]", {"b": [true, null]} , {"c": "unfinished'
    assert list(complete_prefixes(text)) == [
        '{"a": [1, "x, ]", {"b": [true, null]}]}',
        '{"a": [1, "x, ]", {"b": [true]}]}',
        '{"a": [1, "x, ]"]}',
        '{"a": [1]}',
    ]
    assert list(complete_prefixes('{"a": [1, 2]}')) == []  # complete: nothing to salvage
    assert list(complete_prefixes("no json")) == []
    assert drop_repeated_items({"a": [1, 1, {"b": [2, 2]}, {"b": [2, 2]}]}) == ({"a": [1, {"b": [2]}]}, 4)


def test_after_a_timeout_the_retry_waits_longer(stub, canary_env):
    """A local server that needs longer than the timeout (or is still finishing the abandoned request)
    gets a longer timeout on the retry, up to four times the model's, instead of the same, hopeless one."""
    stub.script("local", Reply(VALID, delay=1.5), Reply(VALID, delay=1.5), Reply(VALID, delay=1.0))
    executor = stub_executor(stub, {"local": {"timeout": 0.5, "max_retries": 3}})
    reply = executor.for_step("p", "s").structured(SHORT, Purpose)
    assert reply.value.topic == "bakery"
    sent = [(r["status"], r["error_code"], r["prompt_metadata"]["timeout"]) for r in rows(executor)]
    assert sent == [("failed", "timeout", 0.5), ("failed", "timeout", 1.0), ("completed", None, 2.0)]


def test_a_loop_that_counts_up_is_a_loop_and_keeps_its_items(stub, canary_env):
    """Gemma 3 270M's physical_locations reply: the schema's own descriptions copied into item after
    item, only item_index counting up, until max_tokens (2048; 1024 first, "grown" once)."""
    item = (
        '{{"item_index": {n}, "physical_location_broad": "Country or wide region of the candidate", '
        '"physical_location_detailed": "Narrower area within the broad one"}}'
    )
    loop = '{"places": [' + ", ".join(item.format(n=n) for n in range(1, 26)) + ', {"item_index": 26, "phys'
    assert repeats_itself(loop)

    class Place(BaseModel):
        item_index: int
        physical_location_broad: str

    class Places(BaseModel):
        places: list[Place]

    stub.script("local", Reply(loop, finish_reason="length"))
    executor = stub_executor(stub, {"local": {"max_tokens": 1024}})
    reply = executor.for_step("p", "physical_locations").structured(SHORT, Places)
    assert [p.item_index for p in reply.value.places] == list(range(1, 26))
    assert len(stub.seen("local")) == 1  # not resent with max_tokens=2048 to loop for longer


# -- a slow model's timeout follows the reply it is asked for -----------------------------------------


def test_a_request_for_more_tokens_than_a_slow_model_writes_in_its_timeout_gets_longer(stub, canary_env):
    """Real plan on llama.cpp: a reply cut off at 1024 tokens was sent again for 2048 and timed out
    at 300 s while the server, writing about 6 tokens/s, went on with the abandoned reply. The model's
    observed speed sizes the timeout of a large request (up to the growth cap)."""
    stub.script(
        "slow",
        Reply("one", completion_tokens=100, delay=0.4),
        Reply("two", completion_tokens=100, delay=0.4),
        Reply("three"),
        Reply("four"),
    )
    executor = stub_executor(stub, {"slow": {"timeout": 2.0, "max_tokens": 64}})
    llm = executor.for_step("p", "s")
    llm.text(SHORT)
    llm.text(SHORT)  # two replies: about 250 tokens/s or a little less
    rate = executor.throughput.tokens_per_second("slow")
    assert 150 < rate <= 250
    llm.text(SHORT)  # 64 tokens need well under 2 s: the model's own timeout
    llm.text(SHORT, max_tokens=32)
    assert [r["prompt_metadata"]["timeout"] for r in rows(executor)] == [2.0] * 4

    # A request for 1000 tokens: 1000 / rate * 1.5 is past the 2 s timeout, and within 4 x 2 s.
    wide = stub_executor(stub, {"slow": {"timeout": 2.0, "max_tokens": 1000}})
    wide.throughput = executor.throughput
    stub.script("slow", Reply("six"))
    wide.for_step("p", "s").text(SHORT)
    [row] = rows(wide)
    assert row["prompt_metadata"]["timeout"] == pytest.approx(min(8.0, 1000 / rate * 1.5))
    assert row["prompt_metadata"]["timeout"] > 2.0
