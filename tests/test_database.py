"""DatabaseService on SQLite and PostgreSQL: CRUD, upserts, cascade, concurrent writers."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from planexe_assets.core import step_file
from resources.database import DatabaseService, DatabaseUnavailable, OutputRecord, make_engine, sha256_text
from resources.plan_ids import InvalidPlanId


def _plan(db: DatabaseService, plan_id="plan_a", **extra):
    return db.create_plan({"plan_id": plan_id, "prompt": "Open a vegan butcher shop in Copenhagen", **extra})


def test_plan_crud(db):
    created = _plan(db, llm_model="offline")
    assert created.id and created.status == "pending" and created.progress_percentage == 0
    assert created.speed_vs_detail == "all_details_but_slow"
    assert db.get_plan("plan_a").prompt.startswith("Open a vegan")
    updated = db.update_plan(
        "plan_a", {"status": "running", "progress_percentage": 40, "progress_message": "4 of 10"}
    )
    assert (updated.status, updated.progress_percentage) == ("running", 40)
    assert db.update_plan("missing", {"status": "failed"}) is None
    with pytest.raises(AttributeError):
        db.update_plan("plan_a", {"no_such_column": 1})
    _plan(db, "plan_b", user_id="u1")
    assert [p.plan_id for p in db.list_plans()] == ["plan_b", "plan_a"]
    assert [p.plan_id for p in db.list_plans(user_id="u1")] == ["plan_b"]
    assert [p.plan_id for p in db.list_plans(limit=1)] == ["plan_b"]


def test_create_plan_refuses_bad_id(db):
    with pytest.raises(InvalidPlanId):
        _plan(db, "../../etc")
    assert db.list_plans() == []


def test_plan_content_upsert_is_idempotent(db):
    _plan(db)
    first = db.create_plan_content(
        {
            "plan_id": "plan_a",
            "filename": step_file("identify_purpose", "markdown"),
            "stage": "identify_purpose",
            "content": "v1",
            "run_id": "r1",
        }
    )
    second = db.create_plan_content(
        {
            "plan_id": "plan_a",
            "filename": step_file("identify_purpose", "markdown"),
            "stage": "identify_purpose",
            "content": "version 2",
            "run_id": "r2",
        }
    )
    rows = db.get_plan_content("plan_a")
    assert len(rows) == 1
    assert second.id == first.id
    row = rows[0]
    assert (row.content, row.run_id, row.content_type) == ("version 2", "r2", "markdown")
    assert row.content_hash == sha256_text("version 2") and row.content_size_bytes == 9
    assert row.updated_at >= row.created_at
    assert (
        db.get_plan_content_by_filename("plan_a", step_file("identify_purpose", "markdown")).content
        == "version 2"
    )
    assert db.get_plan_content_by_filename("plan_a", "nope.md") is None


def test_upsert_outputs_writes_content_and_files_together(db):
    records = [
        OutputRecord(
            step_file("identify_purpose", "raw"),
            '{"purpose": "business"}',
            "identify_purpose",
            "/runs/p/002-5-identify_purpose_raw.json",
        ),
        OutputRecord(
            step_file("identify_purpose", "markdown"),
            "# Purpose\n\nbusiness – ünïcode",
            "identify_purpose",
            "/runs/p/002-6-identify_purpose.md",
        ),
    ]
    for run in ("run1", "run2"):
        db.upsert_outputs("plan_a", records, run_id=run)
    content = db.get_plan_content("plan_a")
    files = db.get_plan_files("plan_a")
    assert [c.filename for c in content] == [r.filename for r in records]
    assert all(c.run_id == "run2" for c in content)
    assert [f.filename for f in files] == [r.filename for r in records]
    assert files[1].file_size_bytes == len(records[1].content.encode()) and files[1].file_type == "md"
    assert files[1].content_hash == content[1].content_hash
    assert set(db.get_contents("plan_a", [step_file("identify_purpose", "markdown"), "missing"])) == {
        step_file("identify_purpose", "markdown")
    }


def test_interactions_and_metrics(db):
    _plan(db)
    row = db.create_llm_interaction(
        {
            "plan_id": "plan_a",
            "llm_model": "offline",
            "stage": "identify_purpose",
            "prompt_text": "p",
            "prompt_metadata": {"label": "x"},
        }
    )
    assert row.status == "pending" and row.started_at is not None
    db.update_llm_interaction(
        row.id, {"status": "completed", "input_tokens": 5, "output_tokens": 7, "total_tokens": 12}
    )
    got = db.get_plan_interactions("plan_a")
    assert len(got) == 1 and got[0].total_tokens == 12 and got[0].prompt_metadata == {"label": "x"}
    assert db.get_plan_interactions("plan_a", stage="other") == []
    db.add_plan_usage("plan_a", calls=2, tokens=100, cost_usd=0.5)
    db.add_plan_usage("plan_a", calls=1, tokens=10, cost_usd=0.25)
    metrics = db.get_plan_metrics("plan_a")
    assert (metrics.total_llm_calls, metrics.total_tokens_used, metrics.total_cost_usd) == (3, 110, 0.75)
    db.create_plan_metrics({"plan_id": "plan_a", "user_rating": 5})
    metrics = db.get_plan_metrics("plan_a")
    assert metrics.user_rating == 5 and metrics.total_llm_calls == 3


def test_delete_plan_cascades(db):
    _plan(db)
    _plan(db, "plan_keep")
    for plan_id in ("plan_a", "plan_keep"):
        db.create_llm_interaction({"plan_id": plan_id, "llm_model": "m", "stage": "s", "prompt_text": "p"})
        db.upsert_outputs(plan_id, [OutputRecord("a.md", "x", "s", "/x/a.md")], run_id="r")
        db.add_plan_usage(plan_id, calls=1)
    assert db.delete_plan("plan_a") is True
    assert db.delete_plan("plan_a") is False
    assert db.get_plan("plan_a") is None
    assert db.get_plan_interactions("plan_a") == [] and db.get_plan_content("plan_a") == []
    assert db.get_plan_files("plan_a") == [] and db.get_plan_metrics("plan_a") is None
    assert db.get_plan("plan_keep") is not None and len(db.get_plan_content("plan_keep")) == 1


def test_eight_threads_upserting_same_rows_lose_nothing(db):
    _plan(db)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(25):
                records = [
                    OutputRecord(f"{n:03d}-file.md", f"w{worker}-i{i}-{n}", "s", f"/r/{n}") for n in range(4)
                ]
                db.upsert_outputs("plan_a", records, run_id=f"w{worker}")
                db.create_plan_content(
                    {
                        "plan_id": "plan_a",
                        "filename": "shared.json",
                        "content": f'{{"w": {worker}, "i": {i}}}',
                    }
                )
                db.add_plan_usage("plan_a", calls=1, tokens=3)
                db.create_llm_interaction(
                    {"plan_id": "plan_a", "llm_model": "m", "stage": f"s{worker}", "prompt_text": str(i)}
                )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    assert errors == []
    content = db.get_plan_content("plan_a")
    assert len(content) == 5  # 4 files + shared.json, never duplicated
    assert len(db.get_plan_files("plan_a")) == 4
    for row in content:
        assert row.content_hash == sha256_text(row.content)
    metrics = db.get_plan_metrics("plan_a")
    assert (metrics.total_llm_calls, metrics.total_tokens_used) == (200, 600)
    assert len(db.get_plan_interactions("plan_a")) == 200


def test_unreachable_database_gives_clear_error():
    db = DatabaseService(make_engine("postgresql+psycopg://nobody:pw@127.0.0.1:1/none"))
    with pytest.raises(DatabaseUnavailable) as err:
        db.get_plan("x")
    assert "127.0.0.1:1" in str(err.value) and "pw" not in str(err.value)


def test_stored_filenames_names_the_rows_present_without_reading_content(db, tmp_path):
    _plan(db, "plan_names")
    db.upsert_outputs(
        "plan_names", [OutputRecord("a.md", "A", "s", str(tmp_path / "a.md"), sha256_text("A"))], run_id="r1"
    )
    assert db.stored_filenames("plan_names", ["a.md", "b.md"]) == {"a.md"}
    assert db.stored_filenames("plan_other", ["a.md"]) == set()
    assert db.stored_filenames("plan_names", []) == set()
