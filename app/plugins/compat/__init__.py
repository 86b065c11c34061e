"""A1111 compatibility layer: the parts of A1111's ``modules`` package community extensions import.

``install()`` registers this package as ``modules`` in ``sys.modules`` (and each submodule as
``modules.<name>``; A1111's top-level ``launch`` module too), so an unmodified extension's
``from modules import scripts, shared`` or ``import launch`` works. It is called by the loader only when at
least one enabled extension exists, and it never replaces a ``modules`` package that is not ours (that is
reported as a load error instead).

Covered (each a thin adapter over Atelier's own code): ``scripts``, ``script_callbacks``, ``shared`` (opts,
cmd_opts with A1111's default folders, state, total_tqdm, sd_model, OptionInfo...), ``processing`` (``p`` views
over GenerationParams, Processed, process_images, create_binary_mask...), ``images`` (save_image, split_grid,
combine_grid, image_grid...), ``sd_samplers``, ``devices``, ``paths``, ``hashes``, ``infotext_utils`` /
``generation_parameters_copypaste``, ``sd_models``, ``sd_hijack`` (embedding_db), ``prompt_parser``,
``extra_networks``, ``ui`` / ``ui_components`` / ``ui_common``, ``launch_utils`` (= ``launch``), ``img2img``,
``safe``, ``deepbooru``, ``api`` (``modules.api.api``, ``modules.api.models``), ``masking``, ``extensions``.
What Atelier's engine does not have (A1111's CLIP / attention hijack, its LoRA ``networks`` internals, the ldm
model code) is listed in ``UNSUPPORTED``: importing it fails with "unsupported: <reason>".
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

#: Submodules exposed as ``modules.<name>`` (``modules.api`` is a package of ``api`` and ``models``).
SUBMODULES = ("scripts", "script_callbacks", "shared", "processing", "images", "sd_samplers", "devices", "paths",
              "hashes", "infotext_utils", "sd_models", "sd_hijack", "prompt_parser", "extra_networks", "ui",
              "ui_components", "ui_common", "launch_utils", "img2img", "safe", "deepbooru", "masking",
              "extensions", "shared_state", "errors", "extras", "shared_items")
#: Old A1111 module names → the submodule that provides them now.
ALIASES = {"generation_parameters_copypaste": "infotext_utils"}

#: Top-level names and ``modules.*`` internals extensions import that Atelier cannot provide → why.
UNSUPPORTED = {
    "ldm": "A1111's bundled CompVis ldm model code; Atelier runs diffusers models, so ldm classes "
           "(CrossAttention, DDPM...) do not exist to patch",
    "sgm": "A1111's bundled Stability generative-models (SDXL) code; Atelier runs diffusers models",
    "modules.sd_hijack_clip": "A1111's CLIP text-encoder hijack; Atelier encodes prompts in app.prompts",
    "modules.sd_hijack_optimizations": "A1111's attention-forward replacement; Atelier's attention is diffusers'",
    "modules.sd_hijack_unet": "A1111's UNet forward patching; Atelier's UNet is diffusers'",
    "modules.sd_samplers_kdiffusion": "A1111's k-diffusion sampler wrappers; Atelier has its own samplers",
    "modules.sd_samplers_cfg_denoiser": "A1111's CFGDenoiser object; use script_callbacks.on_cfg_denoiser",
    "modules.lowvram": "A1111's model offloading internals; Atelier's model manager places weights itself",
    "networks": "A1111's built-in LoRA extension internals (network modules patched into ldm layers); Atelier's "
                "LoRA is applied by its model manager",
    "lora": "A1111's built-in LoRA extension internals; Atelier's LoRA is applied by its model manager",
    "extra_networks_lora": "A1111's built-in LoRA extension internals; Atelier's LoRA is applied by its model manager",
    "modules_forge": "Stable Diffusion WebUI Forge's modules (not A1111)",
}


def install() -> list[str]:
    """Make ``modules``, ``modules.<name>`` and ``launch`` importable; returns problems (empty when installed)."""
    existing = sys.modules.get("modules")
    ours = sys.modules[__name__]
    if existing is not None and existing is not ours:
        where = getattr(existing, "__file__", None) or repr(existing)
        return [f"another 'modules' package is already imported ({where}); A1111-style extensions cannot load"]
    sys.modules["modules"] = ours
    for name in SUBMODULES:
        # deferred on purpose: the shims are loaded only when an A1111-style extension is present
        module = importlib.import_module(f"{__name__}.{name}")
        sys.modules[f"modules.{name}"] = module
        setattr(ours, name, module)
    for old, new in ALIASES.items():
        sys.modules[f"modules.{old}"] = sys.modules[f"modules.{new}"]
        setattr(ours, old, sys.modules[f"modules.{new}"])
    api_package = ModuleType("modules.api", "A1111's modules.api package: api (helpers) and models.")
    api_package.__path__ = []  # a package, so `import modules.api.api` resolves through sys.modules
    api_package.api = importlib.import_module(f"{__name__}.api")  # type: ignore[attr-defined]
    api_package.models = importlib.import_module(f"{__name__}.api_models")  # type: ignore[attr-defined]
    sys.modules["modules.api"], sys.modules["modules.api.api"] = api_package, api_package.api  # type: ignore[attr-defined]
    sys.modules["modules.api.models"] = api_package.models  # type: ignore[attr-defined]
    ours.api = api_package  # type: ignore[attr-defined]
    importlib.import_module(f"{__name__}.xyz_grid")  # lists A1111's X/Y/Z plot in scripts.scripts_data
    if "launch" not in sys.modules or sys.modules["launch"] is sys.modules["modules.launch_utils"]:
        sys.modules["launch"] = sys.modules["modules.launch_utils"]
    return []


def unsupported_reason(module_name: str | None) -> str | None:
    """Why ``module_name`` (or the package it is in) cannot be imported, when it is a known A1111 internal."""
    name = module_name or ""
    while name:
        if name in UNSUPPORTED:
            return UNSUPPORTED[name]
        name = name.rpartition(".")[0]
    return None


def uninstall() -> None:
    """Remove the ``modules`` aliases (tests; extensions that imported them keep their references)."""
    if sys.modules.get("modules") is sys.modules[__name__]:
        del sys.modules["modules"]
    for name in (*SUBMODULES, *ALIASES, "api", "api.api", "api.models"):
        if f"modules.{name}" in sys.modules:
            sys.modules.pop(f"modules.{name}", None)
    if sys.modules.get("launch") is sys.modules.get(f"{__name__}.launch_utils"):
        sys.modules.pop("launch", None)
