"""The dual writer: every output file goes to the run directory and to ``plan_content`` together.

Write order (one step's outputs at a time):

1. each file is written to a hidden temporary file in the run directory and fsync'ed;
2. one database transaction upserts the ``plan_content`` and ``plan_files`` rows of all files;
3. each temporary file is renamed over its final name (atomic on POSIX), then the directory is fsync'ed.

A crash after 1 leaves only temporary files, which a later write of that plan removes once the
process that made them is gone (temporary names carry the writer's pid, so concurrent writers of
one plan never delete each other's files). A crash
after 2 leaves rows whose files are missing or stale; readers and the next write repair them from the
rows (``repair``). So a file never exists without its row, a reader never sees a half-written file,
and re-runs update rows in place (unique key on plan_id, filename) instead of duplicating them.

Reads come from ``plan_content`` and are checked against the stored sha256; the run directory is a
materialised copy for people and for PlanExe-compatible tools.

Plain Python: the Dagster IO manager, the Luigi tasks and the CLI all use this class.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from resources.database import DatabaseService, OutputRecord, sha256_text
from resources.plan_ids import run_dir_for, validate_plan_id

log = logging.getLogger(__name__)

TEMP_PREFIX = ".planexe-tmp-"


class ContentIntegrityError(RuntimeError):
    """A stored row does not match its own hash, or an expected row is missing."""


@dataclass(frozen=True)
class WrittenFile:
    filename: str
    path: Path
    size: int
    sha256: str


class PlanStore:
    def __init__(self, db: DatabaseService, runs_root: Path):
        self.db = db
        self.runs_root = Path(runs_root)

    def run_dir(self, plan_id: str, create: bool = False) -> Path:
        path = run_dir_for(plan_id, self.runs_root)
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise PermissionError(f"cannot create run directory {path}: {exc.strerror}") from exc
            if not os.access(path, os.W_OK):
                raise PermissionError(f"run directory {path} is not writable")
        return path

    # -- writing -------------------------------------------------------------------------------
    def write(
        self,
        plan_id: str,
        stage: str,
        files: Mapping[str, str],
        run_id: str | None,
        remove: Iterable[str] = (),
    ) -> list[WrittenFile]:
        """Write ``files`` (name -> text) of one step; delete ``remove`` (stale per-item files)."""
        validate_plan_id(plan_id)
        run_dir = self.run_dir(plan_id, create=True)
        self._remove_stale_temporaries(run_dir)
        for name in files:
            _check_filename(name)

        staged: list[tuple[Path, Path]] = []
        records: list[OutputRecord] = []
        written: list[WrittenFile] = []
        try:
            for name, content in files.items():
                if not isinstance(content, str):
                    raise TypeError(f"content of {name} must be str, got {type(content).__name__}")
                data = content.encode("utf-8")
                final = run_dir / name
                temp = _temp_path(run_dir, name)
                _write_synced(temp, data)
                staged.append((temp, final))
                digest = sha256_text(content)
                records.append(OutputRecord(name, content, stage, str(final), digest))
                written.append(WrittenFile(name, final, len(data), digest))

            # Rows first: from here on, a crash leaves rows that repair() can materialise.
            self.db.upsert_outputs(plan_id, records, run_id=run_id)
        except BaseException:
            for temp, _ in staged:
                temp.unlink(missing_ok=True)
            raise

        for temp, final in staged:
            os.replace(temp, final)
        _fsync_dir(run_dir)

        stale = [n for n in remove if n not in files]
        if stale:
            for name in stale:
                _check_filename(name)
                (run_dir / name).unlink(missing_ok=True)  # file first: never a file without its row
            self.db.delete_plan_content(plan_id, stale)
        return written

    def _remove_stale_temporaries(self, run_dir: Path) -> None:
        """Delete temporaries whose writing process no longer exists (it crashed or was killed)."""
        for leftover in run_dir.glob(f"{TEMP_PREFIX}*"):
            pid_text = leftover.name[len(TEMP_PREFIX) :].split("-", 1)[0]
            if not pid_text.isdigit() or not _process_alive(int(pid_text)):
                leftover.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------------
    def read(self, plan_id: str, filenames: Iterable[str], *, required: bool = True) -> dict[str, str]:
        """Contents from ``plan_content``, each verified against its sha256; repairs the run directory."""
        names = list(filenames)
        rows = self.db.get_contents(plan_id, names)
        missing = [n for n in names if n not in rows]
        if missing and required:
            raise ContentIntegrityError(
                f"plan {plan_id}: no stored content for {', '.join(missing)}; materialise the upstream step first"
            )
        out = _verified(plan_id, rows.values())
        self.repair(plan_id, out)
        return out

    def materialize(self, plan_id: str, filenames: Iterable[str] | None = None) -> tuple[Path, list[str]]:
        """Write the plan's files (every row, or ``filenames``) from ``plan_content`` into this
        machine's run directory, each verified against its sha256 first. Returns the directory and
        the names that were missing there or differed from their rows.

        The run directory is a cache of the rows: a machine that did not run a step (another
        worker, the machine of someone reading the plan) gets its files this way."""
        validate_plan_id(plan_id)
        if filenames is None:
            rows = self.db.get_plan_content(plan_id)
        else:
            names = list(filenames)
            found = self.db.get_contents(plan_id, names)
            missing = [n for n in names if n not in found]
            if missing:
                raise ContentIntegrityError(f"plan {plan_id}: no stored content for {', '.join(missing)}")
            rows = list(found.values())
        fixed = self.repair(plan_id, _verified(plan_id, rows))
        return self.run_dir(plan_id), fixed

    def exists(self, plan_id: str, filenames: Iterable[str]) -> bool:
        names = list(filenames)
        return len(self.db.stored_filenames(plan_id, names)) == len(set(names))

    def repair(self, plan_id: str, contents: Mapping[str, str]) -> list[str]:
        """Rewrite run-directory files that are missing or differ from their rows. Returns the names fixed."""
        run_dir = self.run_dir(plan_id)
        fixed: list[str] = []
        for name, content in contents.items():
            _check_filename(name)  # a row's name never leaves the run directory
            path = run_dir / name
            data = content.encode("utf-8")
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                current = None
            if current != data:
                run_dir.mkdir(parents=True, exist_ok=True)
                temp = _temp_path(run_dir, name)
                _write_synced(temp, data)
                os.replace(temp, path)
                fixed.append(name)
        if fixed:
            _fsync_dir(run_dir)
            log.warning(
                "plan %s: restored %d file(s) from plan_content: %s", plan_id, len(fixed), ", ".join(fixed)
            )
        return fixed


def _verified(plan_id: str, rows: Iterable) -> dict[str, str]:
    """filename -> content of ``plan_content`` rows, refusing a row whose content is not its sha256."""
    out: dict[str, str] = {}
    for row in rows:
        digest = sha256_text(row.content)
        if row.content_hash and row.content_hash != digest:
            raise ContentIntegrityError(
                f"plan {plan_id}: stored content of {row.filename} does not match its sha256 "
                f"(stored {row.content_hash[:12]}…, computed {digest[:12]}…); re-materialise its step"
            )
        out[row.filename] = row.content
    return out


def _temp_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}-{name}"


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_filename(name: str) -> None:
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise ValueError(f"refusing to write output file named {name!r}")


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
