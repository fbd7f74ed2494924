"""What the read-only commands show on an 80-column terminal, and what they leave behind.

- ``planexe list`` in a real 80-column terminal (a pty) shows every plan id whole (generated ids are
  32 characters); it drops the prompt, model, time and failure columns before it would cut one.
- ``planexe status`` keeps each step (stage) name and byte count whole at 80 columns, and shows the
  failure fields and the LLM usage (completed calls and attempts, named as such).
- Checking a database that does not exist yet (``planexe db current``, ``list``, ``status``, a
  refused ``plan``) creates nothing: no SQLite file, not even the PLANEXE_HOME directory.
- A read-only PLANEXE_HOME: the error names the directory that cannot be written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planexe_assets.cli.app import app
from planexe_assets.core import STEP_BY_NAME
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from resources.plan_store import PlanStore
from tests.support.terminal import Terminal

REPO = Path(__file__).resolve().parent.parent
PLANEXE = [
    sys.executable,
    "-c",
    "import sys; from planexe_assets.cli.app import app; sys.argv[0] = 'planexe'; app()",
]
PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."
# Steps with the longest names and file names of the pipeline.
LONG_STEPS = [
    "governance_phase4_decision_escalation_matrix",
    "wbs_project_level1_and_level2_and_level3",
    "setup",
]


def _screen(args: list[str], env: dict[str, str], columns: int = 80) -> str:
    terminal = Terminal([*PLANEXE, *args], env, REPO, columns=columns)
    try:
        assert terminal.wait(timeout=120) == 0, terminal.plain
    finally:
        terminal.kill()
    return terminal.plain


@pytest.fixture
def plans(app_db, isolated_home):
    """Three plans with generated ids; one failed with its failure fields; one with files of the
    longest-named steps."""
    ids = [create_plan(app_db, PlanRequest(prompt=PROMPT * 2, model="offline")).plan_id for _ in range(3)]
    app_db.update_plan(
        ids[0],
        {
            "status": "failed",
            "failure_reason": "StepError: every model failed",
            "failed_step": "identify_purpose",
            "recoverable": False,
        },
    )
    store = PlanStore(app_db, isolated_home / "runs")
    for name in LONG_STEPS:
        step = STEP_BY_NAME[name]
        store.write(ids[1], step.name, {f: f"content of {f}\n" * 40 for f in step.filenames}, run_id="r1")
    return ids


def test_list_never_cuts_a_plan_id_at_80_columns(plans, app_db):
    env = dict(os.environ)
    screen = _screen(["list"], env)
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    for plan_id in plans:
        assert len(plan_id) == 32 and plan_id in screen, (plan_id, screen)
    assert not any(p[:20] in line and "…" in line.split("│")[1] for p in plans for line in lines)
    # Wider: more columns come back, the failure among them.
    wide = _screen(["list"], env, columns=160)
    assert "identify_purpose, needs a change" in wide and "created (UTC)" in wide


def test_status_keeps_stage_and_bytes_readable_at_80_columns(plans, app_db):
    plan_id = plans[1]
    screen = _screen(["status", plan_id], dict(os.environ))
    for line in screen.splitlines():
        if "│" in line or line.startswith(" "):
            assert len(line) <= 80, line
    for row in app_db.get_plan_content(plan_id):
        assert re.search(rf"^\s*{re.escape(row.stage)}\s*$", screen, re.M), f"stage {row.stage} is not whole"
        assert re.search(rf"{re.escape(row.filename)}\s+{row.content_size_bytes}\s", screen), row.filename
    assert plan_id in screen and "LLM calls: 0 completed, 0 attempts" in screen

    failed = _screen(["status", plans[0]], dict(os.environ))
    assert "failure_reason: StepError: every model failed" in failed
    assert "failed_step: identify_purpose" in failed and "recoverable: no" in " ".join(failed.split())


@pytest.mark.parametrize(
    "args",
    [
        ["db", "current"],
        ["list"],
        ["status", "p1"],
        ["plan", PROMPT, "--model", "offline", "--quiet"],
        ["resume", "p1"],
    ],
)
def test_checking_a_database_that_does_not_exist_creates_nothing(tmp_path, monkeypatch, args):
    home = tmp_path / "fresh" / "home"
    monkeypatch.setenv("PLANEXE_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, args)
    said = " ".join(result.output.split())
    if args[0] == "db":
        assert result.exit_code == 0 and "no database file yet; run: planexe db upgrade" in said, said
    else:
        assert result.exit_code == 1 and "revision none; run `planexe db upgrade` first" in said, said
    assert not home.exists() and not (tmp_path / "fresh").exists(), list(tmp_path.rglob("*"))


def _read_only(path: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``argv`` with ``path`` read-only: a read-only bind mount when this is root (root writes
    through permissions), else the directory's permissions."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        finally:
            path.chmod(0o755)
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("running as root without unshare(1): cannot make a directory read-only")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    done = subprocess.run(
        [unshare, "-m", "sh", "-c", script, str(path), *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if "mount" in done.stderr and (
        "permission denied" in done.stderr.lower() or "not permitted" in done.stderr.lower()
    ):
        pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
    return done


def test_a_read_only_planexe_home_is_named(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PLANEXE_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    env.pop("DAGSTER_HOME", None)
    for args in (["db", "upgrade"], ["list"], ["plan", PROMPT, "--model", "offline", "--quiet"]):
        done = _read_only(home, [*PLANEXE, *args], env)
        said = " ".join((done.stdout + done.stderr).split())
        assert done.returncode in (1, 2), said
        assert "Traceback" not in said, said
        assert (
            f"its directory {home} is not writable" in said or f"directory {home} is not writable" in said
        ), said
        assert "cannot reach the database" not in said
    assert list(home.iterdir()) == []


def test_a_read_only_planexe_home_with_a_database_elsewhere_names_what_cannot_be_written(
    tmp_path, sqlite_url
):
    """The database is fine (DATABASE_URL elsewhere); the runs, logs and Dagster home cannot be made."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PLANEXE_HOME": str(home), "DATABASE_URL": sqlite_url}
    env.pop("DAGSTER_HOME", None)
    done = _read_only(home, [*PLANEXE, "plan", PROMPT, "--model", "offline", "--quiet"], env)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2 and "Traceback" not in said, said
    assert str(home) in said and ("cannot create" in said or "not writable" in said), said
    assert list(home.iterdir()) == []
