"""Imports point downward only (docs/ARCHITECTURE.md): a static check over every module in app/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

#: Pure modules: no torch/diffusers/transformers/gradio/fastapi at module level.
PURE = [
    "params.py", "paths.py", "settings.py", "settings_options.py", "ui_config.py", "hashes.py", "styles.py",
    "infotext.py", "infotext_parse.py", "infotext_paste.py", "infotext_storage.py", "filenames.py", "images.py",
    "job_info.py", "tiles.py", "fileio.py", "prompts/syntax.py", "prompts/chunks.py",
    "models/catalog.py", "models/catalog_checkpoint.py", "models/catalog_scan.py", "models/catalog_vae.py",
    "models/catalog_lora.py",
]
HEAVY = ("torch", "diffusers", "transformers", "gradio", "fastapi", "spandrel")
#: Packages below the orchestration layer must never reach up into it.
LOWER = ("engine", "models", "prompts")
UPPER = ("app.service", "app.ui", "app.api", "app.runtime", "app.server", "app.cli")


def _imports(path: Path, module_level_only: bool) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    if module_level_only:  # include imports nested in module-level if/try blocks, not in functions
        nodes = [n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 for n in ast.walk(top)]
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _in_type_checking(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.module:
                    found.add(sub.module)
                elif isinstance(sub, ast.Import):
                    found.update(a.name for a in sub.names)
    return found


@pytest.mark.parametrize("rel", [p for p in PURE if (APP / p).exists()])
def test_pure_modules_import_no_heavy_library(rel: str) -> None:
    path = APP / rel
    bad = [m for m in _imports(path, module_level_only=True) if m.split(".")[0] in HEAVY]
    bad = [m for m in bad if m not in _in_type_checking(path)]
    assert not bad, f"app/{rel} imports {bad} at module level (pure layer)"


@pytest.mark.parametrize("package", LOWER)
def test_lower_layers_never_import_upward(package: str) -> None:
    offenders = []
    for path in sorted((APP / package).rglob("*.py")):
        skip = _in_type_checking(path)
        for name in _imports(path, module_level_only=False):
            if name in skip:
                continue
            if name.startswith(UPPER) or name.split(".")[0] in ("gradio", "fastapi"):
                offenders.append(f"{path.relative_to(APP.parent)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_api_and_ui_do_not_import_each_other() -> None:
    offenders = []
    for pkg, other, lib in (("api", "app.ui", "gradio"), ("ui", "app.api", None)):
        for path in sorted((APP / pkg).rglob("*.py")):
            for name in _imports(path, module_level_only=False):
                if name.startswith(other) or (lib and name.split(".")[0] == lib):
                    offenders.append(f"{path.relative_to(APP.parent)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_service_does_not_import_adapters() -> None:
    for rel in ("service.py", "jobs.py"):
        path = APP / rel
        if not path.exists():
            continue
        skip = _in_type_checking(path)
        bad = [n for n in _imports(path, False) if n not in skip and n.startswith(("app.ui", "app.api", "gradio", "fastapi"))]
        assert not bad, f"app/{rel} imports {bad}"
