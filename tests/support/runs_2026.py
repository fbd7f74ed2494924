"""A whole PlanExe run of the unnumbered (2026) era, assembled for tests.

``tests/fixtures/planexe_2026_run`` holds only the files 2026 adds (see its README); the rest is the
silo run of 2025 with its number prefixes removed, as upstream names them since April 2026, and with
its deduplication file replaced by the fixture's triage file (TriageLevers replaced DeduplicateLevers).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from planexe_assets.core import step_file, step_for_filename
from planexe_assets.importer.names import UNNUMBERED, unnumbered

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ADDED_2026 = FIXTURES / "planexe_2026_run"
SILO = FIXTURES / "planexe_runs" / "20250321_silo"


def added_files() -> dict[str, str]:
    """The fixture's files under their 2026 names (README excluded)."""
    return {
        p.name: p.read_text(encoding="utf-8") for p in sorted(ADDED_2026.iterdir()) if p.name != "README.md"
    }


def added_files_as_ours() -> dict[str, str]:
    """The fixture's files that our steps write, under our numbered names."""
    return {UNNUMBERED[name]: text for name, text in added_files().items() if name in UNNUMBERED}


def assemble_2026_run(dest: Path, *, with_plan_txt: bool = True) -> Path:
    """Write a complete 2026-style run directory to ``dest`` and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    skip = {step_file("deduplicate_levers", "raw")}
    if not with_plan_txt:
        skip.add(step_file("setup"))
    for path in sorted(SILO.iterdir()):
        if path.name in skip:
            continue
        # Per-item files (expert criticisms, drafts, duration chunks, WBS level 3) have no documented
        # unnumbered name: they keep theirs, which the importer maps by its templates.
        owner = step_for_filename(path.name)
        per_item = owner is not None and path.name not in owner.filenames
        shutil.copyfile(path, dest / (path.name if per_item else unnumbered(path.name)))
    for name, text in added_files().items():
        (dest / name).write_text(text, encoding="utf-8")
    return dest
