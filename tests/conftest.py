"""Test-wide guards: offline hub, one torch thread, no network beyond loopback."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

_LOOPBACK_PREFIXES = ("127.", "::1", "localhost", "0.0.0.0")


def _is_loopback(host: object) -> bool:
    return isinstance(host, str) and (host.startswith(_LOOPBACK_PREFIXES) or host == "")


def _audit(event: str, args: tuple) -> None:
    """Fail any attempt to reach a non-loopback address (a test that needs the network is broken)."""
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address and not _is_loopback(address[0]):
            raise RuntimeError(f"network access attempted in tests: {address!r}")
    elif event == "socket.getaddrinfo":
        if not _is_loopback(args[0]):
            raise RuntimeError(f"DNS lookup attempted in tests: {args[0]!r}")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory):
    """A data dir with the tiny test models of every family (built once per test process)."""
    from app.devtools.tiny_models import write_tiny_models

    out = tmp_path_factory.mktemp("tiny-data")
    write_tiny_models(out, families=("sd1", "sd2v", "sdxl"))
    return out
