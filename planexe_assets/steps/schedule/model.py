"""The schedule's model: durations, links and critical-path dates of every WBS task.

How the schedule is made:

1. **Durations.** A task's estimate is its ``days_realistic`` (negative means "not applicable" and
   counts as 1). The WBS is resolved bottom-up: a task without children lasts its estimate (1 when
   it has none); a parent lasts the sum of its children; a parent estimate larger than that sum is
   spread over the children in proportion to their lengths (exact integers, so the parent keeps its
   estimate); every task lasts at least one day.
2. **Links.** The WBS gives the skeleton: a parent's first child starts with it (SS), its last child
   finishes with it (FF) and siblings run one after the other in WBS order (FS), all without lag.
   The model's dependencies are added as FS links when they fit the WBS; a dependency naming an
   unknown task, or one that would create a cycle once parents are taken to span their children
   (for example a task waiting for a later sibling or for its own phase), is left out and reported.
   Because siblings are chained in WBS order, a dependency that fits is already honoured by that
   order: it adds a link to the charts but moves no date.
3. **Critical path.** ``cpm.compute_schedule`` gives every task its early/late dates and float;
   day 0 is the UTC date of ``001-1-start_time.json``. For the late dates, a parent's links to what
   follows it (FS/FF) also bind every task inside it (``inherited_links``), so float measures real
   slack rather than slack up to the project's end.

Everything left out or adjusted is listed by ``ProjectSchedule.report_lines``.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from planexe_assets.core import StepError
from planexe_assets.steps.common import humanize_key, one_line
from planexe_assets.steps.cpm import (
    Activity,
    CycleError,
    Link,
    LinkType,
    NetworkError,
    Timing,
    compute_schedule,
)
from planexe_assets.steps.durations import DependencyMapping, TaskTimeEstimateDetail
from planexe_assets.steps.wbs_tree import WBSNode

ADJUSTMENTS_HEADING = "Parent estimates that differ from their tasks"  # informational, not a problem


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------


def parse_day_zero(text: str) -> date:
    """The UTC date of the plan's start: day 0 of the schedule.

    Accepts PlanExe's ``{"server_iso_utc": ...}`` file and also a bare ISO timestamp (as JSON string
    or plain text), which is what PlanExe's FastAPI service wrote; a timestamp without an offset is
    taken to be UTC, as that service produced it with ``utcnow()``.
    """
    stripped = text.strip()
    try:
        data: Any = json.loads(stripped)
    except json.JSONDecodeError:
        data = stripped
    value = data.get("server_iso_utc") if isinstance(data, dict) else data
    if not isinstance(value, str) or not value.strip():
        raise StepError("the start-time file has no 'server_iso_utc' timestamp")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise StepError(f"the start-time file's timestamp {value!r} is not an ISO 8601 date-time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


# ---------------------------------------------------------------------------------------------------
# 1. Durations
# ---------------------------------------------------------------------------------------------------


@dataclass
class DurationPlan:
    """Whole days per task, plus what the resolution had to decide on the way."""

    days: dict[str, int]
    estimates: dict[str, int]  # the estimate used per task (negative/zero already raised to 1)
    issues: list[str] = field(default_factory=list)  # estimates that could not be used
    # Parents whose estimate did not match their children's total (informational).
    adjustments: list[str] = field(default_factory=list)

    def unestimated(self) -> list[str]:
        return [task_id for task_id in self.days if task_id not in self.estimates]


def resolve_durations(root: WBSNode, estimates: Sequence[TaskTimeEstimateDetail]) -> DurationPlan:
    """Resolve every task of the tree to a whole number of days (see the module docstring)."""
    known = root.index()
    used: dict[str, int] = {}
    stated: dict[str, int] = {}  # the model's own number, for messages
    issues: list[str] = []
    for estimate in estimates:
        task_id = estimate.task_id.strip()
        if task_id not in known:
            issues.append(f"an estimate names task id {task_id!r}, which is not in the WBS; it was not used")
        elif task_id in used:
            issues.append(f"task {_quote(known[task_id])} has more than one estimate; the first one was used")
        else:
            # -1 means "not applicable"; like a 0 it still occupies a day of the schedule.
            used[task_id] = max(1, estimate.days_realistic)
            stated[task_id] = estimate.days_realistic

    days: dict[str, int] = {}
    adjustments: list[str] = []

    def settle(node: WBSNode) -> int:
        own = used.get(node.id)
        if not node.children:
            days[node.id] = own if own is not None else 1
            return days[node.id]
        total = sum(settle(child) for child in node.children)
        if own is not None and own > total:
            adjustments.append(
                f"{_quote(node)} is estimated at {_days(own)} but its tasks add up to {_days(total)}; "
                f"its tasks were lengthened by {_days(own - total)} in all"
            )
            _spread(node, own - total, days)
            total = own
        elif own is not None and own < total:
            adjustments.append(
                f"{_quote(node)} is estimated at {_estimate_text(stated[node.id])} but its tasks add up to "
                f"{_days(total)}; it lasts {_days(total)}"
            )
        days[node.id] = total
        return total

    settle(root)
    ordered = {node.id: days[node.id] for node, _ in root.walk()}
    return DurationPlan(days=ordered, estimates=used, issues=issues, adjustments=adjustments)


def _spread(node: WBSNode, extra: int, days: dict[str, int]) -> None:
    """Add ``extra`` days over the children of ``node`` in proportion to their lengths, all the way down.

    Shares are whole days by largest remainder (ties to the earlier child), so they add up to exactly
    ``extra`` and every parent below stays the sum of its children.
    """
    weights = [days[child.id] for child in node.children]
    total = sum(weights)  # every child lasts at least a day, so this is positive
    shares = [extra * weight // total for weight in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(extra * weights[i] % total), i))
    for i in by_remainder[: extra - sum(shares)]:
        shares[i] += 1
    for child, share in zip(node.children, shares, strict=True):
        if share:
            days[child.id] += share
            if child.children:
                _spread(child, share, days)


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _estimate_text(stated: int) -> str:
    return f"{stated} (not applicable)" if stated < 0 else _days(stated)


def _quote(node: WBSNode) -> str:
    return f"'{one_line(node.description)}'"


# ---------------------------------------------------------------------------------------------------
# 2. Links
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedLink:
    link: Link
    origin: str  # "wbs" (the hierarchy skeleton) or "dependency" (from the model's dependency list)
    explanation: str = ""


@dataclass(frozen=True)
class DependencyVerdict:
    """One prerequisite the model named, and what the schedule did with it."""

    dependent_id: str
    prerequisite_id: str
    explanation: str
    accepted: bool
    reason: str = ""  # why it was left out
    implied: bool = False  # accepted, but the WBS order already guarantees it


def hierarchy_links(root: WBSNode) -> list[PlannedLink]:
    """SS from each parent to its first child, FF to its last child, FS between consecutive siblings.

    Listed per parent in that order, so a task's first predecessor is its parent when it is the first
    or the last child and its previous sibling otherwise: what PlanExe's CSV ``project_parent`` holds.
    """
    out: list[PlannedLink] = []
    for node, _ in root.walk():
        if not node.children:
            continue
        out.append(PlannedLink(Link(node.id, node.children[0].id, LinkType.SS), "wbs"))
        out.append(PlannedLink(Link(node.id, node.children[-1].id, LinkType.FF), "wbs"))
        for before, after in pairwise(node.children):
            out.append(PlannedLink(Link(before.id, after.id, LinkType.FS), "wbs"))
    return out


def inherited_links(root: WBSNode, links: Sequence[Link]) -> list[Link]:
    """Finish links of a parent, repeated for every task inside it (used by the critical path only).

    A parent finishes when the last of its tasks does, so whatever waits for the parent to finish
    (FS, FF) waits for each of its tasks too. PlanExe's links never say so: without these, a task in
    the first phase could "slip" to the end of the project on paper, and its float would mean nothing.
    They change no early date (a task never ends after its parent), only the late dates and float;
    they are not exported as links.
    """
    outgoing: dict[str, list[Link]] = {}
    for link in links:
        if link.type in (LinkType.FS, LinkType.FF):
            outgoing.setdefault(link.predecessor, []).append(link)
    out: list[Link] = []
    for node, _ in root.walk():
        if not node.children or node.id not in outgoing:
            continue
        inside = {d.id for d in node.descendants()}
        for link in outgoing[node.id]:
            if link.successor in inside:
                continue
            out.extend(Link(task_id, link.successor, link.type, link.lag) for task_id in sorted(inside))
    return out


Event = tuple[str, str]  # ("start" | "finish", task id)


class _OrderGraph:
    """What the WBS says about the order of events, used to vet the model's dependencies.

    Each task has a start and a finish event. A task starts before it finishes; a parent starts
    before its children start and finishes after they finish; a sibling starts after the previous
    one finishes; an accepted dependency makes the dependent start after the prerequisite finishes.
    A new dependency is contradictory exactly when the dependent's start already (transitively)
    precedes the prerequisite's finish: adding it would close a cycle.
    """

    def __init__(self, root: WBSNode):
        self.edges: dict[Event, list[Event]] = {}
        for node, parent in root.walk_with_parent():
            self._add(("start", node.id), ("finish", node.id))
            if parent is not None:
                self._add(("start", parent.id), ("start", node.id))
                self._add(("finish", node.id), ("finish", parent.id))
            for before, after in pairwise(node.children):
                self._add(("finish", before.id), ("start", after.id))

    def _add(self, source: Event, target: Event) -> None:
        self.edges.setdefault(source, []).append(target)
        self.edges.setdefault(target, [])

    def add_dependency(self, prerequisite: str, dependent: str) -> None:
        self._add(("finish", prerequisite), ("start", dependent))

    def path(self, source: Event, target: Event) -> list[Event] | None:
        """A shortest chain of events from ``source`` to ``target`` (breadth-first), or None."""
        came_from: dict[Event, Event | None] = {source: None}
        queue = deque([source])
        while queue:
            current = queue.popleft()
            if current == target:
                chain: list[Event] = []
                step: Event | None = current
                while step is not None:
                    chain.append(step)
                    step = came_from[step]
                return chain[::-1]
            for nxt in self.edges.get(current, ()):
                if nxt not in came_from:
                    came_from[nxt] = current
                    queue.append(nxt)
        return None


def vet_dependencies(root: WBSNode, mapping: DependencyMapping) -> list[DependencyVerdict]:
    """Accept or reject each prerequisite the model named, in the model's order (see ``_OrderGraph``)."""
    nodes = root.index()
    parents = root.parents()
    graph = _OrderGraph(root)
    verdicts: list[DependencyVerdict] = []
    seen: set[tuple[str, str]] = set()
    for row in mapping.task_dependency_details:
        dependent = row.dependent_task_id.strip()
        for i, raw_prerequisite in enumerate(row.depends_on_task_id_list):
            prerequisite = raw_prerequisite.strip()
            reasons = row.depends_on_task_explanation_list
            explanation = reasons[i].strip() if i < len(reasons) else ""
            problem = _dependency_problem(nodes, parents, graph, seen, dependent, prerequisite)
            if problem:
                verdicts.append(
                    DependencyVerdict(dependent, prerequisite, explanation, accepted=False, reason=problem)
                )
                continue
            implied = graph.path(("finish", prerequisite), ("start", dependent)) is not None
            graph.add_dependency(prerequisite, dependent)
            seen.add((prerequisite, dependent))
            verdicts.append(
                DependencyVerdict(dependent, prerequisite, explanation, accepted=True, implied=implied)
            )
    return verdicts


def _dependency_problem(
    nodes: Mapping[str, WBSNode],
    parents: Mapping[str, WBSNode | None],
    graph: _OrderGraph,
    seen: set[tuple[str, str]],
    dependent: str,
    prerequisite: str,
) -> str:
    """Why "``dependent`` waits for ``prerequisite``" cannot be used, or "" when it can."""
    if dependent not in nodes or prerequisite not in nodes:
        unknown = [repr(x) for x in (dependent, prerequisite) if x not in nodes]
        return f"names a task id that is not in the WBS: {', '.join(unknown)}"
    if dependent == prerequisite:
        return f"lists {_quote(nodes[dependent])} as depending on itself"
    if (prerequisite, dependent) in seen:
        return "repeats a dependency listed earlier"
    cycle = graph.path(("start", dependent), ("finish", prerequisite))
    if cycle is not None:
        return _cycle_reason(nodes, parents, dependent, prerequisite, cycle)
    return ""


def _cycle_reason(
    nodes: Mapping[str, WBSNode],
    parents: Mapping[str, WBSNode | None],
    dependent: str,
    prerequisite: str,
    chain: Sequence[Event],
) -> str:
    if _is_ancestor(parents, prerequisite, dependent):
        return (
            f"would create a cycle: {_quote(nodes[dependent])} is part of {_quote(nodes[prerequisite])}, "
            "so it cannot wait for it to finish"
        )
    if _is_ancestor(parents, dependent, prerequisite):
        return (
            f"would create a cycle: {_quote(nodes[prerequisite])} is part of {_quote(nodes[dependent])}, "
            "which therefore cannot wait for it to finish"
        )
    steps: list[str] = []
    for _, task_id in chain:
        if not steps or steps[-1] != task_id:
            steps.append(task_id)
    route = " -> ".join(_quote(nodes[task_id]) for task_id in steps)
    return (
        f"would create a cycle: the WBS order already has {_quote(nodes[prerequisite])} finishing after "
        f"{_quote(nodes[dependent])} starts (via {route})"
    )


def _is_ancestor(parents: Mapping[str, WBSNode | None], ancestor: str, task_id: str) -> bool:
    parent = parents.get(task_id)
    while parent is not None:
        if parent.id == ancestor:
            return True
        parent = parents.get(parent.id)
    return False


# ---------------------------------------------------------------------------------------------------
# 3. The schedule
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledTask:
    id: str
    name: str  # unique display name (repeated names get " (n)")
    description: str  # the WBS description, whitespace collapsed
    details: str  # plain-text tooltip: the description plus the node's extra fields
    parent_id: str | None
    is_summary: bool
    days: int
    timing: Timing
    start: date
    end: date  # exclusive: start + days
    predecessors: tuple[PlannedLink, ...]  # in link order: the first one is the CSV's project_parent


@dataclass
class ProjectSchedule:
    title: str
    day_zero: date
    tasks: list[ScheduledTask]  # WBS pre-order
    links: list[PlannedLink]
    dependencies: list[DependencyVerdict]
    durations: DurationPlan
    warnings: list[str]
    finish_day: int
    _by_id: dict[str, ScheduledTask] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {t.id: t for t in self.tasks}

    @property
    def finish(self) -> date:
        return self.day_zero + timedelta(days=self.finish_day)

    def task(self, task_id: str) -> ScheduledTask:
        return self._by_id[task_id]

    def rejected_dependencies(self) -> list[DependencyVerdict]:
        return [v for v in self.dependencies if not v.accepted]

    def accepted_dependencies(self) -> list[DependencyVerdict]:
        return [v for v in self.dependencies if v.accepted]

    def report_lines(self) -> list[tuple[str, list[str]]]:
        """Everything the schedule left out or adjusted, grouped under headings (empty groups dropped)."""
        names = {t.id: t.name for t in self.tasks}

        def name(task_id: str) -> str:
            return f"'{names[task_id]}'" if task_id in names else repr(task_id)

        rejected = [
            f"{name(v.dependent_id)} waits for {name(v.prerequisite_id)}: not used, it {v.reason}"
            + (f" (model's reason: {v.explanation})" if v.explanation else "")
            for v in self.rejected_dependencies()
        ]
        groups = [
            ("Dependencies left out", rejected),
            ("Duration estimates not used", list(self.durations.issues)),
            ("Critical-path warnings", list(self.warnings)),
            (ADJUSTMENTS_HEADING, list(self.durations.adjustments)),
        ]
        return [(heading, lines) for heading, lines in groups if lines]

    def summary(self) -> dict[str, Any]:
        accepted = self.accepted_dependencies()
        return {
            "tasks": len(self.tasks),
            "start": self.day_zero.isoformat(),
            "finish": self.finish.isoformat(),
            "days": self.finish_day,
            "estimated_tasks": len(self.durations.estimates),
            "tasks_without_estimate": len(self.durations.unestimated()),
            "dependencies_used": len(accepted),
            "dependencies_already_implied_by_wbs_order": sum(1 for v in accepted if v.implied),
            "dependencies_left_out": len(self.rejected_dependencies()),
            "critical_tasks": sum(1 for t in self.tasks if t.timing.critical),
        }


def build_schedule(
    root: WBSNode,
    estimates: Sequence[TaskTimeEstimateDetail],
    mapping: DependencyMapping,
    day_zero: date,
    title: str,
) -> ProjectSchedule:
    durations = resolve_durations(root, estimates)
    verdicts = vet_dependencies(root, mapping)
    planned = hierarchy_links(root) + [
        PlannedLink(Link(v.prerequisite_id, v.dependent_id, LinkType.FS), "dependency", v.explanation)
        for v in verdicts
        if v.accepted
    ]
    walk = list(root.walk_with_parent())
    names = dict(
        zip((node.id for node, _ in walk), unique_names([node.description for node, _ in walk]), strict=True)
    )
    activities = [Activity(node.id, Decimal(durations.days[node.id]), names[node.id]) for node, _ in walk]
    network = [p.link for p in planned]
    try:
        cpm = compute_schedule(activities, network + inherited_links(root, network))
    except CycleError as exc:  # the vetting above should make this impossible; say so clearly if not
        raise StepError(f"the schedule network is cyclic after vetting the dependencies: {exc}") from exc
    except NetworkError as exc:
        raise StepError(f"the schedule network is malformed: {exc}") from exc

    incoming: dict[str, list[PlannedLink]] = {node.id: [] for node, _ in walk}
    for p in planned:
        incoming[p.link.successor].append(p)

    tasks = []
    for node, parent in walk:
        timing = cpm.timings[node.id]
        tasks.append(
            ScheduledTask(
                id=node.id,
                name=names[node.id],
                description=one_line(node.description),
                details=task_details(node),
                parent_id=parent.id if parent is not None else None,
                is_summary=bool(node.children),
                days=durations.days[node.id],
                timing=timing,
                start=day_zero + timedelta(days=_whole_days(timing.es)),
                end=day_zero + timedelta(days=_whole_days(timing.ef)),
                predecessors=tuple(incoming[node.id]),
            )
        )
    warnings = list(cpm.warnings) + _containment_warnings(tasks)
    return ProjectSchedule(
        title=title,
        day_zero=day_zero,
        tasks=tasks,
        links=planned,
        dependencies=verdicts,
        durations=durations,
        warnings=warnings,
        finish_day=_whole_days(cpm.finish),
    )


def _whole_days(value: Decimal) -> int:
    if value != value.to_integral_value():
        raise StepError(f"the schedule produced a fractional day ({value}); durations must be whole days")
    return int(value)


def _containment_warnings(tasks: Sequence[ScheduledTask]) -> list[str]:
    """A task scheduled outside its parent's bar would make the chart contradict the WBS."""
    by_id = {t.id: t for t in tasks}
    out = []
    for t in tasks:
        parent = by_id.get(t.parent_id) if t.parent_id else None
        if parent is not None and (t.timing.es < parent.timing.es or t.timing.ef > parent.timing.ef):
            out.append(
                f"'{t.name}' (days {t.timing.es}-{t.timing.ef}) runs outside its parent "
                f"'{parent.name}' (days {parent.timing.es}-{parent.timing.ef})"
            )
    return out


def unique_names(descriptions: Sequence[str]) -> list[str]:
    """One-line task names; a name used more than once (ignoring case) gets " (1)", " (2)", ... each time."""
    names = [one_line(d) or "Untitled task" for d in descriptions]
    counts = Counter(n.casefold() for n in names)
    taken = {n.casefold() for n in names if counts[n.casefold()] == 1}
    next_number: Counter[str] = Counter()
    out = []
    for n in names:
        key = n.casefold()
        if counts[key] == 1:
            out.append(n)
            continue
        while True:
            next_number[key] += 1
            candidate = f"{n} ({next_number[key]})"
            if candidate.casefold() not in taken:
                break
        taken.add(candidate.casefold())
        out.append(candidate)
    return out


_DETAIL_LABELS = {
    "final_deliverable": "Final deliverable",
    "detailed_description": "Description",
    "resources_needed": "Resources needed",
}


def task_details(node: WBSNode) -> str:
    """The plain-text tooltip: the task's name, then each extra field of the node under its own label."""
    parts = [one_line(node.description)]
    for key, value in node.extra_fields.items():
        label = _DETAIL_LABELS.get(key) or humanize_key(key)
        if isinstance(value, list):
            body = "\n".join(f"• {one_line(item)}" for item in value)
        elif isinstance(value, dict):
            body = "\n".join(f"{humanize_key(str(k))}: {one_line(v)}" for k, v in value.items())
        else:
            body = str(value).strip()
        if body:
            parts.append(f"{label}:\n{body}")
    return "\n\n".join(parts)


def _link_label(p: PlannedLink, other: ScheduledTask) -> str:
    lag = "" if p.link.lag == 0 else f"{'+' if p.link.lag > 0 else ''}{p.link.lag}"
    return f"{other.name} {p.link.type}{lag}"


def predecessor_summary(schedule: ProjectSchedule, task: ScheduledTask) -> str:
    """``"Phase A SS, Task B FS"``: what the task waits for, like PlanExe's ``meta`` field."""
    return ", ".join(_link_label(p, schedule.task(p.link.predecessor)) for p in task.predecessors)
