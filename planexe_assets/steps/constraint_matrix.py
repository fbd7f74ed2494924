"""The report's "Constraints" section: each constraint of the prompt, judged at every stage.

Upstream PlanExe (2026) extracts the prompt's explicit constraints (``extract_constraints``) and
checks six stage outputs against them (levers: potential, deduplicated/triaged, enriched, vital
few; scenarios: candidate, selected), but nothing reads the six verdict files and the report does
not show them. Here they are joined into one matrix: a row per extracted constraint, a column per
check, each cell ``satisfied``, ``violated`` or ``unclear`` (or ``not checked``), with the evidence
and explanation of every violation listed below it.

Reading is lenient on purpose (the report never fails for one odd file): each check's
``constraint_violations`` items are matched to the extracted constraints by their text (case and
whitespace ignored), then by position when a check lists exactly as many items as were extracted;
an item matching no extracted constraint becomes a row of its own, so no verdict is dropped. Without
the extraction, the rows are the union of the checks' items.

No framework, no LLM; plain data the report renders as HTML (escaped by the template) and as
markdown (``constraint_matrix_markdown``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from planexe_assets.steps.common import md_table, one_line
from planexe_assets.steps.constraints import CHECKED_STAGES, CheckedStage

STATUSES = ("satisfied", "violated", "unclear")
NOT_CHECKED = "not checked"
STATUS_SYMBOL = {
    "satisfied": "✓ satisfied",
    "violated": "✗ violated",
    "unclear": "? unclear",
    NOT_CHECKED: "–",
}


# The six checks in pipeline order (``steps/constraints.py``); each step name is also the report's
# input key. The second one checks our deduplicated levers (upstream checks its triaged levers; we
# keep DeduplicateLevers for parity with the 61-task chain).
CONSTRAINT_CHECK_STEPS = tuple(s.step_name for s in CHECKED_STAGES)


@dataclass
class Verdict:
    status: str  # satisfied | violated | unclear | not checked
    evidence: str = ""
    explanation: str = ""


@dataclass
class ConstraintRow:
    text: str
    classification: str  # positive | negative | "" (unknown)
    extracted: bool  # False: only a check named it
    verdicts: list[Verdict] = field(default_factory=list)  # one per column

    @property
    def violated(self) -> bool:
        return any(v.status == "violated" for v in self.verdicts)

    @property
    def symbols(self) -> list[str]:
        return [STATUS_SYMBOL.get(v.status, v.status) for v in self.verdicts]


@dataclass
class CheckColumn:
    label: str
    step: str
    available: bool
    problem: str = ""  # why not available
    overall_status: str = ""  # pass | fail (as the check said)
    summary: str = ""


@dataclass
class ConstraintMatrix:
    columns: list[CheckColumn]
    rows: list[ConstraintRow]
    extraction_problem: str = ""  # why the extracted list was not used ("" when it was)
    notes: list[str] = field(default_factory=list)

    @property
    def violated_rows(self) -> list[ConstraintRow]:
        return [r for r in self.rows if r.violated]

    @property
    def violations(self) -> list[tuple[ConstraintRow, CheckColumn, Verdict]]:
        return [
            (row, column, verdict)
            for row in self.rows
            for column, verdict in zip(self.columns, row.verdicts, strict=True)
            if verdict.status == "violated"
        ]

    @property
    def any_check(self) -> bool:
        return any(c.available for c in self.columns)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for row in self.rows:
            for verdict in row.verdicts:
                if verdict.status in out:
                    out[verdict.status] += 1
        return out


def _key(text: str) -> str:
    return " ".join(str(text).split()).casefold().rstrip(".")


def _text(value: Any) -> str:
    return one_line(value) if isinstance(value, (str, int, float)) else ""


def parse_json_object(text: str | None) -> tuple[dict[str, Any] | None, str]:
    if text is None:
        return None, "not produced"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, ""


def extracted_constraints(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(classification, text) of each item of an ``extract_constraints`` raw file; odd items skipped."""
    items = data.get("constraints")
    out: list[tuple[str, str]] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and _text(item.get("constraint_text")):
            out.append((_text(item.get("classification")).lower(), _text(item["constraint_text"])))
    return out


def check_items(data: dict[str, Any]) -> list[dict[str, str]]:
    """The well-formed ``constraint_violations`` items of a check file, with text fields normalised."""
    items = data.get("constraint_violations")
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not _text(item.get("constraint_text")):
            continue
        status = _text(item.get("status")).lower()
        out.append(
            {
                "constraint_text": _text(item["constraint_text"]),
                "classification": _text(item.get("constraint_classification")).lower(),
                "status": status if status in STATUSES else "unclear",
                "evidence": str(item.get("evidence") or "").strip(),
                "explanation": str(item.get("explanation") or "").strip(),
            }
        )
    return out


class _MatrixBuilder:
    """The rows (extracted constraints first) and one column of verdicts per check, filled check by
    check; an item matching no row becomes a row of its own."""

    def __init__(self, extracted: list[ConstraintRow]):
        self.rows = extracted
        self.index = {_key(r.text): i for i, r in enumerate(extracted)}
        self.extracted_count = len(extracted)
        self.columns: list[CheckColumn] = []
        self.per_column: list[dict[int, Verdict]] = []
        self.notes: list[str] = []

    def add_check(self, check: CheckedStage, text: str | None, missing: str) -> None:
        data, bad = parse_json_object(text) if text is not None else (None, missing)
        if data is None:
            self.columns.append(CheckColumn(check.title, check.step_name, False, bad))
            self.per_column.append({})
            if text is not None:
                self.notes.append(f"{check.title}: {bad}")
            return
        self.columns.append(
            CheckColumn(
                check.title,
                check.step_name,
                True,
                overall_status=_text(data.get("overall_status")).lower(),
                summary=str(data.get("summary") or "").strip(),
            )
        )
        self.per_column.append(self._place(check_items(data)))

    def _place(self, items: list[dict[str, str]]) -> dict[int, Verdict]:
        """Each item's verdict by row: by text, else by position when the counts agree, else new."""
        verdicts: dict[int, Verdict] = {}
        by_position = len(items) == self.extracted_count
        for position, item in enumerate(items):
            row = self.index.get(_key(item["constraint_text"]))
            if row is None and by_position and position not in verdicts:
                row = position
            if row is None or row in verdicts:
                self.rows.append(ConstraintRow(item["constraint_text"], item["classification"], False))
                row = len(self.rows) - 1
                self.index.setdefault(_key(item["constraint_text"]), row)
            verdicts[row] = Verdict(item["status"], item["evidence"], item["explanation"])
        return verdicts

    def finish(self) -> list[ConstraintRow]:
        for i, row in enumerate(self.rows):
            row.verdicts = [column.get(i, Verdict(NOT_CHECKED)) for column in self.per_column]
        return self.rows


def build_matrix(
    extraction_text: str | None,
    check_texts: Sequence[tuple[CheckedStage, str | None, str]],
) -> ConstraintMatrix:
    """The matrix from the extraction's raw JSON text and each check's (check, raw JSON text or None,
    why it is missing). Never raises on bad input: what could not be read is in ``notes``."""
    extraction, problem = parse_json_object(extraction_text)
    extracted = (
        []
        if extraction is None
        else [ConstraintRow(t, k, True) for k, t in extracted_constraints(extraction)]
    )
    builder = _MatrixBuilder(extracted)
    if extraction is None:
        builder.notes.append(
            f"the extracted constraints are not available ({problem}); rows come from the checks"
        )
    for check, text, missing in check_texts:
        builder.add_check(check, text, missing)
    rows = builder.finish()
    unmatched = sum(1 for r in rows if not r.extracted)
    if unmatched and extraction is not None:
        builder.notes.append(
            f"{unmatched} constraint(s) named by a check but not in the extracted list are listed as extra rows"
        )
    return ConstraintMatrix(builder.columns, rows, problem if extraction is None else "", builder.notes)


def matrix_from(
    load: Callable[[str, str], tuple[str | None, str]],
) -> ConstraintMatrix:
    """``build_matrix`` with each file read through ``load(requires_key, output_key) -> (text, why
    missing)``: the extraction's ``raw`` output and each check's single output."""
    extraction, _ = load("extract_constraints", "raw")
    checks = [(check, *load(check.step_name, "")) for check in CHECKED_STAGES]
    return build_matrix(extraction, checks)


def _check_lines(matrix: ConstraintMatrix) -> list[str]:
    lines = ["## Checks", ""]
    for column in matrix.columns:
        if column.available:
            status = column.overall_status or "no overall status"
            tail = f": {one_line(column.summary)}" if column.summary else ""
            lines.append(f"- {column.label}: {status}{tail}")
        else:
            lines.append(f"- {column.label}: not available ({column.problem})")
    return lines


def _violation_lines(matrix: ConstraintMatrix) -> list[str]:
    if not matrix.violations:
        return []
    lines = ["", "## Violations", ""]
    for row, column, verdict in matrix.violations:
        lines.append(f"- **{row.text}** at {column.label.lower()}")
        if verdict.evidence:
            lines.append(f"  - Evidence: {one_line(verdict.evidence)}")
        if verdict.explanation:
            lines.append(f"  - Why: {one_line(verdict.explanation)}")
    return lines


def constraint_matrix_markdown(matrix: ConstraintMatrix) -> str:
    """The section as markdown: the matrix table, the checks' overall results, then every violation
    with its evidence."""
    if not matrix.rows:
        if not matrix.any_check and matrix.extraction_problem:
            return "_Not available: neither the extracted constraints nor any constraint check was produced._"
        return "No constraints identified in the prompt."
    counts = matrix.counts()
    headers = ["Constraint", "Kind", *[c.label for c in matrix.columns]]
    rows = [
        [f"**{row.text}**" if row.violated else row.text, row.classification or "?", *row.symbols]
        for row in matrix.rows
    ]
    lines = [
        f"{len(matrix.rows)} constraint(s); {len(matrix.violated_rows)} violated at some stage. "
        f"Verdicts: {counts['satisfied']} satisfied, {counts['violated']} violated, {counts['unclear']} unclear.",
        "",
        md_table(headers, rows),
        "",
        *_check_lines(matrix),
        *_violation_lines(matrix),
    ]
    if matrix.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in matrix.notes]
    return "\n".join(lines) + "\n"


__all__ = [
    "CONSTRAINT_CHECK_STEPS",
    "NOT_CHECKED",
    "STATUSES",
    "CheckColumn",
    "ConstraintMatrix",
    "ConstraintRow",
    "Verdict",
    "build_matrix",
    "check_items",
    "constraint_matrix_markdown",
    "extracted_constraints",
    "matrix_from",
    "parse_json_object",
]
