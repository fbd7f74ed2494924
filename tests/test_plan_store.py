"""The dual writer: atomic files, rows in one transaction, crash recovery, hash checks, no duplicates."""

import os

import pytest

from planexe_assets.core import step_file
from resources.database import DatabaseService, make_engine, sha256_text
from resources.plan_store import TEMP_PREFIX, ContentIntegrityError, PlanStore


@pytest.fixture
def store(db_url, tmp_path):
    service = DatabaseService(make_engine(db_url))
    yield PlanStore(service, tmp_path / "runs")
    service.close()


def _disk(store, plan_id):
    run_dir = store.run_dir(plan_id)
    return {p.name: p.read_text(encoding="utf-8") for p in run_dir.iterdir()} if run_dir.exists() else {}


def _rows(store, plan_id):
    return {r.filename: r.content for r in store.db.get_plan_content(plan_id)}


def test_files_and_rows_agree_byte_for_byte(store):
    files = {
        step_file("identify_purpose", "raw"): '{"purpose": "business"}\n',
        step_file("identify_purpose", "markdown"): "# Ünïcode ✓\n",
    }
    written = store.write("p1", "identify_purpose", files, run_id="run-1")
    assert _disk(store, "p1") == _rows(store, "p1") == files
    assert {w.filename: w.sha256 for w in written} == {n: sha256_text(c) for n, c in files.items()}
    for row in store.db.get_plan_content("p1"):
        assert row.run_id == "run-1" and row.stage == "identify_purpose"
        assert row.content_hash == sha256_text(row.content)
        assert (store.run_dir("p1") / row.filename).read_bytes() == row.content.encode("utf-8")


def test_rewrite_updates_in_place(store):
    store.write("p1", "s", {"a.md": "one"}, run_id="r1")
    store.write("p1", "s", {"a.md": "two"}, run_id="r2")
    rows = store.db.get_plan_content("p1")
    assert len(rows) == 1 and rows[0].content == "two" and rows[0].run_id == "r2"
    assert len(store.db.get_plan_files("p1")) == 1
    assert _disk(store, "p1") == {"a.md": "two"}


def test_database_failure_leaves_no_file(store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(store.db, "upsert_outputs", broken)
    with pytest.raises(RuntimeError, match="went away"):
        store.write("p1", "s", {"a.md": "text", "b.json": "{}"}, run_id="r")
    assert _disk(store, "p1") == {}  # not even temporaries
    assert _rows(store, "p1") == {}


def test_crash_after_commit_before_rename_is_repaired(store, monkeypatch):
    store.write("p1", "s", {"a.md": "old"}, run_id="r1")
    real_replace = os.replace

    def crash(src, dst):
        raise KeyboardInterrupt("killed between commit and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write("p1", "s", {"a.md": "new", "b.md": "fresh"}, run_id="r2")
    monkeypatch.setattr(os, "replace", real_replace)
    # Rows are committed; the files are stale or missing, but no file exists without its row.
    assert set(_rows(store, "p1")) >= {n for n in _disk(store, "p1") if not n.startswith(TEMP_PREFIX)}
    # A reader gets the committed content and the run directory is repaired.
    assert store.read("p1", ["a.md", "b.md"]) == {"a.md": "new", "b.md": "fresh"}
    assert {n: c for n, c in _disk(store, "p1").items() if not n.startswith(TEMP_PREFIX)} == {
        "a.md": "new",
        "b.md": "fresh",
    }
    # Temporaries of a live writer (this process) are left alone; those of a dead process are removed.
    ours = [n for n in _disk(store, "p1") if n.startswith(TEMP_PREFIX)]
    assert ours
    run_dir = store.run_dir("p1")
    dead_pid = _dead_pid()
    for n in ours:
        (run_dir / n).rename(run_dir / n.replace(f"{TEMP_PREFIX}{os.getpid()}-", f"{TEMP_PREFIX}{dead_pid}-"))
    store.write("p1", "s", {"c.md": "x"}, run_id="r3")
    assert not [n for n in _disk(store, "p1") if n.startswith(TEMP_PREFIX)]


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_concurrent_writers_of_one_plan_do_not_disturb_each_other(store):
    from concurrent.futures import ThreadPoolExecutor

    def write(i):
        store.write("p1", f"s{i}", {f"{i:03d}-out.md": f"content {i}\n" * 200}, run_id=f"r{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(32)))
    disk = _disk(store, "p1")
    assert len(disk) == 32 and disk == _rows(store, "p1")


def test_tampered_row_fails_the_hash_check(store):
    from sqlalchemy import update

    from resources.models import PlanContent

    store.write("p1", "s", {"a.md": "genuine"}, run_id="r")
    with store.db.session() as s:
        s.execute(update(PlanContent).where(PlanContent.filename == "a.md").values(content="tampered"))
    with pytest.raises(ContentIntegrityError, match="does not match its sha256"):
        store.read("p1", ["a.md"])


def test_missing_upstream_is_a_clear_error(store):
    with pytest.raises(ContentIntegrityError, match="no stored content for 002-6-identify_purpose.md"):
        store.read("p1", [step_file("identify_purpose", "markdown")])


def test_stale_per_item_files_are_removed_file_first(store):
    store.write("p1", "expert_review", {"016-1-1-x.json": "1", "016-1-2-x.json": "2"}, run_id="r1")
    store.write("p1", "expert_review", {"016-1-1-x.json": "1b"}, run_id="r2", remove=["016-1-2-x.json"])
    assert _disk(store, "p1") == {"016-1-1-x.json": "1b"}
    assert _rows(store, "p1") == {"016-1-1-x.json": "1b"}
    assert [f.filename for f in store.db.get_plan_files("p1")] == ["016-1-1-x.json"]


@pytest.mark.parametrize("name", ["../evil.md", "a/b.md", ".hidden", "", ".."])
def test_refuses_unsafe_file_names(store, name):
    with pytest.raises(ValueError):
        store.write("p1", "s", {name: "x"}, run_id="r")
    assert _rows(store, "p1") == {}


def test_refuses_bad_plan_id(store):
    from resources.plan_ids import InvalidPlanId

    with pytest.raises(InvalidPlanId):
        store.write("../p", "s", {"a.md": "x"}, run_id="r")


def test_unwritable_run_directory_is_reported(store, tmp_path):
    if os.geteuid() == 0:
        # root ignores permission bits; use a path whose parent is a file instead
        (tmp_path / "runs").mkdir(exist_ok=True)
        (tmp_path / "runs" / "blocked").write_text("not a directory")
        bad = PlanStore(store.db, tmp_path / "runs" / "blocked")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        bad = PlanStore(store.db, ro)
    with pytest.raises(PermissionError, match="run directory"):
        bad.write("p1", "s", {"a.md": "x"}, run_id="r")
    assert _rows(store, "p1") == {}
