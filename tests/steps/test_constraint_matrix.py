"""The Constraints section's matrix: matching the checks' items to the extracted constraints."""

from __future__ import annotations

import json

from planexe_assets.steps.constraint_matrix import (
    NOT_CHECKED,
    build_matrix,
    constraint_matrix_markdown,
)
from planexe_assets.steps.constraints import CHECKED_STAGES

EXTRACTED = json.dumps(
    {
        "constraints": [
            {"classification": "positive", "constraint_text": "Budget under EUR 2M."},
            {"classification": "negative", "constraint_text": "No  nuclear power"},
        ]
    }
)


def item(text, status, kind="positive", evidence="", explanation=""):
    return {
        "constraint_text": text,
        "constraint_classification": kind,
        "status": status,
        "evidence": evidence,
        "explanation": explanation,
    }


def check(*items, overall="pass", summary=""):
    return json.dumps({"constraint_violations": list(items), "overall_status": overall, "summary": summary})


def stages(*texts):
    padded = list(texts) + [None] * (len(CHECKED_STAGES) - len(texts))
    return [(stage, text, "not produced") for stage, text in zip(CHECKED_STAGES, padded, strict=True)]


def test_items_match_by_text_ignoring_case_space_and_final_period():
    matrix = build_matrix(
        EXTRACTED,
        stages(
            check(
                item("budget under eur 2m", "satisfied"),
                item("No nuclear power.", "violated", "negative", "Lever: SMR reactor"),
            ),
            check(item("No nuclear power", "unclear"), item("Budget under EUR 2M.", "satisfied")),
        ),
    )
    assert [r.text for r in matrix.rows] == ["Budget under EUR 2M.", "No nuclear power"]
    statuses = [[v.status for v in r.verdicts] for r in matrix.rows]
    assert statuses[0][:2] == ["satisfied", "satisfied"] and statuses[1][:2] == ["violated", "unclear"]
    assert statuses[0][2:] == [NOT_CHECKED] * 4
    assert [r.text for r in matrix.violated_rows] == ["No nuclear power"]
    assert [(c.label, v.evidence) for _, c, v in matrix.violations] == [
        ("Potential levers", "Lever: SMR reactor")
    ]
    assert [c.available for c in matrix.columns] == [True, True, False, False, False, False]


def test_paraphrased_items_match_by_position_when_the_counts_agree_else_become_extra_rows():
    same_count = build_matrix(
        EXTRACTED,
        stages(check(item("Budget below 2 million euro", "satisfied"), item("Avoid nuclear", "violated"))),
    )
    assert len(same_count.rows) == 2 and same_count.rows[1].violated and same_count.notes == []
    extra = build_matrix(EXTRACTED, stages(check(item("Open in Copenhagen", "violated"))))
    assert [r.text for r in extra.rows] == ["Budget under EUR 2M.", "No nuclear power", "Open in Copenhagen"]
    assert not extra.rows[2].extracted and extra.rows[2].violated
    assert "extra rows" in extra.notes[0]


def test_without_the_extraction_rows_come_from_the_checks_and_bad_files_are_notes():
    matrix = build_matrix(None, stages(check(item("A", "satisfied")), "{not json", json.dumps([1])))
    assert [r.text for r in matrix.rows] == ["A"]
    assert matrix.extraction_problem == "not produced"
    assert not matrix.columns[1].available and "not valid JSON" in matrix.columns[1].problem
    assert "not a JSON object" in matrix.columns[2].problem
    assert any("extracted constraints are not available" in n for n in matrix.notes)


def test_unknown_status_reads_as_unclear_and_odd_items_are_skipped():
    matrix = build_matrix(
        EXTRACTED, stages(check(item("Budget under EUR 2M.", "VIOLATED?"), "junk", {"status": "violated"}))
    )
    assert matrix.rows[0].verdicts[0].status == "unclear" and not matrix.violations


def test_markdown_of_no_constraints_and_of_nothing_at_all():
    empty = build_matrix(json.dumps({"constraints": []}), stages(check()))
    assert constraint_matrix_markdown(empty) == "No constraints identified in the prompt."
    nothing = build_matrix(None, stages())
    assert constraint_matrix_markdown(nothing).startswith("_Not available")
