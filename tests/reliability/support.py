"""Shared helpers of the reliability tests: an offline-like model behind the HTTP stub, llm_config.json
files pointing at it, plans seeded from a finished offline run, and whole-database dumps.

The stub model answers like the ``offline`` provider (schema-valid JSON built from the request's own
JSON schema, deterministic markdown for text calls), but over real HTTP through the ``openai`` client,
so faults, latency and hostile payloads can be injected per step. Steps are told apart by the
``response_format`` schema name (the step's pydantic response model) or, for text calls, by a
fragment of the system prompt.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, select

from planexe_assets.core import STEP_BY_NAME, STEPS, Step, matches_template
from resources.llm.offline import known_ids, offline_json, offline_markdown, request_seed
from resources.plan_store import PlanStore
from tests.llm.stub_server import Reply, StubLLMServer

# -- the stub model ------------------------------------------------------------------------------


def schema_name(body: Mapping[str, Any]) -> str | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("name")
    return None


def request_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema")
    if fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    return None


def system_text(body: Mapping[str, Any]) -> str:
    return "\n".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "system")


def offline_answer(body: Mapping[str, Any]) -> str:
    """What the offline provider would answer to this request (JSON for structured calls)."""
    messages = body.get("messages", [])
    schema = request_schema(body)
    seed = request_seed(messages, schema)
    if schema is not None:
        return offline_json(schema, seed, known_ids(messages))
    return offline_markdown(messages, seed)


@dataclass
class OfflineModel:
    """A stub action: answers like the offline provider, with optional per-request hooks.

    - ``fault(body)`` may return a stub action (``Status``, ``Hang``, ``Raw``, ``Reply``...) to send
      instead of the answer, or None;
    - ``latency(body)`` seconds to wait before answering;
    - ``mutate(text, body)`` rewrites the answer (hostile payloads).
    """

    fault: Callable[[dict[str, Any]], Any] | None = None
    latency: Callable[[dict[str, Any]], float] | None = None
    mutate: Callable[[str, dict[str, Any]], str] | None = None
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, body: dict[str, Any]) -> Any:
        with self._lock:
            self.calls += 1
        if self.fault is not None:
            action = self.fault(body)
            if action is not None:
                return action
        if self.latency is not None:
            delay = self.latency(body)
            if delay:
                time.sleep(delay)
        text = offline_answer(body)
        if self.mutate is not None:
            text = self.mutate(text, body)
        return Reply(text, prompt_tokens=len(json.dumps(body)) // 4, completion_tokens=max(1, len(text) // 4))


def serve(stub: StubLLMServer, model: str, action: Any) -> None:
    stub.script(model, then=action)


def write_llm_config(
    path: Path,
    base_url: str,
    models: Iterable[str],
    *,
    key_var: str = "PLANEXE_TEST_STUB_KEY",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    **arguments: Any,
) -> Path:
    """An llm_config.json whose models (priority in the given order) are served by the stub."""
    document: dict[str, Any] = {}
    for priority, model in enumerate(models, start=1):
        args = {
            "model": model,
            "base_url": base_url,
            "api_key": "${" + key_var + "}",
            "timeout": 5.0,
            "max_retries": 1,
            **arguments,
            **dict((overrides or {}).get(model, {})),
        }
        document[model] = {
            "comment": "reliability test stub",
            "priority": priority,
            "class": "OpenAILike",
            "arguments": args,
        }
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


# -- seeding plans from a finished run -----------------------------------------------------------


def step_files(step: Step, contents: Mapping[str, str]) -> dict[str, str]:
    """The step's own files plus its per-item files present in ``contents``."""
    files = {name: contents[name] for name in step.filenames}
    for name, text in contents.items():
        if any(matches_template(name, t) for t in step.side_outputs):
            files[name] = text
    return files


def seed_steps(
    store: PlanStore, plan_id: str, contents: Mapping[str, str], steps: Iterable[str], run_id: str
) -> None:
    """Store the given steps' outputs (from a finished run) for a plan that has none yet: the rows in
    one transaction, then the files; the state the dual writer leaves, made in a fraction of its time."""
    from sqlalchemy import insert

    from resources.database import sha256_text
    from resources.models import PlanContent, PlanFile, content_type_for

    run_dir = store.run_dir(plan_id, create=True)
    content_rows, file_rows = [], []
    for name in steps:
        step = STEP_BY_NAME[name]
        for filename, text in step_files(step, contents).items():
            size, digest = len(text.encode("utf-8")), sha256_text(text)
            content_rows.append(
                {
                    "plan_id": plan_id,
                    "filename": filename,
                    "stage": step.name,
                    "content_type": content_type_for(filename),
                    "content": text,
                    "content_size_bytes": size,
                    "content_hash": digest,
                    "run_id": run_id,
                }
            )
            file_rows.append(
                {
                    "plan_id": plan_id,
                    "filename": filename,
                    "file_type": filename.rsplit(".", 1)[-1],
                    "file_size_bytes": size,
                    "content_hash": digest,
                    "generated_by_stage": step.name,
                    "file_path": str(run_dir / filename),
                }
            )
    with store.db.session() as s:  # a fresh plan: plain inserts, many rows per statement
        s.execute(insert(PlanContent), content_rows)
        s.execute(insert(PlanFile), file_rows)
    for row in content_rows:
        (run_dir / row["filename"]).write_bytes(row["content"].encode("utf-8"))


def steps_before(name: str) -> list[str]:
    """Every step that comes before ``name`` in table (topological) order."""
    names = [s.name for s in STEPS]
    return names[: names.index(name)]


# -- looking at everything -----------------------------------------------------------------------


def dump_database(engine) -> str:
    """Every row of every table (application tables and anything else in the schema), as text."""
    meta = MetaData()
    meta.reflect(bind=engine)
    parts: list[str] = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                parts.append(f"{table.name}: " + " | ".join(repr(v) for v in row))
    return "\n".join(parts)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            if needle in path.read_bytes():
                hits.append(path)
        except OSError:
            continue
    return hits


def assert_files_equal_rows(db, plan_id: str, run_dir: Path) -> dict[str, Any]:
    """The run directory and plan_content agree byte for byte; plan_files lists the same names once."""
    from resources.database import sha256_text
    from resources.plan_store import TEMP_PREFIX

    rows = db.get_plan_content(plan_id)
    names = [r.filename for r in rows]
    assert len(names) == len(set(names)), "duplicate plan_content rows"
    by_name = {r.filename: r for r in rows}
    on_disk = {p.name for p in run_dir.iterdir() if not p.name.startswith(TEMP_PREFIX)}
    assert on_disk == set(by_name), (
        f"files without rows: {sorted(on_disk - set(by_name))}; rows without files: {sorted(set(by_name) - on_disk)}"
    )
    for name, row in by_name.items():
        assert (run_dir / name).read_bytes() == row.content.encode("utf-8"), f"{name} differs from its row"
        assert row.content_hash == sha256_text(row.content), f"{name}: stored hash is wrong"
    file_rows = [f.filename for f in db.get_plan_files(plan_id)]
    assert len(file_rows) == len(set(file_rows)), "duplicate plan_files rows"
    assert set(file_rows) == set(by_name)
    return by_name
