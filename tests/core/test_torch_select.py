"""The launcher's torch build choice (app/devtools/torch_select.py, run by webui.sh): CPU without a GPU, CUDA with
an NVIDIA driver, ROCm, the default on macOS, and TORCH_COMMAND / TORCH_INDEX_URL winning over all of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.devtools.torch_select import CPU_INDEX, ROCM_INDEX, TorchChoice, choose, install

ROOT = Path(__file__).resolve().parents[2]


def facts(tools: tuple[str, ...] = (), files: tuple[str, ...] = ()):
    return (lambda name: f"/usr/bin/{name}" if name in tools else None), (lambda path: path in files)


def pick(env=None, system="Linux", machine="x86_64", tools=(), files=()) -> TorchChoice:
    which, exists = facts(tools, files)
    return choose(env or {}, system, machine, which, exists)


def test_no_gpu_gets_the_cpu_build() -> None:
    choice = pick()
    assert choice.backend == "cpu"
    assert choice.pip_args == ("pip", "install", "torch", "torchvision", "--index-url", CPU_INDEX)
    assert "cpu" in choice.describe() and CPU_INDEX in choice.describe()


@pytest.mark.parametrize(("tools", "files"), [(("nvidia-smi",), ()), ((), ("/proc/driver/nvidia/version",))])
def test_nvidia_gets_the_default_cuda_build(tools, files) -> None:
    choice = pick(tools=tools, files=files)
    assert choice.backend == "cuda" and choice.pip_args is None  # PyPI's Linux build is the CUDA one


@pytest.mark.parametrize(("tools", "files"), [(("rocminfo",), ()), ((), ("/dev/kfd",)), ((), ("/opt/rocm",))])
def test_rocm_gets_the_rocm_index(tools, files) -> None:
    choice = pick(tools=tools, files=files)
    assert choice.backend == "rocm" and choice.pip_args[-2:] == ("--index-url", ROCM_INDEX)


def test_nvidia_wins_over_rocm_tools() -> None:
    assert pick(tools=("nvidia-smi", "rocminfo")).backend == "cuda"


def test_macos_keeps_the_default_build() -> None:
    assert pick(system="Darwin", machine="arm64") == TorchChoice(
        "mps", None, "macOS: the default build runs on Apple silicon's GPU (MPS)")
    assert pick(system="Darwin", machine="x86_64").backend == "default"
    assert pick(system="Darwin", machine="arm64").pip_args is None


def test_arm_linux_without_gpu_keeps_the_default_cpu_only_build() -> None:
    choice = pick(machine="aarch64")
    assert choice.backend == "default" and choice.pip_args is None


@pytest.mark.parametrize("machine_facts", [{}, {"tools": ("nvidia-smi",)}, {"system": "Darwin", "machine": "arm64"}])
def test_torch_command_wins(machine_facts) -> None:
    env = {"TORCH_COMMAND": "pip install torch==2.9.1 torchvision --index-url https://example.invalid/whl"}
    choice = pick(env=env, **machine_facts)
    assert choice.backend == "custom" and choice.custom
    assert choice.pip_args == ("pip", "install", "torch==2.9.1", "torchvision", "--index-url",
                               "https://example.invalid/whl")


def test_torch_index_url_wins_over_detection() -> None:
    choice = pick(env={"TORCH_INDEX_URL": "https://example.invalid/cu126"}, tools=("rocminfo",))
    assert choice.pip_args == ("pip", "install", "torch", "torchvision", "--index-url", "https://example.invalid/cu126")
    assert pick(env={"TORCH_COMMAND": "  ", "TORCH_INDEX_URL": ""}).backend == "cpu"  # blank values do not count


# -- installing -------------------------------------------------------------------------------------------------------
def run_install(choice: TorchChoice, status: int, version: str | None = "2.9.1+cpu"):
    ran: list[list[str]] = []
    said: list[str] = []

    def run(cmd):
        ran.append(list(cmd))
        return status

    code = install(choice, python="/venv/bin/python", run=run, say=said.append, version=lambda: version)
    return code, ran, said


def test_install_runs_the_chosen_command_and_says_which() -> None:
    code, ran, said = run_install(pick(), 0)
    assert code == 0 and ran == [["/venv/bin/python", "-m", "pip", "install", "torch", "torchvision",
                                  "--index-url", CPU_INDEX]]
    assert said[0].startswith("torch build: cpu") and len(said) == 1


def test_default_builds_install_nothing_here() -> None:
    code, ran, said = run_install(pick(tools=("nvidia-smi",)), 0)
    assert code == 0 and ran == [] and "cuda" in said[0]


def test_unreachable_cpu_index_falls_back_with_a_warning() -> None:
    code, _ran, said = run_install(pick(), 1)
    assert code == 0 and "warning" in said[-1] and "default torch" in said[-1]


def test_cpu_install_that_got_another_build_says_so() -> None:
    """pip may take torch from another configured index when the CPU index is unreachable."""
    code, _ran, said = run_install(pick(), 0, version="2.14.1")
    assert code == 0 and "not the CPU build" in said[-1] and "2.14.1" in said[-1]


def test_failing_torch_command_stops_the_launcher() -> None:
    code, _ran, said = run_install(pick(env={"TORCH_COMMAND": "pip install torch==0.0.0"}), 2)
    assert code == 2 and "error" in said[-1]


def test_module_runs_with_the_standard_library_alone() -> None:
    """webui.sh runs it in a venv where nothing is installed yet, so it may import only the standard library."""
    import ast

    tree = ast.parse((ROOT / "app" / "devtools" / "torch_select.py").read_text("utf-8"))
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}
    out = subprocess.run([sys.executable, "-m", "app.devtools.torch_select"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.startswith("torch build: ")


def test_webui_sh_installs_through_the_selection() -> None:
    script = (ROOT / "webui.sh").read_text()
    assert '"$python" -m app.devtools.torch_select --install' in script
    assert script.index("app.devtools.torch_select --install") < script.index('"$python" -m pip install -e .')
    assert subprocess.run(["bash", "-n", str(ROOT / "webui.sh")], capture_output=True).returncode == 0
