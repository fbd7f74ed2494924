"""self_audit: the physics item, the concurrent checklist, fast mode, failed items and the renderer."""

from __future__ import annotations

import json
import threading

from planexe_assets.core import StepError, step_file
from planexe_assets.steps.self_audit import (
    CHECKLIST,
    PHYSICS_SYSTEM_PROMPT,
    ChecklistAnswerCleaned,
    PhysicsCheck,
    checked_physics,
    render_self_audit,
)
from tests.steps.support_2026 import RUN, answer, run_step
from tests.support.replay import FIXTURES, ReplayLLM, missing_from

RAW = step_file("self_audit", "raw")
MD = step_file("self_audit", "markdown")
ITEMS = answer("self_audit_items.json")
FULL_RUN = FIXTURES.parent / "planexe_runs_full" / RUN


def _responder(fail: set[int] = frozenset(), barrier: threading.Barrier | None = None):
    def respond(messages, model, label):
        index = int(label.split(":")[1])
        if index == 1:
            return answer("self_audit_physics.json")
        if barrier is not None:
            barrier.wait(timeout=10)  # every item is in flight at once
        if index in fail:
            raise StepError(f"self_audit: item {index} gave no usable answer on any model")
        return ITEMS[str(index)]

    return respond


def test_every_item_is_audited_concurrently():
    barrier = threading.Barrier(19)
    llm = ReplayLLM(responder=_responder(barrier=barrier))
    result = run_step("self_audit", llm)

    physics_call = next(c for c in llm.calls if c["label"] == "self_audit:1")
    assert physics_call["messages"][0]["content"] == PHYSICS_SYSTEM_PROMPT.strip()
    assert "File 'plan.txt'" in physics_call["messages"][1]["content"]
    assert "File 'strategic_decisions.md'" not in physics_call["messages"][1]["content"]
    item_call = next(c for c in llm.calls if c["label"] == "self_audit:14")
    assert "The red flag: Legal Minefield." in item_call["messages"][0]["content"]
    user = item_call["messages"][1]["content"]
    for name in (
        "strategic_decisions.md",
        "work-breakdown-structure.csv",
        "review-plan.md",
        "questions-and-answers.md",
        "premortem.md",
        "earlier-answers.json",
    ):
        assert f"File '{name}'" in user
    assert '"Violates Known Physics"' in user and '"level": "low"' in user

    raw = json.loads(result.files[RAW])
    cleaned = [ChecklistAnswerCleaned.model_validate(a) for a in raw["checklist_answers_cleaned"]]
    assert [a.index for a in cleaned] == list(range(1, 21))
    assert [a.title for a in cleaned] == [item.title for item in CHECKLIST]
    assert raw["failed_items"] == [] and raw["skipped_in_fast_mode"] == []
    assert (
        result.notes["level_high"] == 3
        and result.notes["level_medium"] == 9
        and result.notes["level_low"] == 8
    )

    markdown = result.files[MD]
    assert "| 🛑 High | 3 |" in markdown and "| ⚠️ Medium | 9 |" in markdown and "| ✅ Low | 8 |" in markdown
    assert not missing_from([a.justification for a in cleaned] + [a.mitigation for a in cleaned], markdown)
    positions = [markdown.index(f"### {item.index}. {item.title}") for item in CHECKLIST]
    assert positions == sorted(positions)
    assert "## Notes" not in markdown


def test_fast_mode_audits_two_items():
    llm = ReplayLLM(responder=_responder())
    result = run_step("self_audit", llm, fast=True)
    raw = json.loads(result.files[RAW])
    assert sorted(c["label"] for c in llm.calls) == ["self_audit:1", "self_audit:2"]
    assert [a["title"] for a in raw["checklist_answers_cleaned"]] == [
        "Violates Known Physics",
        "No Real-World Proof",
    ]
    assert raw["skipped_in_fast_mode"] == list(range(3, 21)) and result.notes["items_skipped"] == 18
    assert "Fast mode: items 3-20 were not audited." in result.files[MD]


def test_a_failed_item_is_reported_not_hidden():
    llm = ReplayLLM(responder=_responder(fail={7}))
    result = run_step("self_audit", llm)
    raw = json.loads(result.files[RAW])
    assert [f["index"] for f in raw["failed_items"]] == [7] and len(raw["checklist_answers_cleaned"]) == 19
    assert "Item 7 (Budget Too Low) was not audited" in result.files[MD] and result.notes["items_failed"] == [
        7
    ]


def test_a_physics_rating_without_a_law_is_lowered():
    unfounded = PhysicsCheck(justification="Sounds hard.", mitigation="Ask an engineer.", level="HIGH")
    fixed, notes = checked_physics(unfounded)
    assert fixed.level.value == "low" and notes
    founded = unfounded.model_copy(update={"violated_law": "conservation of energy"})
    assert checked_physics(founded) == (founded, [])


def test_renderer_counts_levels():
    answers = [
        ChecklistAnswerCleaned(
            index=2,
            title="No Real-World Proof",
            subtitle="s",
            justification="j",
            mitigation="m",
            level="medium",
        ),
        ChecklistAnswerCleaned(
            index=1,
            title="Violates Known Physics",
            subtitle="s",
            justification="j",
            mitigation="m",
            level="low",
        ),
    ]
    markdown = render_self_audit(answers)
    assert markdown.index("### 1. Violates Known Physics") < markdown.index("### 2. No Real-World Proof")
    assert "| 🛑 High | 0 |" in markdown and "**Level:** ⚠️ Medium" in markdown


def test_the_recorded_upstream_audit_replays_and_validates():
    """The recorded run's own self audit (PlanExe's numbered-era 029-1 file, real model answers):
    its stored layout validates against our model, and its twenty answers replay through our step."""
    from planexe_assets.steps import output_models

    recorded = json.loads((FULL_RUN / step_file("self_audit", "raw")).read_text(encoding="utf-8"))
    for spec in output_models("self_audit")[RAW]:
        spec.validate(recorded, "", None, RAW)
    responses = recorded["responses"]

    def respond(messages, model, label):
        return responses[label.split(":")[1]]

    result = run_step("self_audit", ReplayLLM(responder=respond))
    raw = json.loads(result.files[RAW])
    assert [a["level"] for a in raw["checklist_answers_cleaned"]] == [
        a["level"] for a in recorded["checklist_answers_cleaned"]
    ]
    assert (
        result.notes["level_high"] == 15
        and result.notes["level_medium"] == 4
        and result.notes["level_low"] == 1
    )
    markdown = result.files[MD]
    assert not missing_from([a["justification"] for a in recorded["checklist_answers_cleaned"]], markdown)
