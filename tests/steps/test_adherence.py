"""prompt_adherence: directives, scores, the percentage computed in code, and the renderer, replayed."""

from __future__ import annotations

import json

import pytest

from planexe_assets.core import step_file
from planexe_assets.steps.adherence import (
    SCORES_SYSTEM_PROMPT,
    AdherenceResult,
    Directive,
    adherence_terms,
    clean_directives,
    overall_adherence,
    render_prompt_adherence,
)
from tests.steps.support_2026 import RUN, answer, run_step
from tests.support.replay import ReplayLLM, load_run_file

RAW = step_file("prompt_adherence", "raw")
MD = step_file("prompt_adherence", "markdown")


def test_the_step_grades_the_plan_and_computes_the_percentage():
    llm = ReplayLLM(
        answers=[answer("prompt_adherence_directives.json"), answer("prompt_adherence_scores.json")]
    )
    result = run_step("prompt_adherence", llm)

    prompt = load_run_file(RUN, step_file("setup"))
    first, second = llm.calls
    assert (
        "between 5 and 15" in first["messages"][0]["content"]
        and prompt.strip() in first["messages"][1]["content"]
    )
    assert second["messages"][0]["content"] == SCORES_SYSTEM_PROMPT.strip()
    for name in ("directives.json", "executive_summary.md", "project_plan.md", "assumptions.md"):
        assert f"File '{name}'" in second["messages"][1]["content"]

    raw = json.loads(result.files[RAW])
    assert [d["directive_index"] for d in raw["directives"]] == list(range(1, 10))
    # directive 9 was not scored; the score for "12" and the second score for 3 are dropped
    assert [s["directive_index"] for s in raw["scores"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    # importance x adherence: 5x5 + 5x5 + 5x4 + 4x3 + 3x5 + 3x5 + 4x4 + 4x2 = 136; max 5 x 33 = 165
    assert raw["overall_adherence_percent"] == round(136 * 100 / 165) == 82
    assert raw["notes"] == [
        "a score for directive 12, which does not exist, was dropped",
        "a second score for directive 3 was ignored",
        "directive 9 (IP likely held by Universal or its subsidiaries) was not scored",
    ]
    assert raw["user_prompt"] == prompt and set(raw["metadata"]) == {"phase1", "phase2"}
    assert result.notes == {"overall_adherence_percent": 82, "directives": 9, "scored": 8}

    markdown = result.files[MD]
    assert markdown.startswith("**Overall adherence: 82%**")
    assert "overall = 136 x 100 / 165 = 82%" in markdown
    assert (
        "| 9 | IP likely held by Universal or its subsidiaries | stated fact | 2 | not scored |  |"
        in markdown
    )
    issues = markdown[markdown.index("## Issues") :]
    # severity importance x (6 - adherence): 8 -> 4x4=16, 4 -> 4x3=12, 3 -> 5x2=10, 7 -> 4x2=8
    order = [issues.index(f"### {n}. ") for n in (8, 4, 3, 7)]
    assert order == sorted(order) and "### 1. " not in issues
    assert "- **Category:** unsolicited caveat" in issues
    assert markdown.rstrip().endswith("was not scored")  # the notes close the document


def test_fast_mode_asks_for_fewer_directives():
    llm = ReplayLLM(
        answers=[answer("prompt_adherence_directives.json"), answer("prompt_adherence_scores.json")]
    )
    raw = json.loads(run_step("prompt_adherence", llm, fast=True).files[RAW])
    assert "between 3 and 8" in llm.calls[0]["messages"][0]["content"]
    assert len(raw["directives"]) == 8 and "1 directive(s) beyond the 8 asked for dropped" in raw["notes"]


def test_no_directives_means_one_call_and_full_marks():
    llm = ReplayLLM(answers=[{"directives": []}])
    raw = json.loads(run_step("prompt_adherence", llm).files[RAW])
    assert len(llm.calls) == 1 and raw["overall_adherence_percent"] == 100 and raw["scores"] == []


@pytest.mark.parametrize(
    ("terms", "percent"),
    [([], 100), ([(5, 5)], 100), ([(5, 1)], 20), ([(1, 5), (5, 1)], 33), ([(3, 4), (2, 2)], 64)],
)
def test_overall_percentage(terms, percent):
    assert overall_adherence(terms).percent == percent


def test_no_usable_score_is_no_percentage():
    llm = ReplayLLM(
        answers=[
            answer("prompt_adherence_directives.json"),
            {"results": [answer("prompt_adherence_scores.json")["results"][8]]},
        ]
    )
    result = run_step("prompt_adherence", llm)
    raw = json.loads(result.files[RAW])
    assert raw["scores"] == [] and raw["overall_adherence_percent"] is None
    assert result.files[MD].startswith("**Overall adherence: not available** (no directive was scored)")
    assert result.notes["overall_adherence_percent"] == "not available"


def test_scores_for_unknown_directives_weigh_three_and_ratings_are_clamped():
    directive = Directive(directive_index=1, directive_type="REQUIREMENT", text="Ship it", importance_5=9)
    assert directive.importance_5 == 5
    score = AdherenceResult(directive_index=7, adherence_5=0, category="ignored", evidence="", explanation="")
    assert score.adherence_5 == 1 and adherence_terms([directive], [score]) == [(3, 1)]
    kept, notes = clean_directives(
        [directive.model_copy(update={"directive_index": 4}), directive.model_copy(update={"text": " "})], 15
    )
    assert [d.directive_index for d in kept] == [1] and len(notes) == 2
    assert "_Every scored directive is fully honoured._" in render_prompt_adherence([directive], [])
