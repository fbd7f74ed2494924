"""The offline provider: deterministic, schema-valid, clearly marked, through the normal executor path."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import itertools
import json
import uuid
from typing import Annotated, Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, create_model

from resources.llm import MemoryRecorder, OfflineProvider, ProviderRequest, load_llm_config, resolve_models
from resources.llm.executor import LLMExecutor, _schema_of
from resources.llm.offline import MARKER, SchemaFaker, offline_json

OFFLINE = resolve_models(load_llm_config(), "offline")
MESSAGES = [
    {"role": "system", "content": "Make a plan."},
    {"role": "user", "content": "Plan: a community garden."},
]


def offline_answer(model: type[BaseModel], seed: int) -> str:
    return offline_json(_schema_of(model), seed)


def strings_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_of(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return []


# -- hand-written models covering every schema feature ----------------------------------------------


class Severity(enum.StrEnum):
    LOW = "low"
    HIGH = "high"


class Level(enum.IntEnum):
    ONE = 1
    TWO = 2


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=3, max_length=40)
    duration_days: int = Field(ge=1, le=30)
    tags: set[str]
    subtasks: list[Task] = Field(default_factory=list)


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=1, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Everything(BaseModel):
    summary: str
    severity: Severity
    level: Level
    verdict: Literal["go", "no-go"]
    fixed: Literal["always"]
    owner: str | None = None
    task: Task | None = None
    tasks: list[Task] = Field(min_length=2, max_length=4)
    budget_by_phase: dict[str, float]
    counts: dict[str, list[int]]
    pair: tuple[int, str]
    starts_at: dt.datetime
    due: dt.date
    id: uuid.UUID
    amount: decimal.Decimal
    probability: float = Field(gt=0, lt=1)
    step: int = Field(multiple_of=5, ge=7, le=30)
    half: float = Field(multiple_of=0.5, ge=1, le=3)
    code: str = Field(pattern=r"^[A-Z]{3}-\d{2}$")
    either: int | str
    pet: Cat | Dog = Field(discriminator="kind")
    year: int = Field(gt=2000)
    notes: Annotated[list[Annotated[str, Field(max_length=12)]], Field(max_length=2)]
    anything: Any = None


@pytest.mark.parametrize("seed", range(40))
def test_hand_written_models_are_valid(seed):
    for model in (Everything, Task, Cat):
        value = model.model_validate_json(offline_answer(model, seed))
        assert isinstance(value, model)


def test_plain_strings_are_marked_offline():
    data = json.loads(offline_answer(Everything, 3))
    assert data["summary"].startswith(MARKER + " ")
    assert all(t["title"].startswith("[off") for t in data["tasks"])  # 40 chars leave room for the marker
    assert data["code"][3] == "-"  # a pattern wins over the marker
    assert dt.datetime.fromisoformat(data["starts_at"].replace("Z", "+00:00"))


def test_plausible_lengths():
    data = json.loads(offline_answer(Everything, 5))
    assert 2 <= len(data["tasks"]) <= 4
    assert len(data["summary"].split()) >= 10  # long-form field: several sentences
    long_text = json.loads(
        offline_json(
            {"type": "object", "properties": {"description": {"type": "string"}, "name": {"type": "string"}}},
            1,
        )
    )
    assert len(long_text["description"]) > 2 * len(long_text["name"])


def test_recursion_terminates():
    for seed in range(20):
        task = Task.model_validate_json(offline_answer(Task, seed))
        depth = 0
        level = [task]
        while level:
            depth += 1
            level = [s for t in level for s in t.subtasks]
        assert depth <= 6


def test_same_seed_same_answer_different_seed_differs():
    assert offline_answer(Everything, 11) == offline_answer(Everything, 11)
    assert len({offline_answer(Everything, seed) for seed in range(10)}) == 10


def test_impossible_schema_is_reported():
    with pytest.raises(ValueError, match="no multiple of 7"):
        SchemaFaker(
            {"type": "integer", "minimum": 1, "maximum": 6, "multipleOf": 7}, __import__("random").Random(0)
        ).value()


# -- generated models -------------------------------------------------------------------------------

_names = itertools.count()
FIELD_NAMES = [
    "summary",
    "title",
    "name",
    "description",
    "count",
    "score",
    "items",
    "notes",
    "owner",
    "year",
    "probability",
    "budget",
    "status",
    "reasoning",
    "value",
    "risks",
    "phases",
]


def _unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


@st.composite
def bounded_int(draw):
    low = draw(st.integers(-50, 50))
    high = low + draw(st.integers(2, 100))
    exclusive = draw(st.booleans())
    return Annotated[int, Field(gt=low, lt=high)] if exclusive else Annotated[int, Field(ge=low, le=high)]


@st.composite
def bounded_float(draw):
    low = draw(st.floats(-1000, 1000, allow_nan=False))
    high = low + draw(st.floats(0.01, 1000, allow_nan=False))
    if draw(st.booleans()):
        return Annotated[float, Field(gt=low, lt=high)]
    return Annotated[float, Field(ge=low, le=high)]


@st.composite
def bounded_str(draw):
    low = draw(st.integers(0, 30))
    high = low + draw(st.integers(0, 60))
    return Annotated[str, Field(min_length=low, max_length=high)]


@st.composite
def literal_type(draw):
    options = draw(
        st.lists(
            st.sampled_from(["alpha", "beta", "gamma", "delta", "x y", "é"]),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    return Literal[tuple(options)]


@st.composite
def enum_type(draw):
    members = draw(
        st.lists(st.sampled_from(["red", "green", "blue", "amber"]), min_size=1, max_size=4, unique=True)
    )
    return enum.Enum(_unique("Color"), {m.upper(): m for m in members}, type=str)


LEAVES = st.one_of(
    st.sampled_from([str, int, float, bool, dt.date, dt.datetime, uuid.UUID]),
    bounded_int(),
    bounded_float(),
    bounded_str(),
    literal_type(),
    enum_type(),
)


@st.composite
def list_of(draw, children):
    inner = draw(children)
    low = draw(st.integers(0, 3))
    high = low + draw(st.integers(0, 4))
    return Annotated[list[inner], Field(min_length=low, max_length=high)]


@st.composite
def model_of(draw, children):
    types = draw(st.lists(children, min_size=1, max_size=5))
    names = draw(
        st.lists(st.sampled_from(FIELD_NAMES), min_size=len(types), max_size=len(types), unique=True)
    )
    fields = {name: (t, ...) for name, t in zip(names, types, strict=True)}
    return create_model(_unique("Generated"), **fields)


TYPES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        children.map(lambda t: t | None),
        list_of(children),
        children.map(lambda t: dict[str, t]),
        model_of(children),
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=model_of(TYPES), seed=st.integers(0, 2**32))
def test_generated_models_get_valid_deterministic_answers(model, seed):
    text = offline_answer(model, seed)
    model.model_validate_json(text)
    assert offline_answer(model, seed) == text


# -- through the executor ---------------------------------------------------------------------------


class Plan(BaseModel):
    goal: str
    steps: list[Task] = Field(min_length=1, max_length=3)
    verdict: Literal["go", "no-go"]


def test_offline_goes_through_the_executor_and_is_recorded():
    recorder = MemoryRecorder()
    llm = LLMExecutor(OFFLINE, recorder=recorder).for_step("plan_off", "make_plan")
    first = llm.structured(MESSAGES, Plan, label="plan")
    again = LLMExecutor(OFFLINE).for_step("plan_off", "make_plan").structured(MESSAGES, Plan, label="plan")
    assert first.value == again.value and first.text == again.text
    assert first.value.goal.startswith(MARKER)
    assert (
        first.usage.model_id == "offline" and first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    )

    markdown = llm.text(MESSAGES, label="report")
    assert markdown.text.startswith("# " + MARKER)
    assert markdown.text == LLMExecutor(OFFLINE).for_step("p", "s").text(MESSAGES).text

    [structured_row, text_row] = recorder.rows
    assert structured_row["llm_model"] == "offline" and structured_row["status"] == "completed"
    assert structured_row["prompt_metadata"]["response_model"] == "Plan"
    assert structured_row["response_text"] == first.text
    assert structured_row["total_tokens"] == first.usage.total_tokens
    assert text_row["prompt_metadata"]["kind"] == "text"
    assert recorder.metrics["plan_off"]["total_llm_calls"] == 2


def test_offline_answer_depends_on_the_request():
    provider = OfflineProvider(OFFLINE[0])
    schema = _schema_of(Plan)
    one = provider.complete(ProviderRequest(MESSAGES, schema, "Plan", "json_schema"))
    same = provider.complete(ProviderRequest(list(MESSAGES), schema, "Plan", "json_schema"))
    other = provider.complete(
        ProviderRequest(
            [*MESSAGES[:1], {"role": "user", "content": "Plan: a bakery."}], schema, "Plan", "json_schema"
        )
    )
    assert one.text == same.text and one.text != other.text
    assert one.finish_reason == "stop" and one.total_tokens == one.input_tokens + one.output_tokens
    assert all(s.startswith(MARKER) or not s.startswith("[") for s in strings_of(json.loads(one.text)))


def test_list_sizes_override_named_lists_within_schema_bounds():
    import random

    schema = {
        "type": "object",
        "properties": {
            "phases": {"type": "array", "items": {"type": "string"}},
            "capped": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "other": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["phases", "capped", "other"],
    }
    for seed in range(20):
        value = json.loads(offline_json(schema, seed, list_sizes={"phases": (9, 11), "capped": (9, 11)}))
        assert 9 <= len(value["phases"]) <= 11
        assert len(value["capped"]) == 3  # the schema's maxItems still wins
        assert len(value["other"]) <= 6  # lists not named keep the default sizes
    with pytest.raises(ValueError, match="list size"):
        SchemaFaker(schema, random.Random(0), list_sizes={"phases": (5, 2)})


def test_offline_plans_pass_the_gates_and_vary_elsewhere():
    """About half of the offline plans showed an UNUSABLE banner (the screening verdict was a coin
    toss); the gates' verdicts are their passing values, other enums still vary."""
    from planexe_assets.steps.diagnostics import Verdict
    from planexe_assets.steps.screening import PromptScreeningResult, ScreeningConfidence

    confidences = set()
    for seed in range(40):
        screening = PromptScreeningResult.model_validate_json(
            offline_json(_schema_of(PromptScreeningResult), seed)
        )
        assert (screening.verdict.value, screening.reason.value) == ("USABLE", "usable")
        confidences.add(screening.confidence)
    assert confidences == set(ScreeningConfidence)

    class Gate(BaseModel):
        verdict: Verdict

    assert {json.loads(offline_json(_schema_of(Gate), seed))["verdict"] for seed in range(20)} == {"ALLOW"}
