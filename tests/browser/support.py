"""What the browser tests share: the real app in a subprocess (`AppServer`) and Chromium's launch arguments."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import die_with_parent, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class AppServer:
    """`python -m app` on a data dir with extra flags (e.g. `--api`); its console output goes to `log`."""

    def __init__(self, data: Path, *flags: str) -> None:
        self.data, self.flags, self.log = Path(data), flags, Path(data) / "server.log"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        env.pop("COMMANDLINE_ARGS", None)
        cmd = [sys.executable, "-m", "app", "--data-dir", str(self.data), "--port", str(self.port), *self.flags]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        wait_until(self._answers, timeout=120, interval=0.5,
                   message=lambda: f"server did not start: {self.log.read_text()[-3000:]}")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(self.url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """A JSON call to the app's API (started with `--api`)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data,
                                     headers={"Content-Type": "application/json"},
                                     method="GET" if data is None else "POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def config(self) -> dict[str, Any]:
        path = self.data / "config.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
