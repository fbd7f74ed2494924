"""data_collection: response model, renderer and step, replayed against two recorded PlanExe runs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.data_collection import (
    DataCollectionPlan,
    SensitivityScore,
    render_data_collection,
)
from tests.support.replay import ReplayLLM, all_strings, context_for, inputs_from_run, load_run_json
from tests.support.replay import norm as _norm

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
RAW = step_file("data_collection", "raw")
MARKDOWN = step_file("data_collection", "markdown")


@pytest.mark.parametrize("run", RUNS)
def test_model_parses_recorded_output(run):
    raw = load_run_json(run, RAW)
    plan = DataCollectionPlan.model_validate(raw)
    assert len(plan.data_collection_list) == len(raw["data_collection_list"]) >= 4
    first = plan.data_collection_list[0]
    assert first.title == raw["data_collection_list"][0]["title"]
    assert all(
        isinstance(a.sensitivity_score, SensitivityScore)
        for i in plan.data_collection_list
        for a in i.assumptions
    )


def test_sensitivity_is_case_tolerant_but_checked():
    item = {
        "item_index": 1,
        "title": "Costs",
        "data_to_collect": ["Quotes"],
        "simulation_steps": [],
        "expert_validation_steps": [],
        "rationale": "Budget.",
        "responsible_parties": [],
        "assumptions": [{"item_index": 1, "assumption": "Prices hold.", "sensitivity_score": "High"}],
        "smart_validation_objective": "By June.",
        "notes": [],
    }
    plan = DataCollectionPlan.model_validate({"data_collection_list": [item], "summary": "s"})
    assert plan.data_collection_list[0].assumptions[0].sensitivity_score is SensitivityScore.HIGH
    item["assumptions"][0]["sensitivity_score"] = "extreme"
    with pytest.raises(ValidationError):
        DataCollectionPlan.model_validate({"data_collection_list": [item], "summary": "s"})


@pytest.mark.parametrize("run", RUNS)
def test_renderer_keeps_every_string(run):
    raw = load_run_json(run, RAW)
    plan = DataCollectionPlan.model_validate(raw)
    markdown = _norm(render_data_collection(plan))
    strings = all_strings(plan.model_dump(mode="json"))
    assert strings
    missing = [s for s in strings if _norm(s) not in markdown]
    assert not missing
    for item in plan.data_collection_list:
        assert f"## {item.item_index}. {item.title.strip()}" in markdown
    assert "(sensitivity: high)" in markdown or "(sensitivity: medium)" in markdown


@pytest.mark.parametrize("run", RUNS)
def test_step_replays_recorded_answer(run):
    raw = load_run_json(run, RAW)
    llm = ReplayLLM(answers=[raw])
    ctx = context_for("data_collection", llm, run=run)
    result = step_function("data_collection")(ctx, inputs_from_run("data_collection", run))

    step = STEP_BY_NAME["data_collection"]
    result.check_against(step)
    assert set(result.files) == {RAW, MARKDOWN}
    assert len(llm.calls) == 1
    assert llm.calls[0]["response_model"] is DataCollectionPlan

    written = json.loads(result.files[RAW])
    assert written["data_collection_list"] == raw["data_collection_list"]
    assert written["summary"] == raw["summary"]
    assert written["metadata"]["llm_model"] == "replay"
    assert written["system_prompt"] and written["user_prompt"]

    # The plan's documents are data in the user turn, never in the system instruction.
    sent = llm.calls[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    for name in (
        "strategic_decisions.md",
        "scenarios.md",
        "assumptions.md",
        "project-plan.md",
        "related-resources.md",
        "swot-analysis.md",
        "team.md",
        "expert-review.md",
    ):
        assert f"File '{name}':" in sent[1]["content"]
    assert "File '" not in sent[0]["content"]
    assert result.files[MARKDOWN] == render_data_collection(DataCollectionPlan.model_validate(raw))
    assert result.notes["data_areas"] == len(raw["data_collection_list"])


def test_missing_upstream_file_raises_step_error():
    run = RUNS[0]
    inputs = inputs_from_run("data_collection", run)
    by_key = dict(inputs.items())
    expert = by_key["expert_review"]
    by_key["expert_review"] = UpstreamFiles(step=expert.step, contents={})
    llm = ReplayLLM(answers=[load_run_json(run, RAW)])
    with pytest.raises(StepError, match=step_file("expert_review")):
        step_function("data_collection")(context_for("data_collection", llm, run=run), StepInputs(by_key))
    assert llm.calls == []
