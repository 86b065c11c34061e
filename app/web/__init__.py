"""The web server's request guards (installed by `app.server.build_app`; see `app.web.guards` for the rules).

- `guards`: the rules in one place and `install_request_guards(app, args, ui_login=...)`;
- `gradio_files`: gradio's file rules for the mounted UI (`enforce_gradio_file_rules`, `GradioFileInputGuard`);
- `gradio_auth`: `--gradio-auth` on every UI route (`GradioAuthGuard`);
- `cross_site`: no cross-site state changes, JSON-only routes (`OriginPolicy`, `CrossSiteGuard`);
- `asgi`: what they share: header parsing, error replies, which requests go to the gradio mount.
"""
