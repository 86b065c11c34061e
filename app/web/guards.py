"""Request guards for the web server: what the mounted gradio UI may read, who may call it, and which sites may
change state. Installed by `app.server.build_app` through `install_request_guards(app, args, ui_login=...)` (here);
the gradio mount calls `app.web.gradio_files.enforce_gradio_file_rules(blocks)` right after `gr.mount_gradio_app`.

1. **Gradio's file rules hold for the mounted UI** (`app.web.gradio_files`). `gr.mount_gradio_app` leaves
   `blocks.has_launched` False, and gradio skips its allowed-path check for apps that have not "launched": any
   `FileData` path a client sent was copied into gradio's cache and could then be downloaded. We mark the mounted
   Blocks as launched (what gradio's own reload mode does when it swaps Blocks) and probe that gradio now refuses a
   file outside its upload folder. On top of that, `GradioFileInputGuard` refuses, before gradio sees it, any call
   whose JSON carries a `FileData` path that is not in gradio's upload folder (403 naming the field), so the answer
   is a clear 4xx and the rule holds even if a gradio release changes its internals. `/gradio_api/file=` serves
   only gradio's upload/cache folder, the `allowed_paths` given at mount (the output and log folders) and static
   files registered with gradio.
2. **Every UI route is behind `--gradio-auth`** (`app.web.gradio_auth.GradioAuthGuard`). Gradio itself leaves some
   routes open (`/gradio_api/cancel`, `/reset`, `/heartbeat/…`, `/stream/…`, `/startup-events`, …); the guard answers 401 for
   every request to the gradio mount without a valid gradio session cookie, except the login page and its static
   assets (`PUBLIC_UI_PATHS`, `PUBLIC_UI_PREFIXES`). `/sdapi/` stays under `--api-auth` (`app.auth`).
3. **No cross-site state changes** (`app.web.cross_site.CrossSiteGuard`). A POST/PUT/PATCH/DELETE to any route is
   refused (403) when its `Origin` (or, without one, its `Referer`) names another site than the one addressed (the `Host`, or
   `X-Forwarded-Host` behind a proxy), unless `--cors-allow-origins`/`--cors-allow-origins-regex` allow it. A request
   with neither header (scripts, webuiapi, server-side clients) is not a browser's cross-site request and passes.
   On the JSON routes (`/sdapi/`, gradio's `/gradio_api/` except uploads) the three content types a cross-site
   HTML form can send (`application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`) are refused with
   415, whatever the headers, so a form post cannot reach them even from a browser that omits `Origin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.web.asgi import gradio_route_matcher
from app.web.cross_site import CrossSiteGuard, OriginPolicy
from app.web.gradio_auth import GradioAuthGuard
from app.web.gradio_files import GradioFileInputGuard

if TYPE_CHECKING:
    import argparse

    from fastapi import FastAPI


def install_request_guards(app: FastAPI, args: argparse.Namespace, *, ui_login: bool) -> None:
    """Add the guards to `app` (call after the UI is mounted; the guards find the gradio mount at request time).

    `args` are the flags (`--cors-allow-origins`, `--cors-allow-origins-regex`); `ui_login` is True when the web UI
    has `--gradio-auth` credentials (then every UI route needs a session)."""
    matcher = gradio_route_matcher(app)
    origins = [o for o in (getattr(args, "cors_allow_origins", None) or "").split(",") if o.strip()]
    policy = OriginPolicy(origins, getattr(args, "cors_allow_origins_regex", None))
    app.add_middleware(GradioFileInputGuard, is_gradio=matcher)
    if ui_login:
        app.add_middleware(GradioAuthGuard, fastapi_app=app, is_gradio=matcher)
    app.add_middleware(CrossSiteGuard, policy=policy, is_gradio=matcher)
