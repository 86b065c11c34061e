"""The X/Y/Z plot's description, pure (no torch): A1111's axis table per mode (``axes``) and the value parser
(``values``). The UI, the API, the A1111 layer and the engine's runner (``app.engine.scripts.xyz_plot``) all read it;
it lives outside ``app.engine`` so that building the API router or the UI loads no engine module."""
