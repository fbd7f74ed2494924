"""Questions a reader would ask, and a premortem that imagines the project has already failed.

``questions_and_answers`` runs a two-turn conversation: first question/answer pairs that explain the
plan's key concepts, then a follow-up turn for pairs about risks, ethics and wider consequences. The
pairs are merged and renumbered in Python, then written as raw JSON, markdown and an HTML page in the
style of the report (``questions_and_answers.html.j2``, rendered by Jinja2 with autoescaping, so model
text can never become markup); the report embeds the page's ``<article>``.

``premortem`` runs up to three turns of one conversation; each turn adds three assumptions that
would sink the project if false and three failure stories, one per archetype. Assumption ids are
made canonical (A1, A2, ...) in Python and every root-cause reference is checked against them.

What went wrong along the way (a failed turn, a relabelled id, a root cause that names no listed
assumption) is logged and listed in the closed notes at the end of each document (``doc_notes``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from planexe_assets.core import ChatMessage, StepContext, StepError, StepInputs, StepResult
from planexe_assets.steps import register
from planexe_assets.steps.common import bundle, dump_json, md_table
from planexe_assets.steps.doc_notes import log_notes, notes_context, notes_markdown
from planexe_assets.steps.pages import render_page
from planexe_assets.steps.review import REVIEW_DOCUMENT, read_plan_documents, separate_lists

QA_DOCUMENT = ("questions-and-answers.md", "questions_and_answers", "markdown")


def _collapse(text: str) -> str:
    return " ".join(str(text).split())


def _paragraphs(text: str) -> str:
    return separate_lists(text) if text.strip() else "_Not provided._"


# ---------------------------------------------------------------------------------------------------
# questions_and_answers
# ---------------------------------------------------------------------------------------------------

QA_SYSTEM_PROMPT = """
You help a newcomer understand a project plan. The user's message contains the plan's documents
(strategic decisions, scenarios, assumptions, team, related projects, SWOT analysis, pitch, data
collection, work breakdown structure, expert criticism, project plan and a critical review).

Write question-and-answer pairs that a thoughtful reader who is not an expert in the field would
want answered after reading the plan. Each pair has:
- item_index: its position in your list, starting at 1;
- question: a clear question that names the concept, term, decision or risk it is about;
- answer: a direct answer grounded in the documents, two to five sentences, using the plan's own
  figures where they exist;
- rationale: one or two sentences on why this question helps the reader.
Also give a `summary`: two or three sentences on what the pairs cover.

Prefer questions about things the documents mention but do not explain, about trade-offs between
decisions, and about sensitive or surprising aspects. Do not invent facts that are not in the documents.
"""

QA_FIRST_TURN = (
    "Write five question-and-answer pairs that explain the key concepts, terms and strategic decisions "
    "in these documents."
)
QA_FOLLOW_UP_TURN = (
    "Write five more question-and-answer pairs. Do not repeat the questions above; this time cover the "
    "plan's main risks, ethical concerns, controversial choices and its wider consequences. The summary "
    "should describe only these new pairs."
)


class QuestionAnswerPair(BaseModel):
    item_index: int = Field(description="Position of the pair in this answer, starting at 1.")
    question: str = Field(description="A question a non-expert reader of the plan would ask.")
    answer: str = Field(description="A direct answer based on the plan's documents.")
    rationale: str = Field(description="Why the question is worth answering for the reader.")


class QuestionsAndAnswers(BaseModel):
    question_answer_pairs: list[QuestionAnswerPair] = Field(
        min_length=1, description="The question-and-answer pairs."
    )
    summary: str = Field(description="What the pairs cover, in two or three sentences.")


@register("questions_and_answers", models={"raw": QuestionsAndAnswers})
def run_questions_and_answers(ctx: StepContext, inputs: StepInputs) -> StepResult:
    """Two turns in one conversation; the pairs are merged and renumbered 1..n.

    The first turn must succeed. When every model fails the follow-up turn, the first turn's pairs
    are kept and the failure is logged and stated in the raw file, in the notes at the end of the
    markdown and the HTML page, and in the step notes.
    """
    user_prompt = bundle(*read_plan_documents(inputs, extra=(REVIEW_DOCUMENT,)))
    system_prompt = QA_SYSTEM_PROMPT.strip()
    conversation: list[ChatMessage] = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": f"{user_prompt}\n\n{QA_FIRST_TURN}"},
    ]
    first = ctx.llm.structured(conversation, QuestionsAndAnswers, label="questions_and_answers_1")
    rounds = [first.value]
    metadata = [{"round": 1, **first.metadata}]
    failures: list[str] = []
    conversation += [
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": QA_FOLLOW_UP_TURN},
    ]
    try:
        second = ctx.llm.structured(conversation, QuestionsAndAnswers, label="questions_and_answers_2")
    except StepError as exc:
        failures.append(f"Follow-up round (risks, ethics and wider consequences) failed: {exc}")
        log_notes(ctx.logger, "questions_and_answers", failures)
    else:
        rounds.append(second.value)
        metadata.append({"round": 2, **second.metadata})

    merged = merge_question_rounds(rounds)
    raw: dict[str, Any] = {
        **merged.model_dump(mode="json"),
        "metadata": metadata,
        "system_prompt": system_prompt,
        "user_prompt": user_prompt,
        "turn_prompts": [QA_FIRST_TURN, QA_FOLLOW_UP_TURN],
    }
    if failures:
        raw["failed_rounds"] = failures
    step = ctx.step
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw),
            step.outputs["markdown"]: render_questions_and_answers(merged, failures),
            step.outputs["html"]: render_questions_and_answers_html(merged, failures),
        },
        notes={
            "pairs": len(merged.question_answer_pairs),
            "rounds_completed": len(rounds),
            "failed_rounds": failures,
        },
    )


def merge_question_rounds(rounds: Sequence[QuestionsAndAnswers]) -> QuestionsAndAnswers:
    """Concatenate the rounds' pairs, numbered 1..n in order (the model's own numbers restart per turn)."""
    pairs = [pair for round_ in rounds for pair in round_.question_answer_pairs]
    renumbered = [pair.model_copy(update={"item_index": n}) for n, pair in enumerate(pairs, start=1)]
    summary = "\n\n".join(r.summary.strip() for r in rounds if r.summary.strip())
    return QuestionsAndAnswers(question_answer_pairs=renumbered, summary=summary)


def render_questions_and_answers(qa: QuestionsAndAnswers, failures: Sequence[str] = ()) -> str:
    """Summary first, then one section per pair with its question, answer and rationale; notes last."""
    parts = ["## Summary", "", _paragraphs(qa.summary)]
    for pair in qa.question_answer_pairs:
        parts += [
            "",
            f"## Question {pair.item_index}",
            "",
            f"**Question:** {_paragraphs(pair.question)}",
            "",
            f"**Answer:** {_paragraphs(pair.answer)}",
            "",
            f"**Why it matters:** {_paragraphs(pair.rationale)}",
        ]
    return "\n".join(parts).rstrip() + notes_markdown(failures) + "\n"


def render_questions_and_answers_html(qa: QuestionsAndAnswers, failures: Sequence[str] = ()) -> str:
    """A page in the report's style: one ``question-answer-pair`` per pair, the notes at the end.

    Everything the report shows of it is inside ``<article>`` (the report embeds that element).
    """
    return render_page(
        "questions_and_answers.html.j2", pairs=qa.question_answer_pairs, **notes_context(failures)
    )


# ---------------------------------------------------------------------------------------------------
# premortem
# ---------------------------------------------------------------------------------------------------

PREMORTEM_ROUNDS = 3
FAST_PREMORTEM_ROUNDS = 1
ARCHETYPES = ("Process/Financial", "Technical/Logistical", "Market/Human")

PREMORTEM_SYSTEM_PROMPT = f"""
You run a premortem on a project plan. Imagine it is some time from now and the project has failed
badly; your job is to explain, concretely, how that happened, so the team can prevent it today. The
user's message contains the plan's documents, including a critical review and a question-and-answer
section.

Each time you are asked, return exactly three new items in each list:

assumptions_to_kill: beliefs the plan depends on which, if false, would sink it.
- assumption_id: the label you are told to use (A1, A2, ...).
- statement: the assumption, stated as a claim that can be checked.
- test_now: a cheap test that could be run immediately.
- falsifier: the concrete test result that would show the assumption is false.

failure_modes: one failure story per archetype, in this order: {", ".join(ARCHETYPES)}.
- failure_mode_index: 1, 2, 3 within this answer.
- root_cause_assumption_id: the id of one of the assumptions you listed in the same answer.
- failure_mode_archetype: the archetype name exactly as written above.
- failure_mode_title: a short, vivid title.
- risk_analysis: the story of the failure: what triggers it, what makes it worse, and the damage it does.
- early_warning_signs: three measurable signals that would appear before the failure.
- owner: the role that should own this risk.
- likelihood_5 and impact_5: integers from 1 (low) to 5 (high).
- tripwires: two or three thresholds with numbers (e.g. "permit approval takes longer than 60 days").
- playbook: three steps: contain, assess, respond.
- stop_rule: the condition under which the project should stop or change course.

Be specific to this plan; every item must be different from those you gave before.
"""


class PremortemAssumption(BaseModel):
    assumption_id: str = Field(description="Label of the assumption, A1, A2, ... as instructed.")
    statement: str = Field(description="A belief the plan relies on; if it is false the project fails.")
    test_now: str = Field(description="A quick test that can be run right away.")
    falsifier: str = Field(description="The result of the test that would prove the assumption false.")


class FailureModeItem(BaseModel):
    failure_mode_index: int = Field(description="Position of the failure mode in this answer, from 1.")
    root_cause_assumption_id: str = Field(description="Id of the assumption whose failure causes this.")
    failure_mode_archetype: str = Field(description=f"One of: {', '.join(ARCHETYPES)}.")
    failure_mode_title: str = Field(description="A short, vivid title for the failure story.")
    risk_analysis: str = Field(description="How the failure unfolds: trigger, amplifiers and damage.")
    early_warning_signs: list[str] = Field(description="Measurable signals that show up before the failure.")
    owner: str | None = Field(default=None, description="Role accountable for watching this risk.")
    likelihood_5: int | None = Field(
        default=None, ge=1, le=5, description="Likelihood, 1 (rare) to 5 (almost certain)."
    )
    impact_5: int | None = Field(default=None, ge=1, le=5, description="Impact, 1 (minor) to 5 (fatal).")
    tripwires: list[str] | None = Field(
        default=None, description="Numeric thresholds that trigger the playbook."
    )
    playbook: list[str] | None = Field(
        default=None, description="Three response steps: contain, assess, respond."
    )
    stop_rule: str | None = Field(default=None, description="When to stop or pivot the project.")


class PremortemAnalysis(BaseModel):
    assumptions_to_kill: list[PremortemAssumption] = Field(
        min_length=1, description="Three assumptions that would sink the project if false."
    )
    failure_modes: list[FailureModeItem] = Field(
        min_length=1, description="Three failure stories, one per archetype."
    )


def _round_prompt(first_id: int) -> str:
    ids = ", ".join(f"A{n}" for n in range(first_id, first_id + 3))
    if first_id == 1:
        return f"Run the premortem now. Label the three assumptions {ids}."
    return (
        "Go one level deeper: give three further assumptions and three further failure modes that are "
        f"different from all earlier ones. Label the new assumptions {ids}."
    )


def _norm_id(value: str) -> str:
    return value.strip().upper()


class PremortemMerge:
    """Collects the rounds, giving assumptions canonical ids and resolving root-cause references.

    A round's own labels are mapped to the next free ``A<n>``; a root cause that names neither one of
    the round's labels nor an earlier canonical id is kept as written and reported.
    """

    def __init__(self) -> None:
        self.assumptions: list[PremortemAssumption] = []
        self.failure_modes: list[FailureModeItem] = []
        self.relabelled: list[str] = []
        self.unknown_root_causes: list[str] = []

    def add(self, round_number: int, analysis: PremortemAnalysis) -> None:
        earlier = {a.assumption_id for a in self.assumptions}
        mapping: dict[str, str] = {}
        for item in analysis.assumptions_to_kill:
            canonical = f"A{len(self.assumptions) + 1}"
            label = _norm_id(item.assumption_id)
            if label in mapping:
                self.relabelled.append(
                    f"Round {round_number}: duplicate label {item.assumption_id!r} became {canonical}; "
                    f"root causes naming it point to {mapping[label]}."
                )
            else:
                mapping[label] = canonical
                if label != canonical:
                    self.relabelled.append(
                        f"Round {round_number}: assumption {item.assumption_id!r} became {canonical}."
                    )
            self.assumptions.append(item.model_copy(update={"assumption_id": canonical}))
        for mode in analysis.failure_modes:
            index = len(self.failure_modes) + 1
            label = _norm_id(mode.root_cause_assumption_id)
            root = mapping.get(label) or (label if label in earlier else None)
            if root is None:
                root = mode.root_cause_assumption_id
                self.unknown_root_causes.append(
                    f"FM{index} names root cause {mode.root_cause_assumption_id!r}, which is not one of the "
                    "listed assumptions."
                )
            self.failure_modes.append(
                mode.model_copy(update={"failure_mode_index": index, "root_cause_assumption_id": root})
            )

    def result(self) -> PremortemAnalysis:
        return PremortemAnalysis(
            assumptions_to_kill=list(self.assumptions), failure_modes=list(self.failure_modes)
        )


@register("premortem", models={"raw": PremortemAnalysis})
def run_premortem(ctx: StepContext, inputs: StepInputs) -> StepResult:
    """Up to three turns (one in fast mode); the first must succeed, a failed later turn is reported."""
    user_prompt = bundle(*read_plan_documents(inputs, extra=(REVIEW_DOCUMENT, QA_DOCUMENT)))
    system_prompt = PREMORTEM_SYSTEM_PROMPT.strip()
    rounds = FAST_PREMORTEM_ROUNDS if ctx.fast else PREMORTEM_ROUNDS

    conversation: list[ChatMessage] = [{"role": "system", "content": system_prompt}]
    merge = PremortemMerge()
    metadata: list[dict[str, Any]] = []
    turn_prompts: list[str] = []
    failures: list[str] = []
    for round_number in range(1, rounds + 1):
        turn = _round_prompt(len(merge.assumptions) + 1)
        turn_prompts.append(turn)
        content = f"{user_prompt}\n\n{turn}" if round_number == 1 else turn
        attempt = [*conversation, {"role": "user", "content": content}]
        try:
            reply = ctx.llm.structured(attempt, PremortemAnalysis, label=f"premortem_{round_number}")
        except StepError as exc:
            if round_number == 1:
                raise
            failures.append(f"Round {round_number} of {rounds} failed: {exc}")
            continue
        conversation = [*attempt, {"role": "assistant", "content": reply.text}]
        merge.add(round_number, reply.value)
        metadata.append({"round": round_number, **reply.metadata})

    analysis = merge.result()
    raw: dict[str, Any] = {
        **analysis.model_dump(mode="json"),
        "metadata": metadata,
        "system_prompt": system_prompt,
        "user_prompt": user_prompt,
        "turn_prompts": turn_prompts,
    }
    issues = {
        "failed_rounds": failures,
        "relabelled_assumptions": merge.relabelled,
        "unknown_root_causes": merge.unknown_root_causes,
    }
    raw.update({k: v for k, v in issues.items() if v})
    log_notes(ctx.logger, "premortem", premortem_notes(failures, [], merge.unknown_root_causes))
    log_notes(ctx.logger, "premortem", premortem_notes([], merge.relabelled, []), logging.INFO)
    step = ctx.step
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw),
            step.outputs["markdown"]: render_premortem(analysis, **issues),
        },
        notes={
            "rounds_requested": rounds,
            "rounds_completed": len(metadata),
            "assumptions": len(analysis.assumptions_to_kill),
            "failure_modes": len(analysis.failure_modes),
            **issues,
        },
    )


def risk_level(likelihood: int | None, impact: int | None) -> str:
    """Likelihood x impact on a 25-point scale: >=15 critical, >=9 high, >=4 medium, else low."""
    if likelihood is None or impact is None:
        return "Not rated"
    score = likelihood * impact
    if score >= 15:
        label = "CRITICAL"
    elif score >= 9:
        label = "HIGH"
    elif score >= 4:
        label = "MEDIUM"
    else:
        label = "LOW"
    return f"{label} ({score}/25)"


def _bullets(items: Sequence[str] | None) -> str:
    kept = [_collapse(i) for i in (items or []) if str(i).strip()]
    return "\n".join(f"- {i}" for i in kept) if kept else "_None given._"


def render_premortem(
    analysis: PremortemAnalysis,
    failed_rounds: Sequence[str] = (),
    relabelled_assumptions: Sequence[str] = (),
    unknown_root_causes: Sequence[str] = (),
) -> str:
    """Assumptions table, failure-mode overview table, one section per failure mode, then the notes."""
    statements = {a.assumption_id: a.statement for a in analysis.assumptions_to_kill}
    out = [
        "A premortem starts from the assumption that the project has already failed and works out the "
        "most likely reasons, so they can be tested and guarded against now.",
        "",
        "## Assumptions to Kill",
        "",
        "If any of these turns out to be false, the project is in serious trouble. Each has a test that "
        "can be run now and the result that would prove it wrong.",
        "",
        md_table(
            ["ID", "Assumption", "Test Now", "Falsified If"],
            [(a.assumption_id, a.statement, a.test_now, a.falsifier) for a in analysis.assumptions_to_kill],
        ),
        "",
        "## Failure Modes",
        "",
        md_table(
            ["ID", "Title", "Archetype", "Root Cause", "Owner", "Risk Level"],
            [
                (
                    f"FM{fm.failure_mode_index}",
                    fm.failure_mode_title,
                    fm.failure_mode_archetype,
                    fm.root_cause_assumption_id,
                    fm.owner or "Unassigned",
                    risk_level(fm.likelihood_5, fm.impact_5),
                )
                for fm in analysis.failure_modes
            ],
        ),
    ]
    for fm in analysis.failure_modes:
        root = fm.root_cause_assumption_id
        root_text = (
            f"{root}: {_collapse(statements[root])}"
            if root in statements
            else f"{root} (not a listed assumption)"
        )
        rating = risk_level(fm.likelihood_5, fm.impact_5)
        if fm.likelihood_5 is not None and fm.impact_5 is not None:
            rating += f": likelihood {fm.likelihood_5}/5, impact {fm.impact_5}/5"
        out += [
            "",
            f"### FM{fm.failure_mode_index}: {_collapse(fm.failure_mode_title)}",
            "",
            f"- **Archetype:** {_collapse(fm.failure_mode_archetype)}",
            f"- **Root cause:** {root_text}",
            f"- **Owner:** {_collapse(fm.owner) if fm.owner else 'Unassigned'}",
            f"- **Risk level:** {rating}",
            "",
            "#### How It Fails",
            "",
            _paragraphs(fm.risk_analysis),
            "",
            "#### Early Warning Signs",
            "",
            _bullets(fm.early_warning_signs),
            "",
            "#### Tripwires",
            "",
            _bullets(fm.tripwires),
            "",
            "#### Response Playbook",
            "",
            _bullets(fm.playbook),
            "",
            "#### Stop Rule",
            "",
            _paragraphs(fm.stop_rule or ""),
        ]
    notes = premortem_notes(failed_rounds, relabelled_assumptions, unknown_root_causes)
    return "\n".join(out).rstrip() + notes_markdown(notes) + "\n"


def premortem_notes(
    failed_rounds: Sequence[str], relabelled_assumptions: Sequence[str], unknown_root_causes: Sequence[str]
) -> list[tuple[str, Sequence[str]]]:
    """The premortem's diagnostics, grouped for the notes at the end of the document and the log."""
    return [
        ("Rounds that failed", failed_rounds),
        ("Root causes that name no listed assumption", unknown_root_causes),
        ("Assumption ids renumbered", relabelled_assumptions),
    ]
