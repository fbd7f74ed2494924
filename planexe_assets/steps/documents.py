"""The documents branch: which documents the first phase needs, which matter most, and what each must hold.

Six steps, in pipeline order:

1. ``identify_documents`` (one call) lists documents the team must *create* and existing documents or
   data it must *find*. Python joins the model's first and second ("part2") lists and gives every
   document a uuid4 id; the two lists are written as separate JSON files.
2. ``filter_documents_to_find`` / ``filter_documents_to_create`` (one call each) rate every document's
   impact on the first phase. The model sees the documents renumbered 0..n-1 (short integers are far
   easier to copy back than uuids); Python maps the integers back to the documents and keeps every
   Critical one, then whole lower buckets while fewer than ``PREFERRED_DOCUMENT_COUNT`` are kept.
3. ``draft_documents_to_find`` / ``draft_documents_to_create`` (one call per kept document, run
   concurrently) write a drafting brief per document and merge it into a copy of the document.
   In fast mode only the first ``FAST_MODE_DRAFT_COUNT`` documents are drafted; the rest stay in the
   consolidated list undrafted.
4. ``documents_to_create_and_find_markdown`` (no LLM) renders both drafted lists.

Identify, filter and draft pick a business / personal / other prompt variant from the ``purpose``
that ``identify_purpose`` stored. Nothing is dropped silently: ids the model invents, documents it
leaves unrated and drafts that fail are all written into the outputs and the step notes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

from planexe_assets.core import Items, StepContext, StepError, StepInputs, StepResult
from planexe_assets.steps import register
from planexe_assets.steps.common import (
    bundle,
    compact_json_for_prompt,
    dump_json,
    humanize_key,
    md_bullets,
    messages,
    raw_record,
)
from planexe_assets.steps.data_collection import project_documents
from planexe_assets.steps.doc_notes import notes_markdown
from planexe_assets.steps.purpose import PlanPurpose

PREFERRED_DOCUMENT_COUNT = 5
FAST_MODE_DRAFT_COUNT = 2


# --------------------------------------------------------------------------------------------------
# Shared: the plan's purpose picks the prompt variant; the plan context every call reads.
# --------------------------------------------------------------------------------------------------


def read_purpose(inputs: StepInputs) -> PlanPurpose:
    """The ``purpose`` field of ``002-5-identify_purpose_raw.json`` (ours or a recorded PlanExe run)."""
    data = inputs["identify_purpose"].json("raw")
    value = data.get("purpose") if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise StepError("identify_purpose raw JSON has no string field 'purpose'")
    try:
        return PlanPurpose(value.strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in PlanPurpose)
        raise StepError(
            f"identify_purpose raw JSON has purpose {value!r}; expected one of {allowed}"
        ) from None


def _core_context(inputs: StepInputs) -> list[tuple[str, str]]:
    """The four plan documents the filter and draft calls read."""
    return [
        ("strategic_decisions.md", inputs["strategic_decisions_markdown"].text("markdown")),
        ("scenarios.md", inputs["scenarios_markdown"].text("markdown")),
        ("assumptions.md", inputs["consolidate_assumptions_markdown"].text("short")),
        ("project-plan.md", inputs["project_plan"].text("markdown")),
    ]


def _document_list(data: Any, source: str) -> list[dict[str, Any]]:
    """Upstream document lists must be JSON lists of objects that carry an id and a name."""
    if not isinstance(data, list):
        raise StepError(f"{source} must be a JSON list of documents, got {type(data).__name__}")
    for position, doc in enumerate(data, start=1):
        if not isinstance(doc, dict):
            raise StepError(f"{source}: document {position} is {type(doc).__name__}, not an object")
        if not isinstance(doc.get("id"), str) or not doc["id"].strip():
            raise StepError(f"{source}: document {position} has no string 'id'")
        if not isinstance(doc.get("document_name"), str):
            raise StepError(f"{source}: document {position} ({doc['id']}) has no string 'document_name'")
    return data


@dataclass(frozen=True)
class _Kind:
    """What differs between the 'find' and the 'create' halves of the branch."""

    key: str  # identify_documents' output key and the field name of the first list
    label: str  # "find" / "create"
    noun: str  # how prompts describe the documents


FIND = _Kind("documents_to_find", "find", "existing documents and data sets the team must obtain")
CREATE = _Kind("documents_to_create", "create", "documents the team must write itself")


# --------------------------------------------------------------------------------------------------
# 1. identify_documents
# --------------------------------------------------------------------------------------------------

IDENTIFY_FOCUS = {
    PlanPurpose.BUSINESS: """
This plan is a business or organisational undertaking. Expect documents such as a charter, financial
model, risk register, permits and licences, contracts, compliance material and stakeholder
communication, scaled to the size of the venture.
""",
    PlanPurpose.PERSONAL: """
This plan is a personal undertaking by one person or a household. Keep the documents proportionate:
a simple budget, checklists, a schedule, personal records and the official forms, rules or
guidance that genuinely apply. Leave out corporate paperwork a private person would never write.
""",
    PlanPurpose.OTHER: """
This plan is neither a plain business venture nor a personal goal (it may be research, a public,
community or creative effort, or something else). Choose documents that fit its real nature and
scale, without assuming a company or a private household behind it.
""",
}

IDENTIFY_BODY = """
Build the document inventory for the first phase of the plan described in the user message (its
strategic decisions, chosen scenario, assumptions, project plan, related projects, SWOT analysis,
team and expert review). Only include documents that unblock early decisions or early work.

Documents to create (`documents_to_create`) are documents the team writes itself: charters,
strategies, frameworks, plans, budgets, agreements. For each give:
- `document_name`;
- `description`: what it is, who reads it, and why it is needed now;
- `responsible_role_type`: the role that should write it;
- `document_template_primary` and `document_template_secondary`: a widely known template or
  standard to start from, or null when none fits;
- `steps_to_create`: three to six high-level steps;
- `approval_authorities`: who signs it off, or null.

Documents to find (`documents_to_find`) already exist and must be obtained: laws and regulations,
official statistics, maps, market data, technical standards, earlier studies. Name each by the kind
of source (for example "National energy consumption statistics") instead of guessing the exact title
of a document that may not exist. For each give:
- `document_name`;
- `description`: what it contains, what the plan uses it for and who uses it;
- `recency_requirement`: how current it must be, or null;
- `responsible_role_type`: the role that should obtain it;
- `steps_to_find`: where and how to look for it;
- `access_difficulty`: "Easy", "Medium" or "Hard", then a colon and a short reason.

After the two lists, re-read the plan and put any further important documents you missed into
`documents_to_create_part2` and `documents_to_find_part2`. Leave them empty when nothing is missing,
and never list the same document twice. Do not invent ids; they are assigned afterwards.
Reply with JSON only.
"""


def identify_system_prompt(purpose: PlanPurpose) -> str:
    return (IDENTIFY_FOCUS[purpose].strip() + "\n\n" + IDENTIFY_BODY.strip()).strip()


class CreateDocumentItem(BaseModel):
    document_name: str = Field(description="Name of a document the team has to write.")
    description: str = Field(description="What the document is, who reads it and why it is needed early.")
    responsible_role_type: str = Field(description="The role that should write the document.")
    document_template_primary: str | None = Field(
        default=None, description="A widely known template or standard to start from, if any."
    )
    document_template_secondary: str | None = Field(
        default=None, description="An alternative template or standard, if any."
    )
    steps_to_create: list[str] = Field(description="High-level steps to produce the document.")
    approval_authorities: str | None = Field(
        default=None, description="Who signs the document off, if anyone."
    )


class FindDocumentItem(BaseModel):
    document_name: str = Field(description="The kind of existing document or data set to obtain.")
    description: str = Field(description="What it contains, what the plan uses it for and who uses it.")
    recency_requirement: str | None = Field(
        default=None, description="How current it has to be, if that matters."
    )
    responsible_role_type: str = Field(description="The role that should obtain it.")
    steps_to_find: list[str] = Field(description="Where and how to look for it.")
    access_difficulty: str = Field(description="Easy, Medium or Hard, with a short reason.")


class IdentifiedDocuments(BaseModel):
    """PlanExe's ``DocumentDetails`` of ``identify_documents.py``: two lists plus a second pass of each."""

    documents_to_create: list[CreateDocumentItem] = Field(description="Documents the team must write itself.")
    documents_to_find: list[FindDocumentItem] = Field(
        description="Existing documents and data the team must obtain."
    )
    documents_to_create_part2: list[CreateDocumentItem] = Field(
        default_factory=list, description="Further documents to write that the first list missed."
    )
    documents_to_find_part2: list[FindDocumentItem] = Field(
        default_factory=list, description="Further documents to obtain that the first list missed."
    )


def clean_documents(items: Sequence[BaseModel]) -> list[dict[str, Any]]:
    """Give each document a fresh uuid4 id (ids are never left to the model), id first."""
    return [{"id": str(uuid.uuid4()), **item.model_dump(mode="json")} for item in items]


@register(
    "identify_documents",
    models={
        "raw": IdentifiedDocuments,
        "documents_to_find": Items(FindDocumentItem),
        "documents_to_create": Items(CreateDocumentItem),
    },
)
def run_identify_documents(ctx: StepContext, inputs: StepInputs) -> StepResult:
    purpose = read_purpose(inputs)
    system_prompt = identify_system_prompt(purpose)
    user_prompt = bundle(*project_documents(inputs))
    reply = ctx.llm.structured(
        messages(system_prompt, user_prompt), IdentifiedDocuments, label="identify_documents"
    )
    found = reply.value
    to_create = clean_documents([*found.documents_to_create, *found.documents_to_create_part2])
    to_find = clean_documents([*found.documents_to_find, *found.documents_to_find_part2])
    outputs = ctx.step.outputs
    return StepResult(
        files={
            outputs["raw"]: dump_json(raw_record(reply, system_prompt, user_prompt)),
            outputs["markdown"]: render_identified_documents(to_create, to_find),
            outputs["documents_to_find"]: dump_json(to_find),
            outputs["documents_to_create"]: dump_json(to_create),
        },
        notes={
            "purpose": purpose.value,
            "documents_to_create": len(to_create),
            "documents_to_find": len(to_find),
            "from_second_pass": len(found.documents_to_create_part2) + len(found.documents_to_find_part2),
        },
    )


# --------------------------------------------------------------------------------------------------
# 2. filter_documents_to_find / filter_documents_to_create
# --------------------------------------------------------------------------------------------------

FILTER_FOCUS = {
    PlanPurpose.BUSINESS: """
The plan is a business or organisational project: weigh funding, legal and regulatory approval,
the core risks and the decisions that must be taken first.
""",
    PlanPurpose.PERSONAL: """
The plan is a personal project: weigh the person's safety, money, legal obligations and main
decisions. Formal paperwork is low impact unless the plan really cannot go ahead without it.
""",
    PlanPurpose.OTHER: """
Weigh each document by what this particular project needs in order to start well, given its nature.
""",
}

FILTER_BODY = """
You screen a list of {noun} for the first phase of a plan and judge how much each one matters now.
The user message holds `documents.json`, a list of documents, each with an integer `id`, a
`document_name` and a `description`, followed by the plan's strategic decisions, chosen scenario,
assumptions and project plan.

For every document in documents.json add one entry to `document_list` with:
- `id`: the document's integer id, copied exactly from documents.json;
- `impact_rating`: "Critical" when the first phase cannot proceed, or a core risk stays open,
  without it; "High" when it strongly shapes early decisions; "Medium" when it is useful but can wait
  or be replaced; "Low" when it is marginal for now;
- `rationale`: one or two sentences tying the rating to a concrete goal, risk, decision or
  dependency in the plan.
Rate each id exactly once and use no id that is not in documents.json. Be discerning: keep
"Critical" for the few documents that truly gate progress.

Then write `summary`: which documents matter most and why, and anything essential the list lacks.
Reply with JSON only.
"""


def filter_system_prompt(purpose: PlanPurpose, kind: _Kind) -> str:
    return FILTER_FOCUS[purpose].strip() + "\n\n" + FILTER_BODY.strip().replace("{noun}", kind.noun)


class DocumentImpact(StrEnum):
    CRITICAL = "Critical"
    HIGH = "High"
    MEDIUM = "Medium"
    LOW = "Low"


class DocumentImpactItem(BaseModel):
    """PlanExe's ``DocumentItem`` of the filter modules: one rating."""

    id: int = Field(description="The integer id the document has in documents.json.")
    rationale: str = Field(description="Why the document gets this rating, tied to the plan.")
    impact_rating: DocumentImpact = Field(
        description="Impact on the first phase: Critical, High, Medium or Low."
    )

    @field_validator("impact_rating", mode="before")
    @classmethod
    def _capitalise(cls, value: object) -> object:
        return value.strip().capitalize() if isinstance(value, str) else value


class DocumentImpactAssessmentResult(BaseModel):
    document_list: list[DocumentImpactItem] = Field(description="One rating per document of documents.json.")
    summary: str = Field(description="Which documents matter most, and what the list may be missing.")


@dataclass
class Screening:
    """How the model's integer ratings were mapped back onto the documents."""

    kept_indexes: list[int]
    ratings: dict[int, DocumentImpact]
    unknown_ids: list[int]  # ids the model invented
    duplicate_ids: list[int]  # ids rated more than once; the first rating counts
    unrated_indexes: list[int]  # documents the model left out

    def report(self, documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
        def ids(indexes: Sequence[int]) -> list[str]:
            return [documents[i]["id"] for i in indexes]

        return {
            "preferred_document_count": PREFERRED_DOCUMENT_COUNT,
            "kept_ids": ids(self.kept_indexes),
            "unknown_ids": self.unknown_ids,
            "duplicate_ids": self.duplicate_ids,
            "unrated_ids": ids(self.unrated_indexes),
        }


def screen_documents(count: int, result: DocumentImpactAssessmentResult) -> Screening:
    """Map ratings back to positions 0..count-1 and choose the documents to keep.

    Every Critical document is kept; then the High, Medium and Low buckets are added whole, in that
    order, while fewer than ``PREFERRED_DOCUMENT_COUNT`` are kept. Documents the model did not rate
    form a last bucket after Low, so an incomplete answer narrows the choice without losing
    documents it never looked at. Kept documents stay in their original order.
    """
    ratings: dict[int, DocumentImpact] = {}
    unknown: list[int] = []
    duplicates: list[int] = []
    for item in result.document_list:
        if not 0 <= item.id < count:
            unknown.append(item.id)
        elif item.id in ratings:
            duplicates.append(item.id)
        else:
            ratings[item.id] = item.impact_rating
    unrated = [i for i in range(count) if i not in ratings]
    buckets: list[list[int]] = [
        [i for i in range(count) if ratings.get(i) == level] for level in DocumentImpact
    ] + [unrated]
    kept = list(buckets[0])
    for bucket in buckets[1:]:
        if len(kept) >= PREFERRED_DOCUMENT_COUNT:
            break
        kept.extend(bucket)
    return Screening(sorted(kept), ratings, unknown, duplicates, unrated)


def _run_filter(ctx: StepContext, inputs: StepInputs, kind: _Kind) -> StepResult:
    source = inputs["identified_documents"].filename(kind.key)
    documents = _document_list(inputs["identified_documents"].json(kind.key), source)
    purpose = read_purpose(inputs)
    system_prompt = filter_system_prompt(purpose, kind)
    numbered = [
        {"id": i, "document_name": doc["document_name"], "description": doc.get("description") or ""}
        for i, doc in enumerate(documents)
    ]
    user_prompt = bundle(("documents.json", compact_json_for_prompt(numbered)), *_core_context(inputs))
    outputs = ctx.step.outputs

    if not documents:
        # Nothing to rate: no call, and the raw file says so instead of pretending a model answered.
        raw = {
            "document_list": [],
            "summary": f"identify_documents produced no {kind.noun}, so there was nothing to rate.",
            "document_ids": [],
            "selection": Screening([], {}, [], [], []).report(documents),
            "metadata": {"llm_calls": 0},
        }
        return StepResult(
            files={outputs["raw"]: dump_json(raw), outputs["clean"]: dump_json([])},
            notes={"documents": 0, "kept": 0},
        )

    reply = ctx.llm.structured(
        messages(system_prompt, user_prompt), DocumentImpactAssessmentResult, label=ctx.step.name
    )
    screening = screen_documents(len(documents), reply.value)
    kept = [documents[i] for i in screening.kept_indexes]
    if screening.unknown_ids or screening.duplicate_ids or screening.unrated_indexes:
        ctx.logger.warning(
            "%s: model answer had unknown ids %s, duplicate ids %s and left %d document(s) unrated",
            ctx.step.name,
            screening.unknown_ids,
            screening.duplicate_ids,
            len(screening.unrated_indexes),
        )
    raw = raw_record(
        reply,
        system_prompt,
        user_prompt,
        document_ids=[doc["id"] for doc in documents],
        selection=screening.report(documents),
    )
    return StepResult(
        files={outputs["raw"]: dump_json(raw), outputs["clean"]: dump_json(kept)},
        notes={
            "documents": len(documents),
            "kept": len(kept),
            "ratings": {
                level.value: sum(1 for r in screening.ratings.values() if r == level)
                for level in DocumentImpact
            },
            "unknown_ids": screening.unknown_ids,
            "duplicate_ids": screening.duplicate_ids,
            "unrated": len(screening.unrated_indexes),
        },
    )


@register(
    "filter_documents_to_find",
    models={
        "raw": DocumentImpactAssessmentResult,
        "clean": Items(FindDocumentItem),
    },
)
def run_filter_documents_to_find(ctx: StepContext, inputs: StepInputs) -> StepResult:
    return _run_filter(ctx, inputs, FIND)


@register(
    "filter_documents_to_create",
    models={
        "raw": DocumentImpactAssessmentResult,
        "clean": Items(CreateDocumentItem),
    },
)
def run_filter_documents_to_create(ctx: StepContext, inputs: StepInputs) -> StepResult:
    return _run_filter(ctx, inputs, CREATE)


# --------------------------------------------------------------------------------------------------
# 3. draft_documents_to_find / draft_documents_to_create
# --------------------------------------------------------------------------------------------------

DRAFT_FOCUS = {
    PlanPurpose.BUSINESS: """
The plan is a business or organisational project; write for the decision-makers, investors,
regulators and partners who will rely on the document.
""",
    PlanPurpose.PERSONAL: """
The plan is a personal project; keep the brief practical and proportionate for an individual or a
household, with no corporate formality the person does not need.
""",
    PlanPurpose.OTHER: """
Fit the brief to the real nature of the project and to the people who will use the document.
""",
}

DRAFT_TASK = {
    "find": (
        "one of the existing documents or data sets the team must obtain, so that whoever looks for it "
        "knows what it has to contain",
        "cannot be found, cannot be accessed or turns out to be out of date",
    ),
    "create": (
        "one of the documents the team must write, so that its author knows what it has to deliver",
        "cannot be produced as planned or in time",
    ),
}

DRAFT_BODY = """
You write a drafting brief for {task}. The user message holds `document.json` (the document's name,
description, responsible role and steps) followed by the plan's strategic decisions, chosen
scenario, assumptions and project plan. Make every point specific to this plan.

Fill in:
- `essential_information`: the questions the document must answer and the facts, figures and
  decisions it must contain, as concrete checklist items (typically five to twelve);
- `risks_of_poor_quality`: what concretely goes wrong in the plan if the document is incomplete,
  wrong or outdated;
- `worst_case_scenario`: the worst realistic outcome if the document falls short;
- `best_case_scenario`: what the plan gains if the document is excellent;
- `fallback_alternative_approaches`: what to do if the document {fallback}, such as substitutes,
  a reduced version or outside expertise.
Reply with JSON only.
"""


def draft_system_prompt(purpose: PlanPurpose, kind: _Kind) -> str:
    task, fallback = DRAFT_TASK[kind.label]
    body = DRAFT_BODY.strip().replace("{task}", task).replace("{fallback}", fallback)
    return DRAFT_FOCUS[purpose].strip() + "\n\n" + body


class DocumentDraft(BaseModel):
    """PlanExe's ``DocumentItem`` of the draft modules: the brief merged into each document."""

    essential_information: list[str] = Field(
        description="Questions the document must answer and facts or decisions it must contain."
    )
    risks_of_poor_quality: list[str] = Field(
        description="What goes wrong in the plan if the document is incomplete, wrong or outdated."
    )
    worst_case_scenario: str = Field(description="The worst realistic outcome if the document falls short.")
    best_case_scenario: str = Field(description="What the plan gains if the document is excellent.")
    fallback_alternative_approaches: list[str] = Field(
        description="What to do if the document cannot be obtained or produced as planned."
    )


DRAFT_FIELDS = tuple(DocumentDraft.model_fields)
DRAFT_ERROR_KEY = "draft_error"


def _run_draft(ctx: StepContext, inputs: StepInputs, kind: _Kind, filter_key: str) -> StepResult:
    source = inputs[filter_key].filename("clean")
    documents = _document_list(inputs[filter_key].json("clean"), source)
    purpose = read_purpose(inputs)
    system_prompt = draft_system_prompt(purpose, kind)
    context = _core_context(inputs)
    to_draft = documents[:FAST_MODE_DRAFT_COUNT] if ctx.fast else documents
    step = ctx.step

    def draft(position: int):
        document = documents[position]
        user_prompt = bundle(("document.json", compact_json_for_prompt(document)), *context)
        reply = ctx.llm.structured(
            messages(system_prompt, user_prompt), DocumentDraft, label=f"{step.name}:{position + 1}"
        )
        return reply, user_prompt

    def every_draft_failed(failed_outcomes) -> str:
        details = "; ".join(f"#{o.index + 1}: {type(o.error).__name__}: {o.error}" for o in failed_outcomes)
        return f"{step.name}: every document draft failed ({details})"

    outcomes = ctx.map_concurrent(draft, range(len(to_draft)), all_failed=every_draft_failed)

    consolidated: list[dict[str, Any]] = []
    side_files: dict[str, str] = {}
    failures: list[dict[str, Any]] = []
    for position, document in enumerate(documents):
        if position >= len(to_draft):
            consolidated.append(dict(document))  # fast mode: kept as it is, undrafted
            continue
        outcome = outcomes[position]
        if outcome.ok:
            reply, user_prompt = outcome.result()
            consolidated.append({**document, **reply.value.model_dump(mode="json")})
            side_files[step.side_file("draft_raw", position + 1)] = dump_json(
                raw_record(reply, system_prompt, user_prompt, document_id=document["id"])
            )
        else:
            message = f"{type(outcome.error).__name__}: {outcome.error}"
            ctx.logger.warning("%s: drafting document %d failed: %s", step.name, position + 1, message)
            consolidated.append({**document, DRAFT_ERROR_KEY: message})
            failures.append({"position": position + 1, "id": document["id"], "error": message})

    return StepResult(
        files={step.outputs[""]: dump_json(consolidated)},
        side_files=side_files,
        notes={
            "documents": len(documents),
            "drafted": len(to_draft) - len(failures),
            "skipped_fast_mode": len(documents) - len(to_draft),
            "failed": failures,
        },
    )


@register("draft_documents_to_find", models={"draft_raw": DocumentDraft, "": Items(FindDocumentItem)})
def run_draft_documents_to_find(ctx: StepContext, inputs: StepInputs) -> StepResult:
    return _run_draft(ctx, inputs, FIND, "filter_documents_to_find")


@register("draft_documents_to_create", models={"draft_raw": DocumentDraft, "": Items(CreateDocumentItem)})
def run_draft_documents_to_create(ctx: StepContext, inputs: StepInputs) -> StepResult:
    return _run_draft(ctx, inputs, CREATE, "filter_documents_to_create")


# --------------------------------------------------------------------------------------------------
# 4. documents_to_create_and_find_markdown, and the markdown of identify_documents
# --------------------------------------------------------------------------------------------------

# (key, label) in display order; lists render as bullets, other values inline.
CREATE_FIELDS = (
    ("description", "Description"),
    ("responsible_role_type", "Responsible role"),
    ("document_template_primary", "Primary template"),
    ("document_template_secondary", "Secondary template"),
    ("approval_authorities", "Approval authorities"),
    ("steps_to_create", "Steps to create"),
)
FIND_FIELDS = (
    ("description", "Description"),
    ("responsible_role_type", "Responsible role"),
    ("recency_requirement", "Recency requirement"),
    ("access_difficulty", "Access difficulty"),
    ("steps_to_find", "Steps to find"),
)
DRAFT_LABELS = (
    ("essential_information", "Essential information"),
    ("risks_of_poor_quality", "Risks of poor quality"),
    ("worst_case_scenario", "Worst case scenario"),
    ("best_case_scenario", "Best case scenario"),
    ("fallback_alternative_approaches", "Fallback alternative approaches"),
)


@register("documents_to_create_and_find_markdown")
def run_documents_to_create_and_find_markdown(ctx: StepContext, inputs: StepInputs) -> StepResult:
    lists = {}
    for key in ("draft_documents_to_create", "draft_documents_to_find"):
        upstream = inputs[key]
        lists[key] = _document_list(upstream.json(), upstream.filename())
    to_create, to_find = lists["draft_documents_to_create"], lists["draft_documents_to_find"]
    everything = (*to_create, *to_find)
    return StepResult(
        files={ctx.step.outputs[""]: render_documents_to_create_and_find(to_create, to_find)},
        notes={
            "documents_to_create": len(to_create),
            "documents_to_find": len(to_find),
            "failed_drafts": sum(1 for doc in everything if DRAFT_ERROR_KEY in doc),
            "undrafted": sum(1 for doc in everything if _draft_state(doc) == "undrafted"),
        },
    )


def _draft_state(doc: dict) -> str:
    """``failed`` (the draft call failed), ``undrafted`` (fast mode skipped it) or ``drafted``."""
    if DRAFT_ERROR_KEY in doc:
        return "failed"
    return "drafted" if any(key in doc for key in DRAFT_FIELDS) else "undrafted"


def render_documents_to_create_and_find(to_create: Sequence[dict], to_find: Sequence[dict]) -> str:
    """Both drafted lists: each document's identification, then its drafting brief (or that there is
    none); why a draft failed is in the notes at the end."""
    parts = ["# Documents to Create"]
    parts += _render_documents(to_create, "Create", CREATE_FIELDS, drafted=True)
    parts += ["# Documents to Find"]
    parts += _render_documents(to_find, "Find", FIND_FIELDS, drafted=True)
    notes = drafting_notes(to_create, "Create") + drafting_notes(to_find, "Find")
    return "\n\n".join(parts).rstrip() + notes_markdown(notes) + "\n"


def drafting_notes(documents: Sequence[dict], verb: str) -> list[str]:
    """The drafts that failed, with the error, for the document's notes."""
    return [
        f"{verb} Document {number} ({str(doc.get('document_name') or '').strip() or 'unnamed'}): "
        f"drafting failed: {doc[DRAFT_ERROR_KEY]}"
        for number, doc in enumerate(documents, start=1)
        if _draft_state(doc) == "failed"
    ]


def render_identified_documents(to_create: Sequence[dict], to_find: Sequence[dict]) -> str:
    """``017-4``: the documents identify_documents found, with the ids later steps refer to."""
    parts = ["## Documents to Create"]
    parts += _render_documents(to_create, "Create", CREATE_FIELDS, drafted=False, level=3)
    parts += ["## Documents to Find"]
    parts += _render_documents(to_find, "Find", FIND_FIELDS, drafted=False, level=3)
    return "\n\n".join(parts) + "\n"


def _render_documents(
    documents: Sequence[dict],
    verb: str,
    fields: Sequence[tuple[str, str]],
    *,
    drafted: bool,
    level: int = 2,
) -> list[str]:
    if not documents:
        return ["_No documents._"]
    blocks = []
    for number, doc in enumerate(documents, start=1):
        name = str(doc.get("document_name") or "").strip() or "(unnamed document)"
        lines = [f"{'#' * level} {verb} Document {number}: {name}", f"**ID:** {doc.get('id', '(no id)')}"]
        shown = {"id", "document_name"}
        for key, label in fields:
            lines.append(_field(label, doc.get(key)))
            shown.add(key)
        if drafted:
            state = _draft_state(doc)
            if state == "failed":
                lines.append("> **Drafting failed** (the reason is in the notes at the end).")
            elif state == "undrafted":
                lines.append(
                    "> _Not drafted: this document has no drafting brief (fast mode drafts only a few)._"
                )
            else:
                lines += [_field(label, doc.get(key)) for key, label in DRAFT_LABELS]
            shown |= set(DRAFT_FIELDS) | {DRAFT_ERROR_KEY}
        # Anything else a model or an older run put into the document is shown, not lost.
        lines += [_field(humanize_key(key), value) for key, value in doc.items() if key not in shown]
        blocks.append("\n\n".join(lines))
    return blocks


def _field(label: str, value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return f"**{label}:** _Not specified._"
    if isinstance(value, list):
        items = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value]
        return f"**{label}:**\n\n{md_bullets(items)}"
    if isinstance(value, str):
        return f"**{label}:** {value.strip()}"
    return f"**{label}:** {json.dumps(value, ensure_ascii=False)}"
