"""Which torch build the launcher installs: `python -m app.devtools.torch_select --install` (run by `webui.sh` on the
first install, before `pip install -e .`).

PyPI's torch for Linux x86_64 is the CUDA build: about 6 GB in the venv, 4 GB of it CUDA libraries a machine
without an NVIDIA GPU never uses. Like A1111's launcher (which picks its `TORCH_COMMAND` per platform), this picks:

| machine | build | pip command |
|---|---|---|
| `TORCH_COMMAND` set | yours | it, as given (e.g. `pip install torch torchvision --index-url URL`) |
| `TORCH_INDEX_URL` set | from that index | `pip install torch torchvision --index-url TORCH_INDEX_URL` |
| Linux with an NVIDIA driver (`nvidia-smi` or `/proc/driver/nvidia/version`) | CUDA | the package index's default (PyPI: CUDA) |
| Linux with ROCm (`rocminfo`, `/dev/kfd` or `/opt/rocm`) | ROCm | `--index-url` PyTorch's ROCm index |
| Linux x86_64 without either | CPU | `--index-url` PyTorch's CPU index |
| Linux aarch64 without a GPU, macOS (MPS on Apple silicon), others | the default | the package index's default |

Nothing is installed when torch is already importable (A1111 does the same), so a chosen build is kept across
updates. When the CPU or ROCm index cannot be reached, the install falls back to the package index's default
torch with a warning (the app still installs and runs); a failing `TORCH_COMMAND` stops the launcher.
Standard library only: it runs in the new venv before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ROCM_INDEX = "https://download.pytorch.org/whl/rocm6.4"
PACKAGES = ("torch", "torchvision")


@dataclass(frozen=True)
class TorchChoice:
    """The build to install: `backend` (cpu, cuda, rocm, mps, default, custom), the pip arguments run as
    `python -m <args>` (None: leave torch to `pip install -e .` and the package index's default), and why."""

    backend: str
    pip_args: tuple[str, ...] | None
    reason: str
    custom: bool = False  # TORCH_COMMAND / TORCH_INDEX_URL: a failure is the user's to see, not to paper over

    def describe(self) -> str:
        command = f"python -m {shlex.join(self.pip_args)}" if self.pip_args else "the package index's default torch"
        return f"torch build: {self.backend} ({self.reason}); installing with {command}"


def _index_install(url: str) -> tuple[str, ...]:
    return ("pip", "install", *PACKAGES, "--index-url", url)


def choose(env: Mapping[str, str], system: str, machine: str, which: Callable[[str], str | None],
           exists: Callable[[str], bool]) -> TorchChoice:
    """The torch build for a machine, from its facts (all passed in, so every branch is testable anywhere)."""
    if env.get("TORCH_COMMAND", "").strip():
        return TorchChoice("custom", tuple(shlex.split(env["TORCH_COMMAND"])), "TORCH_COMMAND is set", custom=True)
    if env.get("TORCH_INDEX_URL", "").strip():
        url = env["TORCH_INDEX_URL"].strip()
        return TorchChoice("custom", _index_install(url), f"TORCH_INDEX_URL is set to {url}", custom=True)
    if system == "Darwin":
        apple = machine in ("arm64", "aarch64")
        return TorchChoice("mps" if apple else "default", None,
                           "macOS: the default build runs on Apple silicon's GPU (MPS)" if apple else "macOS on Intel")
    if system != "Linux":
        return TorchChoice("default", None, f"{system or 'this system'}: set TORCH_COMMAND for a specific build")
    if which("nvidia-smi") or exists("/proc/driver/nvidia/version"):
        return TorchChoice("cuda", None, "an NVIDIA driver was found; the package index's default build is CUDA")
    if which("rocminfo") or exists("/dev/kfd") or exists("/opt/rocm"):
        return TorchChoice("rocm", _index_install(ROCM_INDEX), "ROCm was found (AMD GPU)")
    if machine in ("x86_64", "AMD64", "amd64"):
        return TorchChoice("cpu", _index_install(CPU_INDEX),
                           "no NVIDIA or AMD GPU found; the CPU build leaves out about 4 GB of CUDA libraries")
    return TorchChoice("default", None, f"no GPU found; the package index's default build for {machine} is CPU-only")


def current_choice() -> TorchChoice:
    """The choice for this machine and environment."""
    return choose(os.environ, platform.system(), platform.machine(), shutil.which, os.path.exists)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def installed_torch_version() -> str | None:
    """The version of the torch now installed in this environment (`2.9.1+cpu` for the CPU index's build)."""
    from importlib import metadata

    importlib.invalidate_caches()
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def install(choice: TorchChoice, python: str = sys.executable,
            run: Callable[[Sequence[str]], int] = lambda cmd: subprocess.call(list(cmd)),
            say: Callable[[str], None] = print,
            version: Callable[[], str | None] = installed_torch_version) -> int:
    """Install the chosen build (see module doc for the fallback); returns the exit status for the launcher."""
    say(choice.describe())
    if choice.pip_args is None:
        return 0
    status = run([python, "-m", *choice.pip_args])
    if status == 0:
        got = version()
        if choice.backend == "cpu" and got and "+cpu" not in got:
            say(f"warning: pip installed torch {got}, not the CPU build (the CPU index was not reachable and pip "
                "took torch from another index it is configured with)")
        return 0
    if choice.custom:
        say(f"error: the torch install failed (exit status {status}); check TORCH_COMMAND / TORCH_INDEX_URL")
        return status
    say(f"warning: installing the {choice.backend} build failed (exit status {status}; is its index reachable?); "
        "continuing with the package index's default torch, which may be the larger CUDA build. "
        "Set TORCH_INDEX_URL or TORCH_COMMAND to choose another source.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.devtools.torch_select",
                                     description="Print (or install) the torch build for this machine.")
    parser.add_argument("--install", action="store_true", help="install it unless torch is already installed")
    args = parser.parse_args(argv)
    choice = current_choice()
    if not args.install:
        print(choice.describe())
        return 0
    if torch_installed():
        print("torch is already installed; keeping it (delete the venv to choose again)")
        return 0
    return install(choice)


if __name__ == "__main__":
    raise SystemExit(main())
