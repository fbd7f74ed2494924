"""Schedule inputs: which WBS tasks wait for which, and how many days each task takes.

Two steps:

- ``identify_task_dependencies``: one structured call over the level-2 WBS (phases and subtasks with
  their ids). The model names, for each task that must wait, its prerequisites and why. Ids the model
  cites that are not in the WBS are kept in the raw file but listed under ``issues`` (and in the
  notes), never dropped or trusted silently.
- ``estimate_task_durations``: every node below the WBS root, in pre-order, in chunks of 3 ids; one
  structured call per chunk, run concurrently. Each answer is reconciled with the ids it was asked
  about: estimates for ids the model invents are left out of the aggregate, ids it skips stay
  without an estimate, and both are reported. A chunk whose call fails is reported and the others
  are kept; the step fails only when no chunk succeeds. Fast mode estimates the first 2 chunks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from planexe_assets.core import (
    Reader,
    StepContext,
    StepError,
    StepInputs,
    StepResult,
    StructuredReply,
)
from planexe_assets.steps import register
from planexe_assets.steps.common import (
    bundle,
    compact_json_for_prompt,
    dump_json,
    messages,
    raw_record,
)
from planexe_assets.steps.doc_notes import log_notes, notes_markdown
from planexe_assets.steps.wbs_tree import WBSNode, parse_level2_clean, parse_wbs_project

# ---------------------------------------------------------------------------------------------------
# Task dependencies
# ---------------------------------------------------------------------------------------------------

DEPENDENCIES_SYSTEM_PROMPT = """
You work out the order in which a project's tasks can be done. The user message holds the project's
strategic decisions, the chosen scenario, the project plan, the data-collection plan and the work
breakdown structure as JSON: a list of phases, each with an `id`, a `major_phase_title` and
`subtasks` that each have an `id` and a `description`.

List the tasks that cannot start until other tasks are finished, in `task_dependency_details`. For
each one give:
- `dependent_task_id`: the id of the task that has to wait, copied exactly from the JSON.
- `depends_on_task_id_list`: the ids of the tasks that must be finished first, copied exactly.
- `depends_on_task_explanation_list`: one short reason per prerequisite, in the same order as the ids.

Only use ids that appear in the work breakdown structure; never make up ids and never let a task
depend on itself. Record real, logical prerequisites (approvals before construction, design before
build, funding before spending) rather than chaining every task to the one before it. Tasks that can
start right away need no entry. Reply with JSON only.
"""


class TaskDependencyDetail(BaseModel):
    dependent_task_id: str = Field(description="Id of the WBS task that has to wait for its prerequisites.")
    depends_on_task_id_list: list[str] = Field(
        description="Ids of the WBS tasks that must be finished first."
    )
    depends_on_task_explanation_list: list[str] = Field(
        description="One short reason per prerequisite, in the same order as the ids."
    )


class DependencyMapping(BaseModel):
    task_dependency_details: list[TaskDependencyDetail] = Field(
        description="Every task that must wait for others, with its prerequisites and the reasons."
    )


def parse_dependencies(data: Any) -> DependencyMapping:
    """``021-task_dependencies_raw.json`` (ours or PlanExe's): the response fields plus bookkeeping keys."""
    if not isinstance(data, dict):
        raise StepError(f"the task-dependencies file is {type(data).__name__}, expected a JSON object")
    fields = {k: v for k, v in data.items() if k in DependencyMapping.model_fields}
    try:
        return DependencyMapping.model_validate(fields)
    except ValidationError as exc:
        raise StepError(f"the task-dependencies file is malformed: {exc}") from exc


@register("identify_task_dependencies", models={"": (DependencyMapping, Reader(parse_dependencies))})
def run_identify_task_dependencies(ctx: StepContext, inputs: StepInputs) -> StepResult:
    phases = parse_level2_clean(inputs["wbs_level2"].json("clean"))
    titles = {p.id: p.major_phase_title for p in phases} | {
        s.id: s.description for p in phases for s in p.subtasks
    }
    user_prompt = bundle(
        ("strategic_decisions.md", inputs["strategic_decisions_markdown"].text("markdown")),
        ("scenarios.md", inputs["scenarios_markdown"].text("markdown")),
        ("project-plan.md", inputs["project_plan"].text("markdown")),
        ("data-collection.md", inputs["data_collection"].text("markdown")),
        ("work-breakdown-structure.json", compact_json_for_prompt([p.model_dump() for p in phases])),
    )
    reply = ctx.llm.structured(
        messages(DEPENDENCIES_SYSTEM_PROMPT, user_prompt), DependencyMapping, label="task_dependencies"
    )
    issues = dependency_issues(reply.value, titles)
    log_notes(ctx.logger, "identify_task_dependencies", issues)
    record = raw_record(reply, DEPENDENCIES_SYSTEM_PROMPT.strip(), user_prompt, issues=issues)
    return StepResult(
        files={ctx.step.outputs[""]: dump_json(record)},
        notes={
            "dependent_tasks": len(reply.value.task_dependency_details),
            "links": sum(len(d.depends_on_task_id_list) for d in reply.value.task_dependency_details),
            "issues": issues,
        },
    )


def dependency_issues(mapping: DependencyMapping, titles: Mapping[str, str]) -> list[str]:
    """Every way the answer disagrees with the WBS: unknown ids, self-links, repeats, missing reasons."""
    issues: list[str] = []
    seen_dependents: set[str] = set()
    for row in mapping.task_dependency_details:
        dependent = row.dependent_task_id
        if dependent not in titles:
            issues.append(f"dependent task id {dependent!r} is not in the WBS")
        if dependent in seen_dependents:
            issues.append(f"task {dependent!r} is listed more than once as a dependent task")
        seen_dependents.add(dependent)
        for prerequisite in row.depends_on_task_id_list:
            if prerequisite not in titles:
                issues.append(f"task {dependent!r} depends on id {prerequisite!r}, which is not in the WBS")
            if prerequisite == dependent:
                issues.append(f"task {dependent!r} is listed as depending on itself")
        n_ids, n_reasons = len(row.depends_on_task_id_list), len(row.depends_on_task_explanation_list)
        if n_ids != n_reasons:
            issues.append(f"task {dependent!r} has {n_ids} prerequisite ids but {n_reasons} explanations")
    return issues


def render_task_dependencies(mapping: DependencyMapping, titles: Mapping[str, str]) -> str:
    """One section per waiting task: its prerequisites with their reasons; the issues found are notes.

    Reasons are paired with ids by position; a reason without an id (or an id without a reason) is
    still shown, so nothing the model said is lost.
    """
    sections = ["# Task Dependencies"]
    if not mapping.task_dependency_details:
        sections.append("_The model listed no dependencies: every task can start right away._")
    for row in mapping.task_dependency_details:
        lines = [f"## {_task_label(row.dependent_task_id, titles)}", "", "Waits for:"]
        ids, reasons = row.depends_on_task_id_list, row.depends_on_task_explanation_list
        for i in range(max(len(ids), len(reasons))):
            who = _task_label(ids[i], titles) if i < len(ids) else "_(no task id given)_"
            why = reasons[i].strip() if i < len(reasons) else "_(no reason given)_"
            lines.append(f"- {who}: {why}")
        if not ids and not reasons:
            lines.append("- _nothing listed_")
        sections.append("\n".join(lines))
    notes = notes_markdown(dependency_issues(mapping, titles))
    return "\n\n".join(sections).rstrip() + notes + "\n"


def _task_label(task_id: str, titles: Mapping[str, str]) -> str:
    title = titles.get(task_id)
    return f"{' '.join(title.split())} (`{task_id}`)" if title is not None else f"unknown task `{task_id}`"


# ---------------------------------------------------------------------------------------------------
# Task durations
# ---------------------------------------------------------------------------------------------------

CHUNK_SIZE = 3
FAST_MODE_CHUNKS = 2

DURATIONS_SYSTEM_PROMPT = """
You estimate how long project tasks take. The user message holds the project plan as JSON, the whole
work breakdown structure as JSON (a tree of nodes with `id`, `description` and `task_children`), and
the ids of the few tasks you must estimate now.

Return exactly one entry in `task_details` for each requested id, and no others. For each give:
- `task_id`: the requested id, copied exactly.
- `delay_risks`: the concrete things most likely to make this task take longer.
- `mitigation_strategy`: what the team can do to keep those delays small.
- `days_min`: the duration in days if things go well.
- `days_max`: the duration in days if things go badly.
- `days_realistic`: the duration in days you expect; the schedule is built from this number.

Durations are whole working days with days_min <= days_realistic <= days_max. For a phase, estimate
the whole phase including its subtasks. If a task genuinely has no duration of its own, use -1 for
all three numbers. Base the estimates on the plan's scale, location and constraints. Reply with JSON
only.
"""


class TaskTimeEstimateDetail(BaseModel):
    task_id: str = Field(description="Id of the estimated WBS task, copied from the request.")
    delay_risks: str = Field(description="What is most likely to make this task take longer.")
    mitigation_strategy: str = Field(description="How the team can keep those delays small.")
    days_min: int = Field(description="Duration in days if things go well; -1 when not applicable.")
    days_max: int = Field(description="Duration in days if things go badly; -1 when not applicable.")
    days_realistic: int = Field(
        description="Expected duration in days (-1 when not applicable); drives the schedule."
    )

    @field_validator("days_min", "days_max", "days_realistic", mode="before")
    @classmethod
    def _whole_days(cls, value: object) -> object:
        # Models sometimes answer 2.5 or "10"; a part day still occupies a day of the schedule.
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                return value
        if isinstance(value, float) and math.isfinite(value):
            return math.ceil(value)
        return value


class TimeEstimates(BaseModel):
    task_details: list[TaskTimeEstimateDetail] = Field(description="One estimate for each requested task id.")


@dataclass
class ChunkReport:
    """How one chunk's answer matched the ids it asked about."""

    index: int
    task_ids: list[str]
    accepted: list[TaskTimeEstimateDetail] = field(default_factory=list)
    invented_ids: list[str] = field(default_factory=list)
    omitted_ids: list[str] = field(default_factory=list)
    repeated_ids: list[str] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)


def reconcile_chunk(index: int, task_ids: list[str], estimates: TimeEstimates) -> ChunkReport:
    """Keep the first estimate for each requested id; report invented, repeated and omitted ids.

    Ids are matched after trimming spaces, quotes and case, since models sometimes decorate them;
    accepted estimates carry the canonical id from the WBS.
    """
    report = ChunkReport(index=index, task_ids=list(task_ids))
    canonical = {_normalise_id(task_id): task_id for task_id in task_ids}
    got: set[str] = set()
    for detail in estimates.task_details:
        task_id = canonical.get(_normalise_id(detail.task_id))
        if task_id is None:
            report.invented_ids.append(detail.task_id)
            report.issues.append(
                f"chunk {index}: estimate for id {detail.task_id!r}, which was not requested"
            )
        elif task_id in got:
            report.repeated_ids.append(task_id)
            report.issues.append(f"chunk {index}: id {task_id!r} estimated more than once; the first is kept")
        else:
            got.add(task_id)
            report.accepted.append(detail.model_copy(update={"task_id": task_id}))
            if not (detail.days_min <= detail.days_realistic <= detail.days_max):
                report.issues.append(
                    f"chunk {index}: id {task_id!r} has days min/realistic/max "
                    f"{detail.days_min}/{detail.days_realistic}/{detail.days_max}, not in increasing order"
                )
    report.omitted_ids = [task_id for task_id in task_ids if task_id not in got]
    report.issues.extend(f"chunk {index}: no estimate for id {task_id!r}" for task_id in report.omitted_ids)
    return report


def _normalise_id(task_id: str) -> str:
    return task_id.strip().strip("\"'`").strip().lower()


def parse_task_durations(data: Any) -> list[TaskTimeEstimateDetail]:
    """Read ``022-2-task_durations.json`` (ours or PlanExe's: the same list of estimates)."""
    if not isinstance(data, list):
        raise StepError(f"the task-durations file is {type(data).__name__}, expected a list of estimates")
    try:
        return [TaskTimeEstimateDetail.model_validate(item) for item in data]
    except ValidationError as exc:
        raise StepError(f"the task-durations file is malformed: {exc}") from exc


@register("estimate_task_durations", models={"chunk_raw": TimeEstimates, "": Reader(parse_task_durations)})
def run_estimate_task_durations(ctx: StepContext, inputs: StepInputs) -> StepResult:
    plan = inputs["project_plan"].json("raw")
    if not isinstance(plan, dict):
        raise StepError("the project-plan raw file must hold a JSON object")
    root = parse_wbs_project(inputs["wbs_project"].json())
    nodes = root.descendants()
    if not nodes:
        raise StepError("the WBS has no phases or tasks below the project root; nothing to estimate")
    chunks = [[node.id for node in nodes[i : i + CHUNK_SIZE]] for i in range(0, len(nodes), CHUNK_SIZE)]
    selected = chunks[:FAST_MODE_CHUNKS] if ctx.fast else chunks
    plan_json = compact_json_for_prompt(plan)
    tree_json = compact_json_for_prompt(root.to_dict())

    def estimate(job: tuple[int, list[str]]) -> tuple[StructuredReply[TimeEstimates], str]:
        index, task_ids = job
        user_prompt = bundle(
            ("project-plan.json", plan_json),
            ("work-breakdown-structure.json", tree_json),
            ("task-ids-to-estimate.txt", "\n".join(f'"{task_id}"' for task_id in task_ids)),
        )
        reply = ctx.llm.structured(
            messages(DURATIONS_SYSTEM_PROMPT, user_prompt),
            TimeEstimates,
            label=f"task_durations chunk {index}",
        )
        return reply, user_prompt

    jobs = list(enumerate(selected, start=1))

    def every_chunk_failed(failed_outcomes) -> str:
        errors = "; ".join(f"chunk {jobs[o.index][0]}: {o.error}" for o in failed_outcomes)
        return f"every task-duration chunk failed: {errors}"

    outcomes = ctx.map_concurrent(estimate, jobs, all_failed=every_chunk_failed)

    side_files: dict[str, str] = {}
    aggregate: list[dict[str, Any]] = []
    issues: list[str] = []
    failed: list[dict[str, Any]] = []
    invented: list[str] = []
    omitted: list[str] = []
    for outcome, (index, task_ids) in zip(outcomes, jobs, strict=True):
        if not outcome.ok:
            failed.append({"chunk": index, "task_ids": task_ids, "error": str(outcome.error)})
            issues.append(
                f"chunk {index} failed ({outcome.error}); ids without an estimate: {', '.join(task_ids)}"
            )
            continue
        reply, user_prompt = outcome.result()
        report = reconcile_chunk(index, task_ids, reply.value)
        aggregate.extend(detail.model_dump(mode="json") for detail in report.accepted)
        issues.extend(report.issues)
        invented.extend(report.invented_ids)
        omitted.extend(report.omitted_ids)
        record = raw_record(
            reply,
            DURATIONS_SYSTEM_PROMPT.strip(),
            user_prompt,
            requested_task_ids=task_ids,
            issues=report.issues,
        )
        side_files[ctx.step.side_file("chunk_raw", index)] = dump_json(record)
    log_notes(ctx.logger, "estimate_task_durations", issues)

    skipped = [task_id for chunk in chunks[len(selected) :] for task_id in chunk]
    return StepResult(
        files={ctx.step.outputs[""]: dump_json(aggregate)},
        side_files=side_files,
        notes={
            "tasks": len(nodes),
            "chunks": len(chunks),
            "chunks_run": len(selected),
            "estimates": len(aggregate),
            "skipped_in_fast_mode": len(skipped),
            "failed_chunks": failed,
            "invented_task_ids": invented,
            "omitted_task_ids": omitted,
            "issues": issues,
        },
    )


def render_task_durations(estimates: list[TaskTimeEstimateDetail], root: WBSNode) -> str:
    """One section per estimate, titled by the task's description (ids the tree lacks are flagged)."""
    titles = {node.id: node.description for node, _ in root.walk()}
    sections = ["# Task Durations"]
    if not estimates:
        sections.append("_No estimates._")
    for e in estimates:
        days = (
            "not applicable"
            if e.days_realistic < 0
            else f"{e.days_realistic} days (best case {e.days_min}, worst case {e.days_max})"
        )
        sections.append(
            "\n".join(
                [
                    f"## {_task_label(e.task_id, titles)}",
                    "",
                    f"- **Duration:** {days}",
                    f"- **Delay risks:** {' '.join(e.delay_risks.split())}",
                    f"- **Mitigation:** {' '.join(e.mitigation_strategy.split())}",
                ]
            )
        )
    return "\n\n".join(sections) + "\n"
