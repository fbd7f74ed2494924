"""Plan ids: the one place that decides what a valid plan id is.

A plan id names a Dagster partition and a directory under ``$PLANEXE_HOME/runs``, so it must be
safe as both: ASCII letters, digits, ``_`` and ``-``, 1 to 64 characters, not starting with ``-``
(it would read as a command-line option). Anything else (path separators, ``..``, commas, which
Dagster uses to separate partition keys, spaces, unicode look-alikes) is refused before anything is
written.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

MAX_PLAN_ID_LENGTH = 64
_PLAN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")


class InvalidPlanId(ValueError):
    pass


def validate_plan_id(plan_id: object) -> str:
    if not isinstance(plan_id, str):
        raise InvalidPlanId(f"plan id must be a string, got {type(plan_id).__name__}")
    if plan_id == "":
        raise InvalidPlanId("plan id is empty")
    if len(plan_id) > MAX_PLAN_ID_LENGTH:
        raise InvalidPlanId(
            f"plan id is {len(plan_id)} characters long; at most {MAX_PLAN_ID_LENGTH} are allowed"
        )
    if not _PLAN_ID.fullmatch(plan_id):
        bad = sorted({ch for ch in plan_id if not (ch.isascii() and (ch.isalnum() or ch in "_-"))})
        detail = (
            f" (not allowed: {', '.join(repr(c) for c in bad)})" if bad else " (it may not start with '-')"
        )
        raise InvalidPlanId(
            f"invalid plan id {plan_id!r}: use ASCII letters, digits, '_' and '-' only{detail}"
        )
    return plan_id


def new_plan_id(now: datetime | None = None) -> str:
    """``PlanExe_<YYYYMMDD_HHMMSS>_<8 hex>``: sortable by time, unique without coordination."""
    now = now or datetime.now(UTC)
    return f"PlanExe_{now:%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:8]}"


def run_dir_for(plan_id: str, runs_root: Path) -> Path:
    """The run directory of a plan, guaranteed to sit directly inside ``runs_root``."""
    validate_plan_id(plan_id)
    root = runs_root.resolve()
    path = (root / plan_id).resolve()
    if path.parent != root:
        raise InvalidPlanId(f"plan id {plan_id!r} escapes the runs directory")
    return path
