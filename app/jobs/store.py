"""The durable job queue: every generation job in one SQLite file under the data dir (``jobs.sqlite3``).

What is stored per job: id, kind, params (``GenerationParams.to_dict()`` as JSON; init images and masks as PNG
files in ``jobs/<id>/`` next to the database), state, timestamps, error, the files it saved, its origin
(``ui``, ``api``, ``forever``, ...) and a priority. The service writes a row when a job is queued and updates
it when it starts and finishes, so after a restart:

- jobs that were queued are queued again, in their order (``pending``);
- a job that was running is marked ``interrupted`` with the reason, and can be re-run (``recover``);
- finished jobs stay listed with their state, error and output files.

The database runs in WAL mode (readers never block the worker). A corrupt or unreadable file is moved aside
(``jobs.sqlite3.corrupt-<time>``, never deleted), the error is logged, and the app starts with an empty queue;
nothing is dropped silently. Custom jobs (code, not data) are never stored.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DB_NAME = "jobs.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    params TEXT,
    state TEXT NOT NULL,
    origin TEXT NOT NULL DEFAULT '',
    priority INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    outputs TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""
_COLUMNS = ("id", "seq", "kind", "params", "state", "origin", "priority", "created", "started", "finished", "error",
            "outputs")


class StoreError(RuntimeError):
    """The job database could not be used (the message says what was done about it)."""


@dataclass
class StoredJob:
    """One row of the job table, params decoded (images loaded back from their files)."""

    id: str
    seq: int
    kind: str
    params: Any  # GenerationParams, or None when it could not be restored (see error)
    state: str
    origin: str
    priority: int
    created: float
    started: float | None
    finished: float | None
    error: str | None
    outputs: list[str]

    def as_json(self) -> dict[str, Any]:
        """The row as the job API shows it (params without images)."""
        params = self.params.to_dict() if self.params is not None and hasattr(self.params, "to_dict") else None
        return {"id": self.id, "kind": self.kind, "state": self.state, "origin": self.origin,
                "priority": self.priority, "created": self.created, "started": self.started,
                "finished": self.finished, "error": self.error, "outputs": list(self.outputs), "params": params}


def _save_images(folder: Path, params: Any) -> dict[str, Any]:
    """Init images and mask of an img2img job as PNG files; returns the file names to store with the params."""
    img = getattr(params, "img2img", None)
    if img is None:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, Any] = {"init_images": []}
    for i, image in enumerate(img.init_images or []):
        name = f"init_{i}.png"
        image.save(folder / name)
        names["init_images"].append(name)
    if img.mask is not None:
        img.mask.save(folder / "mask.png")
        names["mask"] = "mask.png"
    return names


def _load_images(folder: Path, params: Any, names: dict[str, Any]) -> None:
    from PIL import Image

    img = getattr(params, "img2img", None)
    if img is None or not names:
        return
    img.init_images = [Image.open(folder / n).copy() for n in names.get("init_images", [])]
    if names.get("mask"):
        img.mask = Image.open(folder / names["mask"]).copy()


def params_text(folder: Path, params: Any) -> str:
    """A job's (or loop's) params as the stored JSON text, its init images and mask written as PNG files in *folder*
    (``TypeError``/``ValueError``/``OSError`` when they cannot be stored)."""
    data = params.to_dict() if params is not None and hasattr(params, "to_dict") else None
    images = _save_images(folder, params) if params is not None else {}
    return json.dumps({"params": data, "images": images})


def params_from_text(folder: Path, text: str | None) -> tuple[Any, str | None]:
    """(``GenerationParams`` or None, why they could not be read back or None) of a stored params text."""
    try:
        stored = json.loads(text or "{}")
        if stored.get("params") is None:
            return None, None
        from app.params import GenerationParams

        params = GenerationParams.from_dict(stored["params"])
        _load_images(folder, params, stored.get("images") or {})
        return params, None
    except (ValueError, TypeError, OSError) as exc:
        return None, f"the stored parameters could not be read back: {exc}"


class JobStore:
    """The job table (see module doc). Thread-safe: one connection behind a lock."""

    def __init__(self, data_dir: Path | str) -> None:
        self.folder = Path(data_dir)
        self.path = self.folder / DB_NAME
        self.files = self.folder / "jobs"
        self._lock = threading.Lock()
        self.problem: str | None = None  # what went wrong with an earlier file, for the log and the UI
        self._db = self._open()

    # -- opening -----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        check = db.execute("PRAGMA quick_check").fetchone()
        if not check or check[0] != "ok":
            db.close()
            raise sqlite3.DatabaseError(f"integrity check failed: {check[0] if check else 'no answer'}")
        db.executescript(_SCHEMA)
        return db

    def _open(self) -> sqlite3.Connection:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.Error as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                part = Path(str(self.path) + suffix)
                if part.exists():
                    part.rename(Path(str(aside) + suffix))
            self.problem = (f"the job database {self.path} could not be read ({exc}); it was kept as {aside.name} "
                            "and the queue starts empty")
            log.error(self.problem)
            try:
                return self._connect()
            except sqlite3.Error as again:
                raise StoreError(f"cannot create the job database {self.path}: {again}") from again

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing -----------------------------------------------------------------------------
    def add(self, job: Any, origin: str = "", priority: int = 0) -> bool:
        """Store a queued job; False (and a log line) when its params cannot be stored (it still runs)."""
        try:
            text = params_text(self.files / _safe(job.id), job.params)
        except (TypeError, ValueError, OSError) as exc:
            log.warning("job %s is not stored (it runs, but a restart would not bring it back): %s", job.id, exc)
            return False
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            self._db.execute(
                "INSERT OR REPLACE INTO jobs (id, seq, kind, params, state, origin, priority, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, seq, job.kind, text, "queued", origin, priority, job.created))
        return True

    def update(self, job: Any) -> None:
        """Record a job's state, times, error and saved files."""
        result = getattr(job, "result", None)
        outputs = list(getattr(result, "saved_paths", None) or [])
        state = getattr(job.state, "value", str(job.state))
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = ?, started = ?, finished = ?, error = ?, outputs = ? WHERE id = ?",
                (state, job.started, job.finished, job.error, json.dumps(outputs), job.id))

    def set_priority(self, job_id: str, priority: int) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET priority = ? WHERE id = ?", (priority, job_id))

    def recover(self, reason: str = "the app stopped while this job was running") -> list[str]:
        """At start: jobs left ``running`` by a stopped app become ``interrupted`` with the reason."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE state = 'running'")]
            self._db.execute("UPDATE jobs SET state = 'interrupted', error = ?, finished = ? WHERE state = 'running'",
                             (reason, time.time()))
        return ids

    # -- reading -----------------------------------------------------------------------------
    def pending(self) -> list[StoredJob]:
        """Queued jobs in the order they run (higher priority first, then oldest first)."""
        return self._select("WHERE state = 'queued' ORDER BY priority DESC, seq ASC")

    def get(self, job_id: str) -> StoredJob | None:
        rows = self._select("WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def recent(self, state: str | None = None, limit: int = 200) -> list[StoredJob]:
        """Newest first, optionally only one state."""
        if state:
            return self._select("WHERE state = ? ORDER BY seq DESC LIMIT ?", (state, limit))
        return self._select("ORDER BY seq DESC LIMIT ?", (limit,))

    def _select(self, where: str, args: tuple[Any, ...] = ()) -> list[StoredJob]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs {where}", args).fetchall()
        return [self._row(dict(zip(_COLUMNS, row, strict=True))) for row in rows]

    def _row(self, row: dict[str, Any]) -> StoredJob:
        params, unreadable = params_from_text(self.files / _safe(row["id"]), row["params"])
        error = row["error"] or unreadable
        return StoredJob(row["id"], row["seq"], row["kind"], params, row["state"], row["origin"], row["priority"],
                         row["created"], row["started"], row["finished"], error, json.loads(row["outputs"] or "[]"))


def _safe(job_id: str) -> str:
    """A job id as a folder name (``task(abc)`` → ``task_abc_``)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in job_id)
