"""The Queue tab: every job of the durable queue (UI, API, job API, generate forever) with its state, and the
three things a user does with one: cancel (or interrupt) it, run it next, run it again. Running generate-forever
loops (`app.jobs.loops`, kind "forever txt2img"...) head the table; Cancel stops one after its running job.

The table is read from the service (the running and queued jobs) and the job database (everything else), so
jobs queued before a restart and the job a restart interrupted are listed too.
"""

from __future__ import annotations

import time
from typing import Any

from app.ui.context import UiContext

COLUMNS = ["id", "kind", "state", "origin", "prompt", "queued at", "error"]
REFRESH_S = 2.0


def queue_rows(ctx: UiContext, limit: int = 100) -> list[list[Any]]:
    """Running and queued jobs first (in run order), then the rest newest first."""
    service = ctx.service
    if service is None:
        return []
    rows: dict[str, list[Any]] = {}
    live = service.jobs_snapshot()
    for job in live:
        if job.get("kind") == "custom":
            continue
        rows[job["id"]] = _row(job["id"], job.get("kind"), job.get("state"), getattr(service.get(job["id"]), "origin", ""),
                               getattr(getattr(service.get(job["id"]), "params", None), "prompt", ""),
                               job.get("created"), job.get("error"))
    store = getattr(service, "store", None)
    if store is not None:
        for stored in store.recent(limit=limit):
            if stored.id not in rows:
                rows[stored.id] = _row(stored.id, stored.kind, stored.state, stored.origin,
                                       getattr(stored.params, "prompt", ""), stored.created, stored.error)
    order = {"running": 0, "queued": 1}
    ranked = sorted(rows.values(), key=lambda r: (order.get(str(r[2]), 2), _position(service, r[0]), -r[-1]))
    return [r[:-1] for r in [*loop_rows(ctx), *ranked]][:limit]


def loop_rows(ctx: UiContext) -> list[list[Any]]:
    """The running generate-forever loops, as table rows (kind "forever <kind>", the images made so far)."""
    loops = getattr(getattr(ctx, "runtime", None), "loops", None)
    if loops is None or not hasattr(loops, "list"):
        return []
    rows = []
    for loop in loops.list(state="running"):
        prompt = (loop.get("params") or {}).get("prompt", "")
        done = int(loop.get("generation") or 0)
        rows.append(_row(loop["id"], f"forever {loop['kind']}", "running", loop.get("origin"),
                         f"[{done} done] {prompt}", loop.get("created"), loop.get("error")))
    return rows


def _position(service: Any, job_id: str) -> int:
    pos = service.position(job_id)
    return pos if pos is not None else 10**9


def _row(job_id: str, kind: Any, state: Any, origin: Any, prompt: Any, created: Any, error: Any) -> list[Any]:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) if created else ""
    text = str(prompt or "")
    return [job_id, str(kind or ""), str(getattr(state, "value", state) or ""), str(origin or ""),
            text if len(text) <= 80 else text[:77] + "...", stamp, str(error or ""), float(created or 0.0)]


def queue_action(ctx: UiContext, action: str, job_id: str) -> str:
    """Cancel / run next / run again one job; returns the message shown under the table."""
    service = ctx.service
    job_id = (job_id or "").strip()
    if service is None or not job_id:
        return "Pick a job in the table first."
    if job_id.startswith("loop-"):
        loops = getattr(getattr(ctx, "runtime", None), "loops", None)
        if action != "cancel" or loops is None:
            return f"{job_id} is a generate-forever loop: Cancel stops it."
        return f"{job_id}: the loop stops after its running job." if loops.stop(job_id) else f"{job_id} is not running."
    if action == "cancel":
        return f"{job_id}: cancel requested." if service.interrupt(job_id) else f"{job_id} is not queued or running."
    if action == "front":
        return f"{job_id} runs next." if service.move_to_front(job_id) else f"{job_id} is not queued."
    try:
        job = service.retry(job_id, origin="ui")
    except KeyError as exc:
        return str(exc.args[0]) if exc.args else f"{job_id} cannot be re-run."
    return f"{job_id} queued again as {job.id}."


def job_choices(rows: list[list[Any]]) -> list[tuple[str, str]]:
    """Dropdown entries for the table's jobs: "state · prompt · id" shown, the id as the value."""
    return [(f"{r[2]} · {str(r[4])[:40]} · {r[0]}", str(r[0])) for r in rows]


def build_queue(ctx: UiContext) -> dict[str, Any]:
    import gradio as gr

    with gr.Column(elem_id="queue_tab"):
        table = gr.Dataframe(headers=COLUMNS, value=None, interactive=False, wrap=True, elem_id="queue_table")
        with gr.Row():
            picked = gr.Dropdown([], value=None, label="Job", elem_id="queue_job", scale=3, allow_custom_value=True)
            cancel = gr.Button("Cancel", elem_id="queue_cancel", scale=1)
            front = gr.Button("Run next", elem_id="queue_front", scale=1)
            rerun = gr.Button("Run again", elem_id="queue_rerun", scale=1)
            refresh = gr.Button("🔄", elem_id="queue_refresh", scale=0, min_width=40)
        message = gr.Markdown("", elem_id="queue_message")
        timer = gr.Timer(REFRESH_S)

    def update(current: Any = None) -> tuple[Any, Any]:
        rows = queue_rows(ctx)
        choices = job_choices(rows)
        keep = current if current in {value for _, value in choices} else None
        return rows, gr.Dropdown(choices=choices, value=keep)

    for button, action in ((cancel, "cancel"), (front, "front"), (rerun, "rerun")):
        button.click(lambda j, a=action: queue_action(ctx, a, j), [picked], message, queue=False).then(
            update, [picked], [table, picked], queue=False)
    refresh.click(update, [picked], [table, picked], queue=False)
    timer.tick(update, [picked], [table, picked], queue=False, show_progress="hidden")
    return {"table": table, "job": picked, "message": message, "load": update, "outputs": [table, picked]}
