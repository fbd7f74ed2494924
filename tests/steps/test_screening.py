"""screen_planning_prompt: model, consistency rule, renderer and step, with a realistic answer replayed."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from planexe_assets.core import StepError, step_file
from planexe_assets.steps.screening import (
    SCREENING_SYSTEM_PROMPT,
    PromptScreeningResult,
    ScreeningReason,
    ScreeningVerdict,
    consistent_screening,
    prompt_facts,
    read_screening,
    render_screening,
    screening_banner,
)
from tests.steps.support_2026 import RUN, answer, run_step
from tests.support.replay import ReplayLLM, load_run_file

RAW = step_file("screen_planning_prompt", "raw")
MD = step_file("screen_planning_prompt", "markdown")


def test_the_step_screens_the_bare_prompt():
    llm = ReplayLLM(answers=[answer("screen_planning_prompt.json")])
    result = run_step("screen_planning_prompt", llm)

    prompt = load_run_file(RUN, step_file("setup"))
    [call] = llm.calls
    system, user = call["messages"]
    assert system["content"] == SCREENING_SYSTEM_PROMPT.strip() and prompt.strip() not in system["content"]
    assert prompt.strip() in user["content"] and f"- words: {len(prompt.split())}" in user["content"]
    raw = json.loads(result.files[RAW])
    assert (raw["verdict"], raw["reason"], raw["confidence"]) == ("USABLE", "usable", "high")
    assert raw["user_prompt"] == prompt and raw["system_prompt"] == SCREENING_SYSTEM_PROMPT.strip()
    assert "corrections" not in raw
    assert read_screening(raw).unusable is False
    assert result.files[MD].startswith("**🟢 USABLE:** A detailed, concrete film production brief")
    assert "Details" not in result.files[MD]
    assert result.notes["verdict"] == "USABLE"


def test_an_unusable_prompt_gets_details_and_a_banner():
    llm = ReplayLLM(
        answers=[
            {
                "verdict": "unusable",
                "reason": "placeholder_or_test",
                "confidence": "high",
                "rationale": "The request is the word 'test' followed by keyboard noise.",
            }
        ]
    )
    result = run_step("screen_planning_prompt", llm)
    screening = read_screening(json.loads(result.files[RAW]))
    assert screening.unusable and screening.reason == ScreeningReason.PLACEHOLDER_OR_TEST
    markdown = result.files[MD]
    assert markdown.startswith("**🔴 UNUSABLE:**")
    assert "| Placeholder Or Test | High |" in markdown
    banner = screening_banner(screening)
    assert "Placeholder Or Test" in banner and "keyboard noise" in banner
    assert (
        screening_banner(PromptScreeningResult.model_validate(answer("screen_planning_prompt.json"))) is None
    )


def test_the_reason_is_made_to_agree_with_the_verdict():
    usable = PromptScreeningResult(
        verdict="USABLE", reason="too_short", confidence="low", rationale="Short but clear."
    )
    fixed, notes = consistent_screening(usable)
    assert fixed.reason == ScreeningReason.USABLE and fixed.verdict == ScreeningVerdict.USABLE and notes
    no_reason = PromptScreeningResult(
        verdict="UNUSABLE", reason="usable", confidence="low", rationale="Unsure."
    )
    fixed, notes = consistent_screening(no_reason)
    assert fixed.verdict == ScreeningVerdict.USABLE and "kept as USABLE" in notes[0]

    llm = ReplayLLM(answers=[no_reason])
    raw = json.loads(run_step("screen_planning_prompt", llm).files[RAW])
    assert raw["verdict"] == "USABLE" and raw["corrections"]


def test_unknown_values_are_refused_and_a_bad_file_is_a_clear_error():
    with pytest.raises(ValidationError):
        PromptScreeningResult.model_validate(
            {"verdict": "MAYBE", "reason": "usable", "confidence": "low", "rationale": ""}
        )
    with pytest.raises(StepError, match="not a valid screening"):
        read_screening({"verdict": "USABLE"})
    with pytest.raises(StepError, match="expected a JSON object"):
        read_screening([])


def test_prompt_facts_measure_the_prompt():
    facts = prompt_facts("Open a café!\nIn Århus.")
    assert "- characters: 22" in facts and "- bytes (UTF-8): 24" in facts
    assert (
        "- words: 5" in facts
        and "- lines: 2" in facts
        and "- symbols (neither letters, digits nor spaces): 2 (9% " in facts
    )


def test_renderer_keeps_the_rationale_on_one_line():
    result = PromptScreeningResult(
        verdict="USABLE", reason="usable", confidence="medium", rationale="Clear goal.\nConcrete place."
    )
    assert render_screening(result) == "**🟢 USABLE:** Clear goal. Concrete place.\n"
