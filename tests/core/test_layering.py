"""Imports point downward only (docs/ARCHITECTURE.md): a static check over every module in app/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"

#: Pure modules: no torch/diffusers/transformers/gradio/fastapi at module level.
PURE = [
    "params.py", "paths.py", "errors.py", "firstrun.py", "startup/data_folder.py", "startup/serving.py", "settings/model_choices.py", "settings/__init__.py", "settings/schema.py", "settings/store.py", "settings/options.py",
    "settings/ui_config.py", "models/hashes.py", "prompts/styles.py", "engine/image/tiles.py", "jobs/job.py",
    "jobs/service.py", "jobs/info.py",
    "infotext/format.py", "infotext/parse.py", "infotext/paste.py", "infotext/storage.py", "infotext/samplers.py",
    "outputs/save.py", "outputs/filenames.py", "outputs/fileio.py", "outputs/job.py",
    "prompts/syntax.py", "prompts/chunks.py",
    "models/catalog/index.py", "models/catalog/checkpoint.py", "models/catalog/scan.py", "models/catalog/vae.py",
    "models/catalog/lora.py",
    # what the server process reads about models and families (issue 17: the server imports no torch)
    "families/__init__.py", "families/base.py", "families/registry.py", "families/sd.py", "families/zimage.py",
    "families/flux.py", "families/sizes.py", "models/state.py", "models/load/detect.py", "prompts/plain.py",
    "prompts/count_tokenizers.py", "jobs/forever.py", "jobs/loops.py", "engine/modes/hires_size.py",
    "xyz/__init__.py", "xyz/axes.py", "xyz/values.py",  # the UI and the API read the X/Y/Z axes
]
HEAVY = ("torch", "diffusers", "transformers", "gradio", "fastapi", "spandrel")
#: Packages below the orchestration layer must never reach up into it.
LOWER = ("engine", "models", "prompts")
UPPER = ("app.jobs.service", "app.ui", "app.api", "app.runtime", "app.startup", "app.server", "app.cli")


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
    for rel in ("jobs/service.py", "jobs/job.py", "jobs/info.py"):
        path = APP / rel
        if not path.exists():
            continue
        skip = _in_type_checking(path)
        bad = [n for n in _imports(path, False) if n not in skip and n.startswith(("app.ui", "app.api", "gradio", "fastapi"))]
        assert not bad, f"app/{rel} imports {bad}"


# ------------------------------------------------------------------------------ import cycles
#: Packages checked for import cycles (every import counts: module level, in functions, under TYPE_CHECKING).
CYCLE_FREE = ("engine", "settings", "jobs", "api", "plugins")


def _module_graph() -> dict[str, set[str]]:
    """app module → the app modules it imports (relative imports resolved; ``from pkg import mod`` → pkg.mod)."""
    modules: dict[str, Path] = {}
    for path in APP.rglob("*.py"):
        parts = list(path.relative_to(APP.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)
        found = {known(t) for t in targets} - {None, mod}
        # a package's own __init__ is imported with every submodule: not an edge back
        graph[mod] = {t for t in found if t is not None and not mod.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", CYCLE_FREE)
def test_no_import_cycles(package: str) -> None:
    prefix = f"app.{package}"
    graph = {m: {t for t in targets if t == prefix or t.startswith(prefix + ".")}
             for m, targets in _module_graph().items() if m == prefix or m.startswith(prefix + ".")}
    cycles = _cycles(graph)
    assert not cycles, "import cycles (counting imports inside functions): " + " | ".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycles_anywhere_in_app() -> None:
    """The composition root builds everything and nothing imports it back: zero cycles over all of app/."""
    cycles = _cycles(_module_graph())
    assert not cycles, "import cycles (counting imports inside functions): " + " | ".join(" <-> ".join(c) for c in cycles)


def test_flags_server_and_plugin_hooks_do_not_reach_back() -> None:
    """cli.py holds flags only; server/web guards/auth never import the runtime; native hooks never import the
    A1111 compatibility layer."""
    graph = _module_graph()
    assert not {t for t in graph["app.cli"] if t.startswith("app.")}
    web = [m for m in graph if m.startswith("app.web.")]
    assert web, "app.web modules not found"
    for module in ("app.server", *web, "app.auth", "app.api", "app.ui"):
        assert "app.runtime" not in graph[module], module
    assert not {t for t in graph["app.plugins.hooks"] if t.startswith("app.plugins.compat")}


def test_cycle_finder_sees_function_level_and_relative_imports() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _module_graph()
    assert "app.engine.plan" in graph["app.engine.prepare"]  # module level
    assert "app.engine.sampling.names" in graph["app.api.convert"]  # inside a function


#: Modules the API and the UI use to list and validate sampler names: they must not load torch.
TORCH_FREE = ("app.engine.sampling.names",)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_sampler_names_import_no_torch(module: str) -> None:
    import subprocess
    import sys

    code = (f"import sys, {module} as m\n"
            "m.resolve_names('DPM++ 2M Karras'); m.api_samplers(); m.api_schedulers()\n"
            "print(sorted(k for k in ('torch', 'diffusers', 'transformers') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=APP.parent).stdout.strip()
    assert out == "[]", f"{module} loads {out}"
