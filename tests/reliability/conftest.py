"""Fixtures of the reliability tests: the HTTP stub, stub-backed llm_config.json files, a migrated
application database in DATABASE_URL, and a finished offline run to seed plans from."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from resources import migrate
from resources.llm import executor as llm_executor
from tests.llm.stub_server import StubLLMServer
from tests.reliability.support import write_llm_config

KEY_VAR = "PLANEXE_TEST_STUB_KEY"
TEST_KEY = "sk-test-reliability-0123456789abcdef"
PROMPT = "Open a vegan butcher shop in Copenhagen, selling plant-based sausages and deli meats."


@pytest.fixture(autouse=True)
def dagster_home(isolated_home, monkeypatch) -> Path:
    """The CLI exports DAGSTER_HOME once it has picked one; keep that inside this test's PLANEXE_HOME."""
    home = isolated_home / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def stub():
    server = StubLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def fast_retries(monkeypatch):
    """Executors built from here on back off for milliseconds, not seconds (the policy's shape stays)."""
    fast = functools.partial(
        llm_executor.RetryPolicy, base_delay=0.02, max_delay=0.1, jitter=0.1, max_retry_after=5.0
    )
    monkeypatch.setattr(llm_executor, "RetryPolicy", fast)


@pytest.fixture
def stub_config(tmp_path, stub, monkeypatch):
    """``make(models, **arguments)`` writes an llm_config.json served by the stub and points
    PLANEXE_LLM_CONFIG at it; the models' key variable holds a test key."""
    monkeypatch.setenv(KEY_VAR, TEST_KEY)

    def make(models, name: str = "llm_config.json", **kwargs) -> Path:
        path = write_llm_config(tmp_path / name, stub.base_url, models, key_var=KEY_VAR, **kwargs)
        monkeypatch.setenv("PLANEXE_LLM_CONFIG", str(path))
        return path

    return make


@pytest.fixture(scope="session")
def offline_template(tmp_path_factory) -> dict[str, str]:
    """Every output file (name -> text) of one finished offline plan, made once per session.

    Tests seed new plans with a prefix of these steps (through the dual writer) and run only the
    rest, which keeps whole-pipeline scenarios (resume, eight plans at once) fast.
    """
    from dagster import DagsterInstance

    from planexe_assets.dagster_defs.launch import run_plan_in_process
    from planexe_assets.lifecycle.plans import PlanRequest, create_plan
    from resources.database import get_database_service

    root = tmp_path_factory.mktemp("offline_template")
    url = f"sqlite:///{root / 'template.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLANEXE_HOME", str(root / "home"))
        mp.setenv("DATABASE_URL", url)
        mp.delenv("PLANEXE_LLM_CONFIG", raising=False)
        mp.delenv("PLANEXE_REFUSE_ON_REDLINE", raising=False)
        migrate.upgrade(url)
        db = get_database_service(url)
        create_plan(db, PlanRequest(prompt=PROMPT, model="offline", plan_id="template"))
        outcome = run_plan_in_process("template", DagsterInstance.ephemeral(), log_level="ERROR")
        assert outcome.success, outcome.failed_steps
        contents = {row.filename: row.content for row in db.get_plan_content("template")}
    return contents


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory):
    """One full plan and one failing plan run under hostile conditions (see ``hostile.py``)."""
    from tests.reliability.hostile import make_hostile_run

    return make_hostile_run(tmp_path_factory.mktemp("hostile"))
