"""Durable generate-forever loops: a ``loops`` table in the job database (``jobs.sqlite3``), and the loops of one
Runtime (`ForeverLoops`) that the UI, the job API and the Queue tab share.

A loop row holds its id, kind, params (as a job's: ``GenerationParams.to_dict()`` JSON, init images and mask as PNG
files in ``jobs/<loop id>/``), origin (``ui``, ``job-api``), state (``running`` / ``stopped``), how it stopped
(``cancel``, ``interrupt``, ``error``, ``limit``), the number of finished jobs and the last job's id. Each job a loop
submits is an ordinary job of the durable queue (origin ``forever``).

After a restart every loop still ``running`` resumes with the same params (a seed of -1 keeps giving random seeds,
as A1111's generate forever does); a graceful stop leaves the rows running on purpose (`ForeverLoops.suspend_all`).
The table lives in the same SQLite file as the jobs (WAL mode; a second connection, so `app.jobs.store` is
unchanged); it is opened after `JobStore`, which has already set a corrupt file aside.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.jobs.forever import ForeverLoop
from app.jobs.store import _safe, params_from_text, params_text

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS loops (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT,
    origin TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    created REAL NOT NULL,
    stopped REAL,
    stopped_by TEXT NOT NULL DEFAULT '',
    error TEXT,
    generation INTEGER NOT NULL DEFAULT 0,
    last_job TEXT NOT NULL DEFAULT ''
);
"""
_COLUMNS = ("id", "kind", "params", "origin", "state", "created", "stopped", "stopped_by", "error", "generation",
            "last_job")


@dataclass
class StoredLoop:
    """One row of the loops table, params decoded (None with `error` set when they cannot be read back)."""

    id: str
    kind: str
    params: Any
    origin: str
    state: str
    created: float
    stopped: float | None
    stopped_by: str
    error: str | None
    generation: int
    last_job: str

    def as_json(self) -> dict[str, Any]:
        """The row as the job API shows it (params without images)."""
        params = self.params.to_dict() if self.params is not None and hasattr(self.params, "to_dict") else None
        return {"id": self.id, "kind": self.kind, "origin": self.origin, "state": self.state, "created": self.created,
                "stopped": self.stopped, "stopped_by": self.stopped_by, "error": self.error,
                "generation": self.generation, "last_job": self.last_job, "params": params}


class LoopStore:
    """The loops table of the job database at `path` (thread-safe: one connection behind a lock)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.files = self.path.parent / "jobs"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing (the `app.jobs.forever.LoopRecorder` protocol) -----------------------------------------------------
    def new_id(self) -> str:
        return f"loop-{uuid.uuid4().hex[:12]}"

    def add(self, loop_id: str, kind: str, params: Any, origin: str) -> None:
        text = self._params_text(loop_id, params)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO loops (id, kind, params, origin, state, created) "
                             "VALUES (?, ?, ?, ?, 'running', ?)", (loop_id, kind, text, origin, time.time()))

    def set_params(self, loop_id: str, params: Any) -> None:
        """The loop goes on with new params (the user pressed Generate forever again with other settings)."""
        text = self._params_text(loop_id, params)
        with self._lock:
            self._db.execute("UPDATE loops SET params = ? WHERE id = ?", (text, loop_id))

    def progress(self, loop_id: str, generation: int, last_job: str) -> None:
        with self._lock:
            self._db.execute("UPDATE loops SET generation = ?, last_job = ? WHERE id = ?",
                             (generation, last_job, loop_id))

    def finish(self, loop_id: str, stopped_by: str, error: str | None) -> None:
        with self._lock:
            self._db.execute("UPDATE loops SET state = 'stopped', stopped = ?, stopped_by = ?, error = ? "
                             "WHERE id = ? AND state = 'running'", (time.time(), stopped_by, error, loop_id))

    def _params_text(self, loop_id: str, params: Any) -> str:
        return params_text(self.files / _safe(loop_id), params)

    # -- reading ----------------------------------------------------------------------------------------------------
    def running(self) -> list[StoredLoop]:
        """Loops to resume, oldest first."""
        return self._select("WHERE state = 'running' ORDER BY created ASC")

    def get(self, loop_id: str) -> StoredLoop | None:
        rows = self._select("WHERE id = ?", (loop_id,))
        return rows[0] if rows else None

    def recent(self, state: str | None = None, limit: int = 100) -> list[StoredLoop]:
        """Newest first, optionally only one state."""
        if state:
            return self._select("WHERE state = ? ORDER BY created DESC LIMIT ?", (state, limit))
        return self._select("ORDER BY created DESC LIMIT ?", (limit,))

    def _select(self, where: str, args: tuple[Any, ...] = ()) -> list[StoredLoop]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM loops {where}", args).fetchall()
        return [self._row(dict(zip(_COLUMNS, row, strict=True))) for row in rows]

    def _row(self, row: dict[str, Any]) -> StoredLoop:
        params, unreadable = params_from_text(self.files / _safe(row["id"]), row["params"])
        error = row["error"] or unreadable
        return StoredLoop(row["id"], row["kind"], params, row["origin"], row["state"], row["created"],
                          row["stopped"], row["stopped_by"] or "", error, int(row["generation"] or 0),
                          row["last_job"] or "")


def has_running_loops(db_path: Path | str) -> bool:
    """Whether the job database at `db_path` holds a running loop (cheap: no service needed to find out)."""
    path = Path(db_path)
    if not path.is_file():
        return False
    try:
        db = sqlite3.connect(path, timeout=5.0)
        try:
            row = db.execute("SELECT 1 FROM loops WHERE state = 'running' LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.Error:  # no loops table yet, or a file JobStore will deal with
        return False
    return row is not None


class ForeverLoops:
    """The generate-forever loops of one Runtime: the UI's one loop per tab, the job API's loops, and the ones
    resumed after a restart. `store` None keeps them in memory only (the job database could not be opened)."""

    def __init__(self, service_getter: Callable[[], Any], store: LoopStore | None) -> None:
        self._service_getter = service_getter
        self.store = store
        self._lock = threading.Lock()
        self._loops: dict[str, ForeverLoop] = {}  # loop id -> loop (the ones started or resumed this run)
        self._ui: dict[str, ForeverLoop] = {}  # kind -> the UI tab's loop

    def ui_loop(self, kind: str) -> ForeverLoop:
        """The loop behind a tab's Generate forever / Cancel generate forever (one per kind, as in A1111)."""
        with self._lock:
            if kind not in self._ui:
                self._ui[kind] = self._new(kind, "ui")
            return self._ui[kind]

    def _new(self, kind: str, origin: str) -> ForeverLoop:
        recorder = self.store if self.store is not None else _MemoryRecorder()
        return _TrackedLoop(self, self._service_getter, kind, recorder=recorder, origin=origin)

    def _track(self, loop: ForeverLoop) -> None:
        with self._lock:
            self._loops[loop.loop_id] = loop

    def start(self, params: Any, kind: str, origin: str = "job-api") -> ForeverLoop:
        """A new loop (the job API's); returns it (its `loop_id` names it)."""
        loop = self._new(kind, origin)
        loop.start(params)
        return loop

    def stop(self, loop_id: str, interrupt: bool = False) -> bool:
        """End a loop: after its running job (default) or at once (`interrupt`). A stored loop not running in this
        process (e.g. its params could not be read back) is marked stopped. False when no running loop has that id."""
        with self._lock:
            loop = self._loops.get(loop_id)
        if loop is not None and loop.running:
            (loop.interrupt if interrupt else loop.cancel)()
            return True
        row = self.store.get(loop_id) if self.store is not None else None
        if row is not None and row.state == "running":
            self.store.finish(loop_id, "interrupt" if interrupt else "cancel", row.error)  # type: ignore[union-attr]
            return True
        return False

    def resume(self) -> list[str]:
        """After a restart: every stored loop still running goes on (the UI's join their tab). Returns their ids."""
        if self.store is None:
            return []
        resumed = []
        for row in self.store.running():
            with self._lock:
                if row.id in self._loops:
                    continue
            if row.params is None:
                log.error("generate forever loop %s cannot resume: %s", row.id, row.error)
                self.store.finish(row.id, "error", row.error or "its parameters are missing")
                continue
            loop = self.ui_loop(row.kind) if row.origin == "ui" and not self.ui_loop(row.kind).running else None
            loop = loop or self._new(row.kind, row.origin)
            loop.resume(row.id, row.params, row.generation)
            resumed.append(row.id)
        if resumed:
            log.info("generate forever: %d loop(s) resumed after the restart", len(resumed))
        return resumed

    def suspend_all(self) -> None:
        """The app is stopping: end every loop's thread but keep the running ones stored as running."""
        with self._lock:
            loops = list(self._loops.values())
        for loop in loops:
            loop.suspend()

    def list(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Loops newest first as the job API shows them, with `running_here` for the ones this process runs."""
        with self._lock:
            live = dict(self._loops)
        rows = [row.as_json() for row in self.store.recent(state, limit)] if self.store is not None else [
            _live_json(loop) for loop in live.values() if state in (None, "running" if loop.running else "stopped")]
        for row in rows:
            loop = live.get(row["id"])
            row["running_here"] = bool(loop is not None and loop.running)
            if loop is not None:
                row["generation"] = max(int(row.get("generation") or 0), loop.snapshot().generation)
        return rows

    def get(self, loop_id: str) -> dict[str, Any] | None:
        return next((row for row in self.list(limit=10_000) if row["id"] == loop_id), None)


def _live_json(loop: ForeverLoop) -> dict[str, Any]:
    state = loop.snapshot()
    return {"id": state.loop_id, "kind": loop.kind, "origin": loop.origin,
            "state": "running" if loop.running else "stopped", "stopped_by": state.stopped_by, "error": state.error,
            "generation": state.generation, "last_job": state.history[-1] if state.history else "", "params": None}


class _MemoryRecorder:
    """Ids for loops when the job database is not available (nothing is written; they end with the process)."""

    def new_id(self) -> str:
        return f"loop-{uuid.uuid4().hex[:12]}"

    def add(self, loop_id: str, kind: str, params: Any, origin: str) -> None:
        return None

    def set_params(self, loop_id: str, params: Any) -> None:
        return None

    def progress(self, loop_id: str, generation: int, last_job: str) -> None:
        return None

    def finish(self, loop_id: str, stopped_by: str, error: str | None) -> None:
        return None


class _TrackedLoop(ForeverLoop):
    """A loop that registers its id with its `ForeverLoops` each time it starts or resumes."""

    def __init__(self, owner: ForeverLoops, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    def start(self, params: Any) -> bool:
        started = super().start(params)
        if started:
            self._owner._track(self)
        return started

    def resume(self, loop_id: str, params: Any, generation: int = 0) -> None:
        super().resume(loop_id, params, generation)
        self._owner._track(self)
