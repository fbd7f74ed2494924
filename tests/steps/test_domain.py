"""classify_domain: candidate batches, the primary pick, cleaning and the renderer, replayed."""

from __future__ import annotations

import json

from planexe_assets.core import step_file
from planexe_assets.steps.domain import (
    UNCLEAR_DOMAIN,
    ClassifiedDomain,
    DomainFit,
    best_candidate,
    read_classified_domain,
    render_classified_domain,
)
from tests.steps.support_2026 import answer, constraint_files, run_step
from tests.support.replay import ReplayLLM

RAW = step_file("classify_domain", "raw")
MD = step_file("classify_domain", "markdown")
BATCHES = [answer(f"classify_domain_batch{n}.json") for n in (1, 2, 3)]


def test_three_batches_then_the_primary_pick():
    llm = ReplayLLM(answers=[*BATCHES, answer("classify_domain_primary.json")])
    result = run_step("classify_domain", llm, constraint_files())

    assert [c["label"] for c in llm.calls] == [
        "classify_domain:candidates1",
        "classify_domain:candidates2",
        "classify_domain:candidates3",
        "classify_domain:primary",
    ]
    first_user = llm.calls[0]["messages"][1]["content"]
    assert (
        "The Game" in first_user and "Production budget of HK$470 million" in first_user
    )  # prompt and constraints
    assert (
        "business undertaking" in llm.calls[0]["messages"][0]["content"]
    )  # the recorded purpose is business
    follow_up = llm.calls[1]["messages"]
    assert (
        follow_up[-2]["role"] == "assistant"
        and "Remake rights and entertainment law" in follow_up[-1]["content"]
    )
    menu = llm.calls[3]["messages"][1]["content"]
    assert "2. Film financing and incentives (importance 5, specificity 4, role constraint)" in menu

    raw = json.loads(result.files[RAW])
    domain = read_classified_domain(raw)
    assert domain.primary_domain == "Film financing and incentives"
    assert domain.secondary_domains == [
        "Feature film production management",
        "Remake rights and entertainment law",
        "Theatrical distribution and windowing",
    ]
    assert len(domain.domain_fits) == 8  # the exact repeat in batch 3 was dropped
    festival = next(f for f in domain.domain_fits if f.domain == "Film festival strategy")
    assert festival.importance == 5  # 7 clamped
    assert raw["warnings"] == ["a repeated candidate was dropped: Feature film production management"]
    assert (
        raw["metadata"]["first_pass_call_count"] == 3 and raw["metadata"]["first_pass_candidate_count"] == 8
    )
    assert result.notes == {
        "primary_domain": "Film financing and incentives",
        "candidates": 8,
        "candidate_calls": 3,
    }

    markdown = result.files[MD]
    assert markdown.startswith("**Primary domain:** Film financing and incentives")
    table = markdown[markdown.index("| Domain |") :]
    # by importance x specificity, highest first; equal weights (four score 20) in the order found
    rows = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines()[2:]]
    assert rows[:5] == [
        "Film financing and incentives",
        "Remake rights and entertainment law",
        "Hong Kong location permitting",
        "Psychological thriller screenwriting",
        "Theatrical distribution and windowing",
    ]


def test_fast_mode_makes_one_batch():
    llm = ReplayLLM(answers=[BATCHES[0], answer("classify_domain_primary.json")])
    result = run_step("classify_domain", llm, constraint_files(), fast=True)
    assert len(llm.calls) == 2 and result.notes["candidate_calls"] == 1
    assert read_classified_domain(json.loads(result.files[RAW])).secondary_domains == [
        "Feature film production management",
        "Remake rights and entertainment law",
    ]


def test_a_vague_prompt_is_unclear_without_a_pick():
    llm = ReplayLLM(answers=[{"domain_fits": []}])
    result = run_step("classify_domain", llm, constraint_files())
    domain = read_classified_domain(json.loads(result.files[RAW]))
    assert len(llm.calls) == 1 and domain.primary_domain == UNCLEAR_DOMAIN and domain.domain_fits == []
    assert "**Secondary domains:** _none_" in result.files[MD] and "| Domain |" not in result.files[MD]


def test_a_pick_out_of_range_takes_the_best_rated():
    llm = ReplayLLM(
        answers=[BATCHES[0], {"domain_fits": []}, {"primary_index": 9, "rationale": "Out of range."}]
    )
    raw = json.loads(run_step("classify_domain", llm, constraint_files()).files[RAW])
    assert raw["primary_domain"] == "Film financing and incentives"  # 5x4 = 20, found before the rights' 4x5
    assert any("names no candidate" in w for w in raw["warnings"])


def test_best_candidate_prefers_weight_then_order():
    fits = [
        DomainFit(domain="A", importance=3, specificity=3, role="tool", reason="r"),
        DomainFit(domain="B", importance=4, specificity=4, role="tool", reason="r"),
        DomainFit(domain="C", importance=2, specificity=5, role="tool", reason="r"),
        DomainFit(domain="D", importance=4, specificity=4, role="tool", reason="r"),
    ]
    assert best_candidate(fits) == 1
    rendered = render_classified_domain(
        ClassifiedDomain(primary_domain="B", secondary_domains=["A"], domain_fits=fits)
    )
    assert (
        rendered.index("| B |") < rendered.index("| D |") < rendered.index("| C |") < rendered.index("| A |")
    )
