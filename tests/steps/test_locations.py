"""physical_locations, currency_strategy and identify_risks against the recorded real PlanExe runs."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps.locations import (
    CurrencyStrategy,
    IdentifiedRisks,
    LowMediumHigh,
    PhysicalLocations,
    render_currency_strategy,
    render_identify_risks,
    render_physical_locations,
    run_currency_strategy,
    run_identify_risks,
    run_physical_locations,
)
from tests.support.replay import (
    ReplayLLM,
    all_strings,
    context_for,
    inputs_from_run,
    load_run_file,
    load_run_json,
    norm,
)

RUNS = ["20250321_silo", "20260310_hong_kong_game"]

# step -> (recorded raw file, response model, renderer, step function)
STEPS = {
    "physical_locations": (
        step_file("physical_locations", "raw"),
        PhysicalLocations,
        render_physical_locations,
        run_physical_locations,
    ),
    "currency_strategy": (
        step_file("currency_strategy", "raw"),
        CurrencyStrategy,
        render_currency_strategy,
        run_currency_strategy,
    ),
    "identify_risks": (
        step_file("identify_risks", "raw"),
        IdentifiedRisks,
        render_identify_risks,
        run_identify_risks,
    ),
}


def recorded_answer(run: str, step: str) -> dict:
    """The recorded real model answer: the raw file without PlanExe's bookkeeping keys."""
    raw = load_run_json(run, STEPS[step][0])
    return {k: v for k, v in raw.items() if k not in ("metadata", "system_prompt", "user_prompt")}


def with_file(inputs: StepInputs, key: str, filename: str, text: str | None) -> StepInputs:
    """A copy of ``inputs`` with one upstream file replaced (or removed when ``text`` is None)."""
    by_key = {k: inputs[k] for k in inputs}
    contents = dict(by_key[key].contents)
    if text is None:
        contents.pop(filename, None)
    else:
        contents[filename] = text
    by_key[key] = UpstreamFiles(step=by_key[key].step, contents=contents)
    return StepInputs(by_key)


# ---------------------------------------------------------------------------------------------------
# Response models and renderers against both recorded runs
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("step", sorted(STEPS))
def test_response_model_parses_recorded_output(run: str, step: str) -> None:
    model: type[BaseModel] = STEPS[step][1]
    value = model.model_validate(recorded_answer(run, step))
    assert value.model_dump(mode="json") == recorded_answer(run, step)


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("step", sorted(STEPS))
def test_renderer_keeps_every_string(run: str, step: str) -> None:
    _, model, render, _ = STEPS[step]
    value = model.model_validate(recorded_answer(run, step))
    markdown = norm(render(value))
    missing = [s for s in all_strings(value.model_dump(mode="json")) if norm(s) not in markdown]
    assert missing == []


def test_risk_bands_accept_capitalised_values_but_not_unknown_ones() -> None:
    risk = recorded_answer("20250321_silo", "identify_risks")["risks"][0]
    parsed = IdentifiedRisks.model_validate(
        {"risks": [{**risk, "likelihood": "High", "severity": " LOW "}], "risk_assessment_summary": "s"}
    )
    assert parsed.risks[0].likelihood is LowMediumHigh.HIGH
    assert parsed.risks[0].severity is LowMediumHigh.LOW
    with pytest.raises(ValidationError):
        IdentifiedRisks.model_validate(
            {"risks": [{**risk, "likelihood": "extreme"}], "risk_assessment_summary": "s"}
        )


def test_currency_render_without_money() -> None:
    markdown = render_currency_strategy(CurrencyStrategy(money_involved=False, currency_list=[]))
    assert "involves no money" in markdown
    assert "_none named_" in markdown
    assert "_No strategy given._" in markdown


# ---------------------------------------------------------------------------------------------------
# The step functions, replaying the recorded real answers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("step", sorted(STEPS))
def test_step_replays_recorded_answer(run: str, step: str) -> None:
    _, model, render, fn = STEPS[step]
    llm = ReplayLLM(answers=[recorded_answer(run, step)])
    ctx = context_for(step, llm, run=run)
    result = fn(ctx, inputs_from_run(step, run))

    result.check_against(STEP_BY_NAME[step])
    assert len(llm.calls) == 1
    raw_name, md_name = STEP_BY_NAME[step].outputs["raw"], STEP_BY_NAME[step].outputs["markdown"]
    raw = json.loads(result.files[raw_name])
    assert set(raw) >= {"metadata", "system_prompt", "user_prompt"}
    assert raw["metadata"]["llm_model"] == "replay"
    value = model.model_validate({k: v for k, v in raw.items() if k in model.model_fields})
    assert value.model_dump(mode="json") == recorded_answer(run, step)
    assert result.files[md_name] == render(value)

    # The plan and the upstream documents travel as data in the user turn only.
    system, user = llm.calls[0]["messages"]
    plan = load_run_file(run, step_file("setup")).strip()
    assert system["role"] == "system" and user["role"] == "user"
    assert plan in user["content"] and plan not in system["content"]
    for name in ("plan.txt", "purpose.md", "plan_type.md", "strategic_decisions.md", "scenarios.md"):
        assert f"File '{name}':" in user["content"]
    assert raw["user_prompt"] == user["content"] and raw["system_prompt"] == system["content"]
    if step in ("currency_strategy", "identify_risks"):
        assert load_run_file(run, step_file("physical_locations", "markdown")).strip() in user["content"]
    if step == "identify_risks":
        assert load_run_file(run, step_file("currency_strategy", "markdown")).strip() in user["content"]


def test_physical_locations_renumbers_item_index() -> None:
    answer = recorded_answer("20250321_silo", "physical_locations")
    for item in answer["physical_locations"]:
        item["item_index"] = 7
    llm = ReplayLLM(answers=[answer])
    ctx = context_for("physical_locations", llm, run="20250321_silo")
    result = run_physical_locations(ctx, inputs_from_run("physical_locations", "20250321_silo"))
    raw = json.loads(result.files[step_file("physical_locations", "raw")])
    assert [i["item_index"] for i in raw["physical_locations"]] == [1, 2, 3]


def test_physical_locations_skips_the_model_for_a_digital_plan() -> None:
    inputs = with_file(
        inputs_from_run("physical_locations", "20250321_silo"),
        "plan_type",
        step_file("plan_type", "raw"),
        json.dumps({"explanation": "Everything happens in software.", "plan_type": "digital"}),
    )
    llm = ReplayLLM(answers=[])
    result = run_physical_locations(context_for("physical_locations", llm, run="20250321_silo"), inputs)

    result.check_against(STEP_BY_NAME["physical_locations"])
    assert llm.calls == []
    raw = json.loads(result.files[step_file("physical_locations", "raw")])
    assert raw["physical_locations"] == [] and raw["has_location_in_plan"] is False
    assert raw["metadata"]["llm_call_skipped"] is True
    markdown = result.files[step_file("physical_locations", "markdown")]
    assert "purely digital" in markdown and "Everything happens in software." in markdown
    assert result.notes["llm_calls"] == 0


@pytest.mark.parametrize(
    "plan_type_file",
    [
        "{not json",
        json.dumps(["physical"]),
        json.dumps({"plan_type": "hybrid"}),
        json.dumps({"explanation": "x"}),
    ],
)
def test_physical_locations_rejects_bad_plan_type(plan_type_file: str) -> None:
    inputs = with_file(
        inputs_from_run("physical_locations", "20250321_silo"),
        "plan_type",
        step_file("plan_type", "raw"),
        plan_type_file,
    )
    llm = ReplayLLM(answers=[])
    with pytest.raises(StepError, match=step_file("plan_type", "raw")):
        run_physical_locations(context_for("physical_locations", llm, run="20250321_silo"), inputs)
    assert llm.calls == []


@pytest.mark.parametrize("text", ["", None])
def test_currency_strategy_requires_the_locations_document(text: str | None) -> None:
    inputs = with_file(
        inputs_from_run("currency_strategy", "20260310_hong_kong_game"),
        "physical_locations",
        step_file("physical_locations", "markdown"),
        text,
    )
    llm = ReplayLLM(answers=[])
    with pytest.raises(StepError, match=step_file("physical_locations", "markdown")):
        run_currency_strategy(context_for("currency_strategy", llm, run="20260310_hong_kong_game"), inputs)
    assert llm.calls == []


def test_identify_risks_fails_when_the_model_fails() -> None:
    def responder(messages, response_model, label):
        raise StepError("identify_risks: every model failed")

    llm = ReplayLLM(responder=responder)
    with pytest.raises(StepError, match="every model failed"):
        run_identify_risks(
            context_for("identify_risks", llm, run="20250321_silo"),
            inputs_from_run("identify_risks", "20250321_silo"),
        )
