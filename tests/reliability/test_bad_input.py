"""Bad input is refused with a clear message before any work starts, and nothing is written.

Every case goes through the user's entry points (``planexe plan`` / ``planexe resume`` and
``python -m legacy_luigi``); afterwards the application database holds no plan, the runs directory
holds nothing and no Dagster home was set up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legacy_luigi.__main__ import main as luigi_main
from planexe_assets.cli.app import app
from planexe_assets.lifecycle.plans import MAX_PROMPT_BYTES
from tests.reliability.conftest import PROMPT

HOSTILE_IDS = [
    ("../escape", "invalid plan id"),
    ("..", "invalid plan id"),
    ("a/b", "'/'"),
    ("/etc/passwd", "'/'"),
    ("one,two", "','"),
    ("with space", "' '"),
    ("x" * 200, "200 characters long"),
    ("plаn", "'а'"),  # Cyrillic a
    ("ｐlan", "'ｐ'"),  # full-width p
    ("plan\u200b", "'\\u200b'"),  # zero-width space
    ("-rf", "may not start with '-'"),
]


def _said(result) -> str:
    return " ".join((result.output or "").split())


def _assert_nothing_written(db, home: Path) -> None:
    assert db.list_plans() == []
    runs = home / "runs"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())
    assert not (home / "dagster").exists(), "a Dagster home was set up for refused input"


@pytest.mark.parametrize("plan_id, fragment", HOSTILE_IDS)
def test_hostile_plan_ids_are_refused_everywhere(app_db, isolated_home, plan_id, fragment, capsys):
    runner = CliRunner()
    planned = runner.invoke(app, ["plan", PROMPT, "--model", "offline", "--plan-id", plan_id, "--quiet"])
    assert planned.exit_code == 2, planned.output
    assert fragment in _said(planned) and "plan id" in _said(planned)

    resumed = runner.invoke(app, ["resume", "--quiet", "--", plan_id])
    assert resumed.exit_code == 2, resumed.output
    assert "plan id" in _said(resumed)

    assert luigi_main([f"--plan-id={plan_id}", "--prompt", PROMPT, "--model", "offline"]) == 2
    assert "plan id" in capsys.readouterr().err
    _assert_nothing_written(app_db, isolated_home)


@pytest.mark.parametrize(
    "prompt, fragment",
    [
        ("", "prompt is empty"),
        ("   \n\t  \u3000 ", "prompt is empty"),
        ("x" * (1024 * 1024), f"limit is {MAX_PROMPT_BYTES:,} bytes"),
        ("é" * (MAX_PROMPT_BYTES // 2 + 1), f"limit is {MAX_PROMPT_BYTES:,} bytes"),  # counted in bytes
        ("goal\x00with a NUL", "NUL character"),
    ],
    ids=["empty", "whitespace", "1MB", "multibyte-over-limit", "nul"],
)
def test_unusable_prompts_are_refused(app_db, isolated_home, prompt, fragment):
    result = CliRunner().invoke(app, ["plan", prompt, "--model", "offline", "--quiet"])
    assert result.exit_code == 2, result.output
    assert fragment in _said(result)
    _assert_nothing_written(app_db, isolated_home)


def test_prompt_at_the_limit_is_accepted(app_db, isolated_home):
    from planexe_assets.lifecycle.plans import PlanRequest, create_plan

    plan = create_plan(
        app_db, PlanRequest(prompt="y" * MAX_PROMPT_BYTES, model="offline", plan_id="at_limit")
    )
    assert len(plan.prompt.encode()) == MAX_PROMPT_BYTES


def test_readme_documents_the_prompt_limit():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"prompts over {MAX_PROMPT_BYTES // 1024} KiB" in " ".join(readme.split())


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"Open a caf\xe9 in Lyon", "not valid UTF-8 (byte 10"),  # Latin-1, not UTF-8
        (b"\xff\xfe" + "Goal".encode("utf-16-le"), "not valid UTF-8"),
        (b"ok start \xed\xa0\x80 lone surrogate", "not valid UTF-8"),
    ],
    ids=["latin1", "utf16", "surrogate"],
)
def test_prompt_files_that_are_not_utf8_are_refused(app_db, isolated_home, tmp_path, data, fragment):
    path = tmp_path / "prompt.txt"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["plan", "--prompt-file", str(path), "--model", "offline", "--quiet"])
    assert result.exit_code == 2, result.output
    assert fragment in _said(result) and "prompt.txt" in _said(result)
    _assert_nothing_written(app_db, isolated_home)


def test_missing_prompt_file_and_conflicting_prompt_sources(app_db, isolated_home, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["plan", "--prompt-file", str(tmp_path / "nope.txt"), "--model", "offline"])
    assert missing.exit_code == 2 and "cannot read prompt file" in _said(missing)
    both = runner.invoke(app, ["plan", PROMPT, "--prompt-file", str(tmp_path / "nope.txt")])
    assert both.exit_code == 2 and "one of them" in _said(both)
    neither = runner.invoke(app, ["plan"])
    assert neither.exit_code == 2
    _assert_nothing_written(app_db, isolated_home)


# -- model configuration --------------------------------------------------------------------------


def _config(tmp_path: Path, document) -> Path:
    path = tmp_path / "llm_config.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


GOOD_ENTRY = {
    "class": "OpenAILike",
    "priority": 1,
    "arguments": {"model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key": "${PLANEXE_TEST_ABSENT_KEY}"},
}


@pytest.mark.parametrize(
    "document, model, fragments",
    [
        (
            '{"m": {"class": "OpenAILike", "arguments": {"model": "m",}}}',
            "auto",
            ["is not valid JSON", "line 1 column"],
        ),
        ("[1, 2, 3]", "auto", ["top level must be an object"]),
        ({"m": {"class": "Bogus", "arguments": {"model": "m"}}}, "auto", ["unknown class 'Bogus'"]),
        (
            {"m": {**GOOD_ENTRY, "arguments": {**GOOD_ENTRY["arguments"], "timeout": -1}}},
            "auto",
            ["'timeout' must be"],
        ),
        (
            {
                "m": {**GOOD_ENTRY, "arguments": {**GOOD_ENTRY["arguments"], "api_key": "k"}},
                "offline": {"class": "Offline", "arguments": {"model": "offline"}},
            },
            "no-such-model",
            ["unknown model 'no-such-model'", "known models: m, offline"],
        ),
        ({"m": GOOD_ENTRY}, "m", ["needs the environment variable PLANEXE_TEST_ABSENT_KEY", "not set"]),
        ({"m": GOOD_ENTRY}, "auto", ["PLANEXE_TEST_ABSENT_KEY"]),
    ],
    ids=[
        "malformed-json",
        "not-an-object",
        "unknown-class",
        "bad-argument",
        "unknown-model",
        "missing-env-named",
        "missing-env-auto",
    ],
)
def test_unusable_model_configuration_is_refused(
    app_db, isolated_home, tmp_path, monkeypatch, document, model, fragments
):
    monkeypatch.delenv("PLANEXE_TEST_ABSENT_KEY", raising=False)
    monkeypatch.setenv("PLANEXE_LLM_CONFIG", str(_config(tmp_path, document)))
    result = CliRunner().invoke(app, ["plan", PROMPT, "--model", model, "--quiet"])
    assert result.exit_code == 2, result.output
    said = _said(result)
    for fragment in fragments:
        assert fragment in said, said
    _assert_nothing_written(app_db, isolated_home)


def test_missing_config_file_is_refused(app_db, isolated_home, tmp_path, monkeypatch):
    monkeypatch.setenv("PLANEXE_LLM_CONFIG", str(tmp_path / "absent.json"))
    result = CliRunner().invoke(app, ["plan", PROMPT, "--quiet"])
    assert result.exit_code == 2 and "does not exist" in _said(result)
    _assert_nothing_written(app_db, isolated_home)


# -- database URL and run directory ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("mysql://root@localhost/plans", "scheme 'mysql' is not supported"),
        ("postgresql://postgres@127.0.0.1/plans", "must name its PostgreSQL driver"),
        ("http://example.com/db", "scheme 'http' is not supported"),
        ("::not a url::", "not a database URL"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [["plan", PROMPT, "--model", "offline", "--quiet"], ["resume", "some_plan"], ["list"], ["db", "upgrade"]],
)
def test_bad_database_url_is_refused(isolated_home, monkeypatch, url, fragment, command):
    monkeypatch.setenv("DATABASE_URL", url)
    result = CliRunner().invoke(app, command)
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert fragment in _said(result)
    assert not isolated_home.exists() or not any(isolated_home.rglob("*")), list(isolated_home.rglob("*"))


@pytest.mark.parametrize(
    "where, fragment",
    [
        ("/proc/planexe-nowhere/plans.db", "cannot be created"),  # a directory nobody can create
        ("{tmp}/a_directory", "cannot reach the database"),  # the database path is a directory
    ],
    ids=["uncreatable-directory", "path-is-a-directory"],
)
@pytest.mark.parametrize(
    "command", [["plan", PROMPT, "--model", "offline", "--quiet"], ["list"], ["resume", "p1"]]
)
def test_unusable_sqlite_database_is_refused(isolated_home, tmp_path, monkeypatch, where, fragment, command):
    path = where.format(tmp=tmp_path)
    if "a_directory" in path:
        Path(path).mkdir()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    result = CliRunner().invoke(app, command)
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a message, not a traceback
    assert fragment in _said(result)
    assert path in "".join(result.output.split())  # Rich may wrap a long path anywhere


def test_runs_directory_that_is_a_file_is_refused(app_db, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "runs").write_text("not a directory")
    result = CliRunner().invoke(app, ["plan", PROMPT, "--model", "offline", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "runs directory" in _said(result)
    assert app_db.list_plans() == []


def test_plan_run_directory_that_cannot_be_used_is_refused(app_db, isolated_home):
    runs = isolated_home / "runs"
    runs.mkdir(parents=True)
    (runs / "taken").write_text("a file where the plan's run directory would go")
    result = CliRunner().invoke(app, ["plan", PROMPT, "--model", "offline", "--plan-id", "taken", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "run directory" in _said(result) and "taken" in _said(result)
    assert app_db.list_plans() == []
    assert (runs / "taken").read_text().startswith("a file")


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through file permissions"
)
def test_read_only_runs_directory_is_refused(app_db, isolated_home):
    runs = isolated_home / "runs"
    runs.mkdir(parents=True)
    runs.chmod(0o555)
    try:
        result = CliRunner().invoke(app, ["plan", PROMPT, "--model", "offline", "--quiet"])
    finally:
        runs.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert "not writable" in _said(result)
    assert app_db.list_plans() == [] and not any(runs.iterdir())
