"""Generate forever for the UI: the loop itself lives below the UI and the API (`app.jobs.forever.ForeverLoop`,
durable through `app.jobs.loops`); this name stays for the code that imported it from here."""

from __future__ import annotations

from app.jobs.forever import ForeverLoop, ForeverState

__all__ = ["ForeverLoop", "ForeverState"]
