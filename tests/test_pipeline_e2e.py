"""End to end, offline: the Dagster job on an ephemeral instance, the CLI, and the Luigi twin."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance
from typer.testing import CliRunner

from planexe_assets.cli.app import app
from planexe_assets.core import PIPELINE_COMPLETE_FILENAME, STEPS, step_file
from planexe_assets.dagster_defs.launch import run_plan_in_process
from planexe_assets.lifecycle.plans import PlanRequest, create_plan
from planexe_assets.lifecycle.runner import pipeline_steps
from resources.database import sha256_text

PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."
REPO = Path(__file__).resolve().parent.parent


def _assert_files_equal_rows(db, plan_id, run_dir: Path):
    rows = {r.filename: r for r in db.get_plan_content(plan_id)}
    on_disk = {p.name for p in run_dir.iterdir()}
    assert on_disk == set(rows), on_disk ^ set(rows)
    for name, row in rows.items():
        assert (run_dir / name).read_bytes() == row.content.encode("utf-8"), name
        assert row.content_hash == sha256_text(row.content)
    assert sorted(f.filename for f in db.get_plan_files(plan_id)) == sorted(rows)


def test_offline_plan_materialises_every_asset(app_db, isolated_home):
    plan = create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="e2e_plan"))
    assert plan.status == "pending"
    instance = DagsterInstance.ephemeral()
    started = time.perf_counter()
    outcome = run_plan_in_process("e2e_plan", instance)
    executing = time.perf_counter() - started
    assert outcome.success, outcome.failed_steps

    plan = app_db.get_plan("e2e_plan")
    steps = pipeline_steps()
    assert plan.status == "completed" and plan.progress_percentage == 100
    assert plan.progress_message == f"{len(steps)} of {len(steps)} steps"
    assert plan.started_at and plan.completed_at and plan.error_message is None

    run_dir = isolated_home / "runs" / "e2e_plan"
    for step in steps:
        for name in step.filenames:
            assert (run_dir / name).exists(), name
    _assert_files_equal_rows(app_db, "e2e_plan", run_dir)
    assert (run_dir / step_file("setup")).read_text() == PROMPT
    assert json.loads((run_dir / step_file("start_time")).read_text())["server_iso_utc"].endswith("Z")
    assert "[offline]" in (run_dir / step_file("identify_purpose", "markdown")).read_text()

    # Every LLM attempt is recorded, and the per-plan roll-up agrees with the rows.
    interactions = app_db.get_plan_interactions("e2e_plan")
    assert interactions and all(i.status == "completed" and i.llm_model == "offline" for i in interactions)
    metrics = app_db.get_plan_metrics("e2e_plan")
    assert metrics.total_llm_calls == len(interactions)
    assert metrics.total_tokens_used == sum(i.total_tokens or 0 for i in interactions)

    # Each materialization carries usage metadata (dagster-openai's key names, plus attempts), a
    # labelled preview and the data version of what it wrote.
    event = instance.get_latest_materialization_event(AssetKey("identify_purpose"))
    meta = event.asset_materialization.metadata
    assert meta["openai.calls"].value == 1 and meta["models"].value == "offline"
    assert meta["planexe.llm_attempts"].value == 1 and meta["planexe.llm_failed_attempts"].value == 0
    assert meta["openai.prompt_tokens"].value > 0 and meta["openai.completion_tokens"].value > 0
    assert (
        meta["openai.total_tokens"].value
        == meta["openai.prompt_tokens"].value + meta["openai.completion_tokens"].value
    )
    assert meta["preview"].value.startswith("**`002-6-identify_purpose.md`** · Markdown")
    assert "Purpose" in meta["preview"].value
    assert event.asset_materialization.partition == "e2e_plan"
    from planexe_assets.lifecycle.versions import data_version

    written = {
        n: (run_dir / n).read_text(encoding="utf-8")
        for n in (step_file("identify_purpose", "raw"), step_file("identify_purpose", "markdown"))
    }
    assert event.asset_materialization.tags["dagster/data_version"] == data_version(written)
    premise = instance.get_latest_materialization_event(
        AssetKey("premise_attack")
    ).asset_materialization.metadata
    assert premise["openai.calls"].value == 5 and premise["planexe.llm_attempts"].value == 5

    # The report's materialization: its outline, its path and the plan's totals.
    report = instance.get_latest_materialization_event(AssetKey("report")).asset_materialization.metadata
    assert report["report_path"].value == str(run_dir / step_file("report"))
    assert "Outline:" in report["preview"].value and "1. Executive Summary" in report["preview"].value
    assert report["plan.llm_attempts"].value == len(interactions)
    assert report["plan.openai.calls"].value == len(interactions)
    assert report["plan.openai.total_tokens"].value == metrics.total_tokens_used
    assert "openai.calls" not in report  # the report step itself makes no call

    # The run carries the plan's prompt as a tag (one line, trimmed).
    run = instance.get_run_by_id(outcome.run_id)
    assert run.tags["planexe/prompt"] == " ".join(PROMPT.split())[:200].rstrip()

    # The benchmark's split of the run's time along its critical chain adds up to the time it took.
    from bench.critical_path import breakdown
    from bench.lower_bound import compute_lower_bound

    bound = compute_lower_bound(interactions)
    split = breakdown(instance, app_db, "e2e_plan", bound, wall=executing, inner=executing)
    assert all(seconds >= 0 for seconds in split.parts.values()), split.parts
    assert split.parts["imports and interpreter start-up"] == 0
    assert sum(split.parts.values()) == pytest.approx(executing, rel=0.05, abs=0.5)
    assert split.chain_steps >= len(bound.critical_path) - 2 and split.chain_llm_steps >= 20

    # Re-materialising one asset rewrites its files and rows in place.
    before = {r.filename: r.id for r in app_db.get_plan_content("e2e_plan")}
    again = run_plan_in_process("e2e_plan", instance, steps=["plan_type"])
    assert again.success
    after = {r.filename: r for r in app_db.get_plan_content("e2e_plan")}
    assert {n: r.id for n, r in after.items()} == before
    assert after[step_file("plan_type", "markdown")].run_id == again.run_id
    _assert_files_equal_rows(app_db, "e2e_plan", run_dir)


def test_failing_step_marks_plan_failed_and_resume_finishes(app_db, monkeypatch):
    from planexe_assets.core import StepError
    from planexe_assets.lifecycle.runner import missing_steps_with_downstream
    from planexe_assets.steps import implemented_steps

    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="flaky"))
    registry = implemented_steps()
    real = registry["plan_type"]

    def broken(ctx, inputs):
        raise StepError("plan_type: every model failed (offline: injected)")

    import planexe_assets.steps as steps_pkg

    monkeypatch.setitem(steps_pkg._REGISTRY, "plan_type", broken)
    instance = DagsterInstance.ephemeral()
    outcome = run_plan_in_process("flaky", instance)
    assert not outcome.success and outcome.failed_steps == ["plan_type"]
    plan = app_db.get_plan("flaky")
    assert plan.status == "failed" and "plan_type" in plan.error_message and "injected" in plan.error_message
    todo = missing_steps_with_downstream(app_db, "flaky")
    assert todo[0] == "plan_type" and "identify_purpose" not in todo and "redline_gate" not in todo

    monkeypatch.setitem(steps_pkg._REGISTRY, "plan_type", real)
    resumed = run_plan_in_process("flaky", instance, steps=todo)
    assert resumed.success
    assert app_db.get_plan("flaky").status == "completed"
    assert missing_steps_with_downstream(app_db, "flaky") == []


def test_cli_plan_list_status_show(app_db, isolated_home):
    runner = CliRunner()
    result = runner.invoke(
        app, ["plan", PROMPT, "--model", "offline", "--plan-id", "cli_plan", "--quiet", "--fast"]
    )
    assert result.exit_code == 0, result.output
    assert "cli_plan" in result.output and "completed" in result.output
    assert str(isolated_home / "runs" / "cli_plan") in result.output.replace("\n", "")
    assert app_db.get_plan("cli_plan").speed_vs_detail == "fast_but_skip_details"

    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "cli_plan" in listed.output
    status = runner.invoke(app, ["status", "cli_plan"])
    assert (
        status.exit_code == 0
        and "completed" in status.output
        and step_file("identify_purpose", "markdown") in status.output
    )
    shown = runner.invoke(app, ["show", "cli_plan", step_file("setup")])
    assert shown.exit_code == 0 and shown.output.strip() == PROMPT
    missing = runner.invoke(app, ["show", "cli_plan", "nope.md"])
    assert missing.exit_code == 2

    again = runner.invoke(app, ["plan", PROMPT, "--model", "offline", "--plan-id", "cli_plan", "--quiet"])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["plan", PROMPT, "--plan-id", "../etc", "--model", "offline"], "invalid plan id"),
        (["plan", "   ", "--model", "offline"], "prompt is empty"),
        (["plan", PROMPT, "--model", "no-such-model"], "unknown model"),
        (["plan", "x" * 70_000, "--model", "offline"], "limit is 65,536 bytes"),
    ],
)
def test_cli_refuses_bad_input_before_writing(app_db, isolated_home, args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert app_db.list_plans() == []
    assert not (isolated_home / "runs").exists() or not any((isolated_home / "runs").iterdir())


def test_cli_refuses_unmigrated_database(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = CliRunner().invoke(app, ["plan", PROMPT, "--model", "offline"])
    assert result.exit_code == 1 and "planexe db upgrade" in result.output


def test_luigi_produces_the_same_file_names(app_db, isolated_home, monkeypatch):
    """`python -m legacy_luigi` (a subprocess, as a user runs it) writes the reference output() names,
    keeps the steps' warnings in its log and prints a short summary with the report's path."""
    create_plan(app_db, PlanRequest(prompt=PROMPT, model="offline", plan_id="luigi_plan"))
    done = subprocess.run(
        [sys.executable, "-m", "legacy_luigi", "--plan-id", "luigi_plan", "--workers", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = isolated_home / "runs" / "luigi_plan"
    expected = {name for step in pipeline_steps() for name in step.filenames}
    produced = {p.name for p in run_dir.iterdir()}
    assert expected <= produced
    assert PIPELINE_COMPLETE_FILENAME in produced
    extra = produced - expected - {PIPELINE_COMPLETE_FILENAME}
    assert all("{}" in t for t in []) or all(any(c.isdigit() for c in n) for n in extra)
    _assert_files_equal_rows(app_db, "luigi_plan", run_dir)
    assert app_db.get_plan("luigi_plan").status == "completed"

    # The terminal: nothing on stderr, a few lines on stdout naming the report and the run directory.
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) <= 6, done.stdout
    assert lines[0] == f"plan luigi_plan: completed ({len(STEPS)} of {len(STEPS)} steps)"
    assert f"report: {run_dir / step_file('report')}" in lines and f"run directory: {run_dir}" in lines
    # The offline model's answers draw warnings (unknown role ids, ...): they are in the log only.
    (log_line,) = [line for line in lines if line.startswith("log: ")]
    logs = list((isolated_home / "logs" / "luigi_plan").glob("luigi-*.log"))
    assert len(logs) == 1 and log_line.startswith(f"log: {logs[0]} (")
    log = logs[0].read_text(encoding="utf-8")
    warnings = [line for line in log.splitlines() if " WARNING planexe." in line]
    assert warnings and f"({len(warnings)} warnings)" in log_line
    for line in warnings[:20]:
        assert line.split(": ", 1)[1] not in done.stdout
