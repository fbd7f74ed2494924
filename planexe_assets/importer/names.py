"""The file names of PlanExe's two naming eras, and the one 2026 output we translate.

Until 2026-04-08 PlanExe named every output ``NNN-M-name.ext`` (``002-5-identify_purpose_raw.json``);
since then it writes the same files without the prefix (``identify_purpose_raw.json``), its prompt
arrives as ``plan_raw.json`` (the caller-written input that ``SetupTask`` turns into ``plan.txt``),
and ``TriageLeversTask`` has replaced ``DeduplicateLeversTask`` (``triaged_levers_raw.json``).

Our step table keeps the numbered names (the 2026 steps use the numbered names upstream gave them
before the prefixes were dropped, or their neighbours' prefix). So a 2026 run directory is imported
by renaming: each unnumbered file whose name is one of our files with the prefix removed is stored
under our name (``UNNUMBERED``); the triage files go to the deduplication step they replace. The
triage raw file is translated into the deduplication record our ``enrich_levers`` reads
(``triaged_to_deduplicated``): both triage classes that survive (``primary``, ``secondary``) become
``keep``, ``remove`` stays ``remove``, and each kept lever keeps its triage class. Per-item files
(expert criticisms, document drafts, duration chunks, WBS level 3) have no documented unnumbered
name; they are imported under their own names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from planexe_assets.core import STEPS, step_file
from planexe_assets.core.step_table import TEMPLATE_SLOT

NUMBER_PREFIX = re.compile(r"^\d{3}(?:-\d+)*-")
PLAN_TXT_2026 = "plan.txt"
PLAN_RAW_2026 = "plan_raw.json"
TRIAGED_RAW_2026 = "triaged_levers_raw.json"
TRIAGED_CHECK_2026 = "triaged_levers_constraint.json"
TRIAGE_KEEPS = {"primary", "secondary"}


def unnumbered(name: str) -> str:
    """``002-5-identify_purpose_raw.json`` -> ``identify_purpose_raw.json``."""
    return NUMBER_PREFIX.sub("", name, count=1)


def _unnumbered_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for s in STEPS:
        for ours in (*s.filenames, *s.side_outputs):
            if TEMPLATE_SLOT in ours:
                continue
            bare = unnumbered(ours)
            if bare == ours:
                continue
            if bare in names:  # pragma: no cover - static data, checked by the tests
                raise RuntimeError(f"{ours} and {names[bare]} both lose their prefix to {bare}")
            names[bare] = ours
    return names


# 2026 (unnumbered) name -> our (numbered) name.
UNNUMBERED: Mapping[str, str] = {
    **_unnumbered_names(),
    TRIAGED_CHECK_2026: step_file("deduplicated_levers_constraint"),
}


def is_unnumbered_run(names: set[str]) -> bool:
    """A run of the unnumbered era: its prompt is ``plan.txt`` or ``plan_raw.json``, not ``001-2-plan.txt``."""
    return step_file("setup") not in names and bool({PLAN_TXT_2026, PLAN_RAW_2026} & names)


def prompt_from_plan_raw(text: str) -> str:
    """The bare prompt in ``plan_raw.json``: a JSON string, or an object's ``prompt`` or
    ``plan_prompt`` text. Raises ``ValueError`` saying what was found instead."""
    data = json.loads(text)
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in ("prompt", "plan_prompt"):
            if isinstance(data.get(key), str) and data[key].strip():
                return data[key]
        raise ValueError(f"an object without a 'prompt' text (keys: {', '.join(sorted(data)) or 'none'})")
    raise ValueError(f"a JSON {type(data).__name__}, not a string or an object")


def triaged_to_deduplicated(text: str) -> str:
    """``triaged_levers_raw.json`` (TriageLevers) as our ``002-11-deduplicated_levers_raw.json``.

    The survivors (``triaged_levers``) become ``deduplicated_levers`` unchanged (they keep their
    ``classification`` and ``deduplication_justification``); the decisions in ``response`` are mapped
    to our three classes, the triage class kept beside it as ``triage_classification``. Raises
    ``ValueError`` when the file has no lever list.
    """
    data: Any = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("triaged_levers"), list):
        raise ValueError("no 'triaged_levers' list")
    decisions = data.get("response")
    if isinstance(decisions, dict):
        decisions = decisions.get("decisions")
    mapped: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    for item in decisions if isinstance(decisions, list) else []:
        if not isinstance(item, dict):
            continue
        triage = str(item.get("classification", "")).strip().lower()
        ours = "keep" if triage in TRIAGE_KEEPS else "remove" if triage == "remove" else None
        if ours is None:
            continue
        decision = {
            "lever_id": str(item.get("lever_id", "")),
            "classification": ours,
            "justification": str(item.get("justification", "")),
            "triage_classification": triage,
        }
        mapped.append(decision)
        if ours == "remove":
            removed.append({k: decision[k] for k in ("lever_id", "classification", "justification")})
    record = {k: v for k, v in data.items() if k not in {"triaged_levers", "response"}}
    record["response"] = mapped
    record["deduplicated_levers"] = data["triaged_levers"]
    record["removed_levers"] = removed
    record["imported_from"] = TRIAGED_RAW_2026
    return json.dumps(record, indent=2, ensure_ascii=False) + "\n"


__all__ = [
    "PLAN_RAW_2026",
    "PLAN_TXT_2026",
    "TRIAGED_CHECK_2026",
    "TRIAGED_RAW_2026",
    "UNNUMBERED",
    "is_unnumbered_run",
    "prompt_from_plan_raw",
    "triaged_to_deduplicated",
    "unnumbered",
]
