"""A canary API key set in the environment appears nowhere: not in the database (any table), the run
directory, the Dagster event log and compute logs, exceptions, CLI output or the report.

Two canaries: ``OPENROUTER_API_KEY`` (shaped like a key) and a second model's key that looks like
nothing in particular, so pattern-based redaction alone cannot hide a leak. The stub quotes the
Authorization header back in error bodies, so both keys do reach our error handling.
"""

from __future__ import annotations

import pytest

from planexe_assets.core import step_file
from tests.reliability.hostile import CANARY_KEY, CANARY_TAILS, CANARY_TOKEN
from tests.reliability.support import files_containing

pytestmark = pytest.mark.slow
SECRETS = (CANARY_KEY, CANARY_TOKEN, *CANARY_TAILS)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_the_keys_really_were_used_and_echoed(hostile_run):
    """Positive control: the secrets went over the wire and came back inside errors."""
    auth = {
        v for s in hostile_run.stub_requests for k, v in s.headers.items() if k.lower() == "authorization"
    }
    assert f"Bearer {CANARY_KEY}" in auth and f"Bearer {CANARY_TOKEN}" in auth
    echoed = [
        i
        for i in hostile_run.interactions + hostile_run.failing_interactions
        if i.error_code in ("http_401", "http_500")
    ]
    assert echoed, "no request was answered with the key quoted back"
    assert all("Invalid credentials" in i.error_message for i in echoed)
    assert any("[REDACTED]" in i.error_message for i in echoed)
    assert hostile_run.plan_row.status == "completed"
    assert hostile_run.failing_row.status == "failed"
    assert "every model failed" in hostile_run.failing_row.error_message


def test_no_key_in_the_database(hostile_run):
    assert "llm_interactions:" in hostile_run.dump and "plan_content:" in hostile_run.dump
    assert _leaks(hostile_run.dump) == []
    assert _leaks(hostile_run.failing_row.error_message) == []


def test_no_key_in_any_file(hostile_run):
    """Run directories, the SQLite database and its WAL, Dagster's run and event storage, compute logs."""
    files = [p for p in hostile_run.root.rglob("*") if p.is_file()]
    assert any(p.name == step_file("report") for p in files)
    assert any("dagster" in p.parts for p in files)
    assert any("compute_logs" in p.parts for p in files), "no compute logs were captured"
    assert any(p.suffix == ".db" and "history" in p.parts for p in files), "no Dagster event storage"
    for secret in SECRETS:
        assert files_containing(hostile_run.root, secret.encode()) == [], secret


def test_no_key_in_the_dagster_event_log(hostile_run):
    texts = hostile_run.event_texts
    assert texts
    # The captured Python logs of the LLM layer are in the event log, errors included.
    assert any("http_401" in t for t in texts), "the LLM layer's log lines were not captured"
    for text in texts:
        assert _leaks(text) == [], text[:500]


def test_no_key_in_exceptions_or_cli_output(hostile_run):
    assert hostile_run.exceptions, "the failing plan raised no step failure"
    assert any("every model failed" in e for e in hostile_run.exceptions)
    for text in hostile_run.exceptions + hostile_run.cli_outputs:
        assert _leaks(text) == [], text[:2000]


def test_no_key_in_the_report(hostile_run):
    report = (hostile_run.run_dir / step_file("report")).read_text(encoding="utf-8")
    assert _leaks(report) == []
