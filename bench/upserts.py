"""``plan_content`` upserts per second on SQLite and PostgreSQL.

Three measurements on a fresh, migrated database:

- ``insert``: one new file per transaction (``DatabaseService.upsert_outputs`` with one record: its
  ``plan_content`` and ``plan_files`` rows), as a step that writes one file does;
- ``update``: the same file names again with new content (a re-run replacing its rows in place);
- ``dual write``: ``PlanStore.write`` of one file per call, i.e. the whole dual writer: temporary
  file written and fsync'ed, rows upserted, file renamed into place, directory fsync'ed.

Files are ``size`` bytes of text, like a typical step output.
"""

from __future__ import annotations

import random
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class UpsertResult:
    backend: str
    files: int
    size: int
    insert_per_second: float
    update_per_second: float
    dual_write_per_second: float


def _text(rng: random.Random, size: int) -> str:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(size // 6 + 1)]
    return " ".join(words)[:size]


def measure_upserts(db_url: str, backend: str, files: int = 200, size: int = 4000) -> UpsertResult:
    from resources.database import DatabaseService, OutputRecord, make_engine, sha256_text
    from resources.plan_store import PlanStore

    db = DatabaseService(make_engine(db_url))
    rng = random.Random(1)
    try:
        db.create_plan(
            {"plan_id": "upserts", "prompt": "benchmark", "llm_model": "none", "status": "running"}
        )
        names = [f"{i:03d}-bench_file.md" for i in range(files)]

        def one_pass(tag: str) -> float:
            contents = [_text(rng, size) + tag for _ in names]
            started = time.perf_counter()
            for name, content in zip(names, contents, strict=True):
                record = OutputRecord(name, content, "bench", f"/tmp/{name}", sha256_text(content))
                db.upsert_outputs("upserts", [record], run_id="bench")
            return files / (time.perf_counter() - started)

        insert_rate = one_pass("")
        update_rate = one_pass(" (again)")
        rows = db.get_plan_content("upserts")
        if len(rows) != files or any(not r.content.endswith(" (again)") for r in rows):
            raise RuntimeError(f"{backend}: expected {files} updated rows, found {len(rows)}")

        db.create_plan(
            {"plan_id": "dualwrite", "prompt": "benchmark", "llm_model": "none", "status": "running"}
        )
        with tempfile.TemporaryDirectory(prefix="planexe-bench-runs-") as runs:
            store = PlanStore(db, Path(runs))
            contents = [_text(rng, size) for _ in names]
            started = time.perf_counter()
            for name, content in zip(names, contents, strict=True):
                store.write("dualwrite", "bench", {name: content}, run_id="bench")
            dual_rate = files / (time.perf_counter() - started)
            if store.read("dualwrite", names) != dict(zip(names, contents, strict=True)):
                raise RuntimeError(f"{backend}: the dual writer's rows do not read back")
        return UpsertResult(backend, files, size, insert_rate, update_rate, dual_rate)
    finally:
        db.close()
