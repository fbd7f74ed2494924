"""The work breakdown structure as a tree: nodes with an id, a description and children.

Three on-disk shapes meet here, and every WBS reader should go through this module:

- ``019-wbs_project_level1_and_level2.json`` and ``023-3-…json``: ``{"wbs_project": node}`` where a
  node is ``{"id", "description", "extra_fields"?, "task_children"?}`` (optional keys are left out
  when empty, as PlanExe writes them);
- ``023-4-…csv``: ``Level 1;…;Level N;Task ID``, one row per node in pre-order;
- ``018-3-wbs_level1_project_title.json``: the project title. PlanExe wrote the bare title as plain
  text despite the ``.json`` name; we write a JSON string. ``parse_project_title`` reads both.

No LLM code lives here: the WBS steps build the tree, the schedule step walks it.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from planexe_assets.core import StepError
from planexe_assets.steps.common import one_line


class WBSFormatError(StepError):
    """A WBS file (or the data it was built from) does not have the expected shape."""


@dataclass
class WBSNode:
    id: str
    description: str
    extra_fields: dict[str, Any] = field(default_factory=dict)
    children: list[WBSNode] = field(default_factory=list)

    # -- building -----------------------------------------------------------------------------------

    def add_child(self, child: WBSNode) -> WBSNode:
        self.children.append(child)
        return child

    # -- walking ------------------------------------------------------------------------------------

    def walk(self, depth: int = 1) -> Iterator[tuple[WBSNode, int]]:
        """Every node with its depth (this node is ``depth``, 1 for the root), in pre-order."""
        yield self, depth
        for child in self.children:
            yield from child.walk(depth + 1)

    def walk_with_parent(self, parent: WBSNode | None = None) -> Iterator[tuple[WBSNode, WBSNode | None]]:
        """Every node with its parent (``None`` for this node), in pre-order."""
        yield self, parent
        for child in self.children:
            yield from child.walk_with_parent(self)

    def descendants(self) -> list[WBSNode]:
        """Every node below this one, in pre-order (the root itself excluded)."""
        return [node for node, _ in self.walk()][1:]

    def leaves(self) -> list[WBSNode]:
        """The nodes below this one that have no children, in pre-order."""
        return [node for node in self.descendants() if not node.children]

    @property
    def depth(self) -> int:
        """Number of levels, this node counting as level 1."""
        return max(depth for _, depth in self.walk())

    def index(self) -> dict[str, WBSNode]:
        """Nodes by id. Ids are unique in a tree built by ``from_dict``."""
        return {node.id: node for node, _ in self.walk()}

    def parents(self) -> dict[str, WBSNode | None]:
        """Each node id mapped to its parent node (``None`` for this node)."""
        return {node.id: parent for node, parent in self.walk_with_parent()}

    def find(self, node_id: str) -> WBSNode | None:
        for node, _ in self.walk():
            if node.id == node_id:
                return node
        return None

    # -- serialising --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The reference node shape; ``extra_fields`` and ``task_children`` only when non-empty."""
        data: dict[str, Any] = {"id": self.id, "description": self.description}
        if self.extra_fields:
            data["extra_fields"] = dict(self.extra_fields)
        if self.children:
            data["task_children"] = [child.to_dict() for child in self.children]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> WBSNode:
        """Parse one node and its subtree; raise ``WBSFormatError`` on a bad shape or a repeated id."""
        root = _node_from_dict(data, path="wbs_project")
        seen: set[str] = set()
        for node, _ in root.walk():
            if node.id in seen:
                raise WBSFormatError(f"WBS node id {node.id} appears more than once")
            seen.add(node.id)
        return root


def _node_from_dict(data: Any, path: str) -> WBSNode:
    if not isinstance(data, dict):
        raise WBSFormatError(f"WBS node at {path} is {type(data).__name__}, expected an object")
    node_id = data.get("id")
    if not isinstance(node_id, str) or not node_id.strip():
        raise WBSFormatError(f"WBS node at {path} has no string 'id'")
    description = data.get("description")
    if not isinstance(description, str):
        raise WBSFormatError(f"WBS node {node_id} at {path} has no string 'description'")
    extra = data.get("extra_fields") or {}
    if not isinstance(extra, dict):
        raise WBSFormatError(f"WBS node {node_id}: 'extra_fields' must be an object")
    children_data = data.get("task_children") or []
    if not isinstance(children_data, list):
        raise WBSFormatError(f"WBS node {node_id}: 'task_children' must be a list")
    children = [_node_from_dict(child, f"{path}/{i}") for i, child in enumerate(children_data)]
    return WBSNode(id=node_id.strip(), description=description, extra_fields=dict(extra), children=children)


def new_id() -> str:
    """WBS ids are uuid4 strings made in Python, never by the model."""
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def parse_wbs_project(data: Any) -> WBSNode:
    """The root of a ``{"wbs_project": node}`` document (a bare node object is accepted too)."""
    if isinstance(data, dict) and "wbs_project" in data:
        return WBSNode.from_dict(data["wbs_project"])
    if isinstance(data, dict) and "id" in data and "description" in data:
        return WBSNode.from_dict(data)
    raise WBSFormatError("expected a JSON object with a 'wbs_project' tree")


def wbs_project_document(root: WBSNode) -> dict[str, Any]:
    """The on-disk document for a tree: ``{"wbs_project": node}``."""
    return {"wbs_project": root.to_dict()}


def wbs_csv(root: WBSNode) -> str:
    """``Level 1;…;Level N;Task ID``: one row per node in pre-order, its description in its depth column.

    Cells are quoted only when they contain ``;``, a quote or a line break, so ordinary WBS text reads
    exactly like PlanExe's export while unusual text still round-trips through a CSV reader.
    """
    levels = root.depth
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([f"Level {i}" for i in range(1, levels + 1)] + ["Task ID"])
    for node, depth in root.walk():
        row = [""] * levels
        row[depth - 1] = node.description
        writer.writerow(row + [node.id])
    return out.getvalue()


def parse_project_title(text: str) -> str:
    """The title from ``018-3-wbs_level1_project_title.json`` in any of the forms in the wild.

    Our steps write a JSON string (``"Silo Construction"``); imported PlanExe runs hold the bare title
    as plain text; a JSON object with ``project_title`` is accepted as well.
    """
    stripped = text.strip()
    title: Any = stripped
    try:
        decoded = json.loads(stripped)
    except json.JSONDecodeError:
        decoded = None
    if isinstance(decoded, str):
        title = decoded
    elif isinstance(decoded, dict) and isinstance(decoded.get("project_title"), str):
        title = decoded["project_title"]
    # Anything else that happens to parse as JSON (a title like "2049" or "[Draft] Silo") is plain text.
    title = title.strip()
    if not title:
        raise WBSFormatError("the project-title file is empty")
    return title


class Level1Record(BaseModel):
    """``018-2-wbs_level1.json``: the root's id plus the title and deliverable the model named."""

    id: str
    project_title: str
    final_deliverable: str = ""


class Level2Subtask(BaseModel):
    id: str
    description: str


class Level2Phase(BaseModel):
    """One entry of ``018-5-wbs_level2.json``."""

    id: str
    major_phase_title: str
    subtasks: list[Level2Subtask] = []


def parse_level1_clean(data: Any) -> Level1Record:
    try:
        return Level1Record.model_validate(data)
    except ValidationError as exc:
        raise WBSFormatError(f"the clean WBS level-1 file is malformed: {exc}") from exc


def parse_level2_clean(data: Any) -> list[Level2Phase]:
    """The phases of the clean level-2 file; raise on a bad shape, no phases or a repeated id."""
    if not isinstance(data, list):
        raise WBSFormatError(
            f"the clean WBS level-2 file is {type(data).__name__}, expected a list of phases"
        )
    try:
        phases = [Level2Phase.model_validate(item) for item in data]
    except ValidationError as exc:
        raise WBSFormatError(f"the clean WBS level-2 file is malformed: {exc}") from exc
    if not phases:
        raise WBSFormatError("the clean WBS level-2 file has no phases")
    seen: set[str] = set()
    for node_id in [p.id for p in phases] + [s.id for p in phases for s in p.subtasks]:
        if node_id in seen:
            raise WBSFormatError(f"WBS level-2 id {node_id} appears more than once")
        seen.add(node_id)
    return phases


def render_wbs_tree(root: WBSNode) -> str:
    """A nested bullet outline of the tree, every node with its id and extra fields."""
    lines: list[str] = []
    for node, depth in root.walk():
        indent = "  " * (depth - 1)
        lines.append(f"{indent}- **{one_line(node.description)}** `{node.id}`")
        for key, value in node.extra_fields.items():
            label = key.replace("_", " ").capitalize()
            if isinstance(value, list):
                lines.append(f"{indent}  - {label}:")
                lines.extend(f"{indent}    - {one_line(item)}" for item in value)
            else:
                lines.append(f"{indent}  - {label}: {one_line(value)}")
    return "\n".join(lines) + "\n"
