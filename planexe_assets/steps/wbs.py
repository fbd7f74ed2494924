"""Work breakdown structure: from the project plan to a three-level tree of tasks.

Five steps build it top-down; ids are uuid4 strings made here in Python, never by the model.

1. ``wbs_level1`` (one call): the project's title and final deliverable; the root gets its id.
   The title file ``018-3-…json`` holds a JSON string (PlanExe wrote bare text there; readers use
   ``wbs_tree.parse_project_title``, which accepts both).
2. ``wbs_level2`` (one call): the phases and their subtasks. The model's WBS numbers are kept in the
   raw file only; the clean file gives every phase and subtask an id.
3. ``wbs_project_level1_and_level2`` (no LLM): root -> phases -> subtasks as one tree.
4. ``wbs_level3`` (one call per leaf task, concurrent): each leaf is split into work packages, with
   the duration estimates in view so the split fits the time available. Fast mode splits only the
   first 2 leaves. A leaf whose call fails is reported and stays a leaf; the step fails only when
   every call fails.
5. ``wbs_project_level1_and_level2_and_level3`` (no LLM): the work packages hung under their parent
   tasks, written as JSON and as the ``;``-separated CSV.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, StringConstraints, ValidationError, field_validator

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
    md_bullets,
    messages,
    raw_record,
)
from planexe_assets.steps.durations import TaskTimeEstimateDetail, parse_task_durations
from planexe_assets.steps.wbs_tree import (
    WBSFormatError,
    WBSNode,
    is_uuid,
    new_id,
    parse_level1_clean,
    parse_level2_clean,
    parse_project_title,
    parse_wbs_project,
    wbs_csv,
    wbs_project_document,
)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

FAST_MODE_LEAVES = 2


def _project_plan_json(inputs: StepInputs) -> str:
    plan = inputs["project_plan"].json("raw")
    if not isinstance(plan, dict):
        raise StepError("the project-plan raw file must hold a JSON object")
    return compact_json_for_prompt(plan)


# ---------------------------------------------------------------------------------------------------
# Level 1: the project itself
# ---------------------------------------------------------------------------------------------------

LEVEL1_SYSTEM_PROMPT = """
You name a project for its work breakdown structure. The user message holds the project plan as JSON.

Reply with:
- `project_title`: a short, specific name for the whole undertaking (typically 2 to 6 words), the
  kind of title that heads a report or a Gantt chart.
- `final_deliverable`: a short phrase naming the tangible end result handed over when the project is
  complete (for example "Operational water treatment plant", not a list of activities).

Reply with JSON only.
"""


class WBSLevel1(BaseModel):
    project_title: Text = Field(description="Short, specific name of the whole project.")
    final_deliverable: Text = Field(description="The tangible end result delivered when the project is done.")


@register(
    "wbs_level1",
    models={
        "raw": WBSLevel1,
        "clean": Reader(parse_level1_clean),
        "project_title": Reader(parse_project_title, takes="text"),
    },
)
def run_wbs_level1(ctx: StepContext, inputs: StepInputs) -> StepResult:
    user_prompt = bundle(("project-plan.json", _project_plan_json(inputs)))
    reply = ctx.llm.structured(messages(LEVEL1_SYSTEM_PROMPT, user_prompt), WBSLevel1, label="wbs_level1")
    level1 = reply.value
    clean = {
        "id": new_id(),
        "project_title": level1.project_title,
        "final_deliverable": level1.final_deliverable,
    }
    outputs = ctx.step.outputs
    return StepResult(
        files={
            outputs["raw"]: dump_json(raw_record(reply, LEVEL1_SYSTEM_PROMPT.strip(), user_prompt)),
            outputs["clean"]: dump_json(clean),
            # A JSON string, so the file is valid JSON; PlanExe's plain-text form is still read back.
            outputs["project_title"]: dump_json(level1.project_title),
        },
        notes={"project_title": level1.project_title, "root_id": clean["id"]},
    )


def render_wbs_level1(level1: WBSLevel1) -> str:
    return f"# {level1.project_title}\n\n**Final deliverable:** {level1.final_deliverable}\n"


# ---------------------------------------------------------------------------------------------------
# Level 2: phases and their subtasks
# ---------------------------------------------------------------------------------------------------

LEVEL2_SYSTEM_PROMPT = """
You draft the top of a work breakdown structure (WBS). The user message holds the project's strategic
decisions, the chosen scenario, the project plan, the data-collection plan, and the project title
with its final deliverable (level 1 of the WBS, as JSON).

Break the project into its major phases (level 2), in the order they happen, and each phase into its
subtasks. Together the phases must cover all the work needed to produce the final deliverable,
including the approvals, research and validation the other documents call for, without overlapping
each other. Most projects need 5 to 9 phases with 3 to 8 subtasks each.

Reply with `major_phase_details`, one entry per phase:
- `major_phase_wbs_number`: the phase's number as text: "1", "2", ...
- `major_phase_title`: a short, action-oriented name for the phase.
- `subtasks`: the phase's subtasks, each with `subtask_wbs_number` ("1.1", "1.2", ...) and
  `subtask_title`, a concise title that starts with a verb ("Secure building permits").

Reply with JSON only.
"""


def _number_as_text(value: object) -> object:
    # A WBS number is a label; some models send 1 or 1.1 as JSON numbers.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


WBSNumber = Annotated[str, BeforeValidator(_number_as_text)]


class SubtaskDetails(BaseModel):
    subtask_wbs_number: WBSNumber = Field(description='The subtask\'s WBS number as text, such as "2.3".')
    subtask_title: Text = Field(description="Concise subtask title starting with a verb.")


class MajorPhaseDetails(BaseModel):
    major_phase_wbs_number: WBSNumber = Field(description='The phase\'s WBS number as text, such as "2".')
    major_phase_title: Text = Field(description="Short, action-oriented phase name.")
    subtasks: list[SubtaskDetails] = Field(description="The subtasks that make up this phase, in order.")


class WorkBreakdownStructure(BaseModel):
    major_phase_details: list[MajorPhaseDetails] = Field(
        min_length=1, description="Every major phase of the project, in the order they happen."
    )


@register("wbs_level2", models={"raw": WorkBreakdownStructure, "clean": Reader(parse_level2_clean)})
def run_wbs_level2(ctx: StepContext, inputs: StepInputs) -> StepResult:
    level1 = parse_level1_clean(inputs["wbs_level1"].json("clean"))
    user_prompt = bundle(
        ("strategic_decisions.md", inputs["strategic_decisions_markdown"].text("markdown")),
        ("scenarios.md", inputs["scenarios_markdown"].text("markdown")),
        ("project-plan.md", inputs["project_plan"].text("markdown")),
        ("data-collection.md", inputs["data_collection"].text("markdown")),
        (
            "wbs-level1.json",
            compact_json_for_prompt(
                {"project_title": level1.project_title, "final_deliverable": level1.final_deliverable}
            ),
        ),
    )
    reply = ctx.llm.structured(
        messages(LEVEL2_SYSTEM_PROMPT, user_prompt), WorkBreakdownStructure, label="wbs_level2"
    )
    wbs = reply.value
    clean = [
        {
            "id": new_id(),
            "major_phase_title": phase.major_phase_title,
            "subtasks": [{"id": new_id(), "description": sub.subtask_title} for sub in phase.subtasks],
        }
        for phase in wbs.major_phase_details
    ]
    empty = [phase.major_phase_title for phase in wbs.major_phase_details if not phase.subtasks]
    outputs = ctx.step.outputs
    return StepResult(
        files={
            outputs["raw"]: dump_json(raw_record(reply, LEVEL2_SYSTEM_PROMPT.strip(), user_prompt)),
            outputs["clean"]: dump_json(clean),
        },
        notes={
            "phases": len(clean),
            "subtasks": sum(len(phase["subtasks"]) for phase in clean),
            # A phase without subtasks is kept; it becomes a leaf that level 3 decomposes itself.
            "phases_without_subtasks": empty,
        },
    )


def render_wbs_level2(wbs: WorkBreakdownStructure) -> str:
    """Each phase as a heading with its number, its subtasks as numbered bullets."""
    sections = []
    for phase in wbs.major_phase_details:
        lines = [f"## {phase.major_phase_wbs_number} {phase.major_phase_title}", ""]
        lines += [f"- {sub.subtask_wbs_number} {sub.subtask_title}" for sub in phase.subtasks] or [
            "_No subtasks._"
        ]
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


# ---------------------------------------------------------------------------------------------------
# Levels 1 and 2 as one tree
# ---------------------------------------------------------------------------------------------------


@register("wbs_project_level1_and_level2", models={"": Reader(parse_wbs_project)})
def run_wbs_project_level1_and_level2(ctx: StepContext, inputs: StepInputs) -> StepResult:
    level1 = parse_level1_clean(inputs["wbs_level1"].json("clean"))
    phases = parse_level2_clean(inputs["wbs_level2"].json("clean"))
    extra = {"final_deliverable": level1.final_deliverable} if level1.final_deliverable else {}
    root = WBSNode(id=level1.id, description=level1.project_title, extra_fields=extra)
    for phase in phases:
        phase_node = root.add_child(WBSNode(id=phase.id, description=phase.major_phase_title))
        for sub in phase.subtasks:
            phase_node.add_child(WBSNode(id=sub.id, description=sub.description))
    root = WBSNode.from_dict(root.to_dict())  # the level-1 id must not repeat a level-2 id either
    # Ids made elsewhere (an imported run) may not be uuids; the tree still works, so only report it.
    not_uuid = [node.id for node, _ in root.walk() if not is_uuid(node.id)]
    if not_uuid:
        ctx.logger.warning("wbs_project_level1_and_level2: ids that are not uuids: %s", not_uuid)
    return StepResult(
        files={ctx.step.outputs[""]: dump_json(wbs_project_document(root))},
        notes={
            "phases": len(root.children),
            "tasks": len(root.descendants()) - len(root.children),
            "ids_not_uuid": not_uuid,
        },
    )


# ---------------------------------------------------------------------------------------------------
# Level 3: work packages for each leaf task
# ---------------------------------------------------------------------------------------------------

LEVEL3_SYSTEM_PROMPT = """
You split one task of a work breakdown structure (WBS) into the work packages that deliver it. The
user message holds the project plan as JSON, the data-collection plan, the whole WBS as JSON (nodes
with `id`, `description`, `task_children` and, where estimated, `days_min`, `days_realistic` and
`days_max`), and finally the one task to split, named by its id.

Split only that task. Reply with `subtasks`, usually 3 to 7 of them, in the order the work is done.
Together they must deliver the whole task and fit within its estimated duration, and they must not
repeat work that other tasks in the WBS already cover. For each give:
- `name`: a short title that starts with a verb.
- `description`: a few sentences on the objective, the scope, the main steps and the deliverables.
- `resources_needed`: the people, skills, equipment, materials or data the work package needs.

Reply with JSON only.
"""


class WBSSubtask(BaseModel):
    name: Text = Field(description="Short title of the work package, starting with a verb.")
    description: str = Field(description="Objective, scope, main steps and deliverables of the work package.")
    resources_needed: list[str] = Field(description="People, skills, equipment, materials or data it needs.")

    @field_validator("resources_needed", mode="before")
    @classmethod
    def _one_resource_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class WBSTaskDetails(BaseModel):
    subtasks: list[WBSSubtask] = Field(
        min_length=1, description="The work packages that deliver the one task."
    )


def parse_level3(data: Any) -> list[Level3Item]:
    if not isinstance(data, list):
        raise WBSFormatError(f"the level-3 WBS file is {type(data).__name__}, expected a list")
    try:
        return [Level3Item.model_validate(item) for item in data]
    except ValidationError as exc:
        raise WBSFormatError(f"the level-3 WBS file is malformed: {exc}") from exc


@register("wbs_level3", models={"task_raw": WBSTaskDetails, "": Reader(parse_level3)})
def run_wbs_level3(ctx: StepContext, inputs: StepInputs) -> StepResult:
    root = parse_wbs_project(inputs["wbs_project"].json())
    estimates = parse_task_durations(inputs["task_durations"].json())
    nodes = root.index()
    unmatched = sorted({e.task_id for e in estimates} - set(nodes))
    if unmatched:
        ctx.logger.warning("wbs_level3: duration estimates for ids not in the WBS: %s", unmatched)
    leaves = root.leaves()
    if not leaves:
        raise StepError("the WBS has no tasks below the project root; nothing to decompose")
    selected = leaves[:FAST_MODE_LEAVES] if ctx.fast else leaves
    parents = root.parents()
    plan_json = _project_plan_json(inputs)
    data_collection = inputs["data_collection"].text("markdown")
    tree_json = compact_json_for_prompt(_tree_with_estimates(root, {e.task_id: e for e in estimates}))

    def decompose(job: tuple[int, WBSNode]) -> tuple[StructuredReply[WBSTaskDetails], str]:
        index, leaf = job
        parent = parents.get(leaf.id)
        task = {"id": leaf.id, "description": leaf.description}
        if parent is not None:
            task["part_of"] = parent.description
        user_prompt = bundle(
            ("project-plan.json", plan_json),
            ("data-collection.md", data_collection),
            ("work-breakdown-structure.json", tree_json),
            ("task-to-decompose.json", compact_json_for_prompt(task)),
        )
        reply = ctx.llm.structured(
            messages(LEVEL3_SYSTEM_PROMPT, user_prompt), WBSTaskDetails, label=f"wbs_level3 task {index}"
        )
        return reply, user_prompt

    jobs = list(enumerate(selected, start=1))

    def every_task_failed(failed_outcomes) -> str:
        errors = "; ".join(f"{jobs[o.index][1].description}: {o.error}" for o in failed_outcomes)
        return f"every level-3 decomposition failed: {errors}"

    outcomes = ctx.map_concurrent(decompose, jobs, all_failed=every_task_failed)

    side_files: dict[str, str] = {}
    items: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for outcome, (index, leaf) in zip(outcomes, jobs, strict=True):
        if not outcome.ok:
            failed.append({"task_id": leaf.id, "description": leaf.description, "error": str(outcome.error)})
            ctx.logger.warning(
                "wbs_level3: task %s (%s) failed: %s", leaf.id, leaf.description, outcome.error
            )
            continue
        reply, user_prompt = outcome.result()
        side_files[ctx.step.side_file("task_raw", index)] = dump_json(
            raw_record(reply, LEVEL3_SYSTEM_PROMPT.strip(), user_prompt, task_id=leaf.id)
        )
        items.extend(
            {
                "id": new_id(),
                "name": sub.name,
                "description": sub.description,
                "resources_needed": sub.resources_needed,
                "parent_id": leaf.id,
            }
            for sub in reply.value.subtasks
        )
    return StepResult(
        files={ctx.step.outputs[""]: dump_json(items)},
        side_files=side_files,
        notes={
            "leaf_tasks": len(leaves),
            "decomposed": len(jobs) - len(failed),
            "work_packages": len(items),
            "skipped_in_fast_mode": len(leaves) - len(selected),
            "failed_tasks": failed,
            "durations_for_unknown_ids": unmatched,
        },
    )


def _tree_with_estimates(root: WBSNode, estimates: dict[str, TaskTimeEstimateDetail]) -> dict[str, Any]:
    """The tree as the model sees it: each node with its duration estimate, when there is one."""

    def node_dict(node: WBSNode) -> dict[str, Any]:
        data: dict[str, Any] = {"id": node.id, "description": node.description}
        estimate = estimates.get(node.id)
        if estimate is not None and estimate.days_realistic >= 0:
            data.update(
                days_min=estimate.days_min, days_realistic=estimate.days_realistic, days_max=estimate.days_max
            )
        if node.children:
            data["task_children"] = [node_dict(child) for child in node.children]
        return data

    return node_dict(root)


def render_wbs_level3(details: WBSTaskDetails, task_description: str) -> str:
    """The work packages of one task: name, description and resources of each."""
    sections = [f"## {task_description}"]
    for sub in details.subtasks:
        sections.append(
            "\n\n".join(
                [
                    f"### {sub.name}",
                    sub.description.strip() or "_No description._",
                    "**Resources needed:**",
                    md_bullets(sub.resources_needed),
                ]
            )
        )
    return "\n\n".join(sections) + "\n"


# ---------------------------------------------------------------------------------------------------
# Levels 1, 2 and 3 as one tree, plus the CSV export
# ---------------------------------------------------------------------------------------------------


class Level3Item(BaseModel):
    """One entry of ``023-2-wbs_level3.json``."""

    id: str
    name: str
    description: str
    resources_needed: list[str]
    parent_id: str


@register("wbs_project_level1_and_level2_and_level3", models={"full": Reader(parse_wbs_project)})
def run_wbs_project_level1_and_level2_and_level3(ctx: StepContext, inputs: StepInputs) -> StepResult:
    root = parse_wbs_project(inputs["wbs_project12"].json())
    items = parse_level3(inputs["wbs_level3"].json())
    nodes = root.index()
    orphans: list[dict[str, str]] = []
    for item in items:
        parent = nodes.get(item.parent_id)
        if parent is None:
            orphans.append({"id": item.id, "name": item.name, "parent_id": item.parent_id})
            ctx.logger.warning("wbs level 3 item %r names unknown parent %s", item.name, item.parent_id)
            continue
        parent.add_child(
            WBSNode(
                id=item.id,
                description=item.name,
                extra_fields={
                    "detailed_description": item.description,
                    "resources_needed": item.resources_needed,
                },
            )
        )
    root = WBSNode.from_dict(root.to_dict())  # rejects a level-3 id that repeats an existing one
    outputs = ctx.step.outputs
    return StepResult(
        files={outputs["full"]: dump_json(wbs_project_document(root)), outputs["csv"]: wbs_csv(root)},
        notes={
            "nodes": len(root.descendants()) + 1,
            "levels": root.depth,
            "work_packages_attached": len(items) - len(orphans),
            # Items whose parent is not in the tree cannot be placed; they are listed, not lost quietly.
            "orphaned_work_packages": orphans,
        },
    )
