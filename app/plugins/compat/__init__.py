"""A1111 compatibility layer: the parts of A1111's ``modules`` package simple community extensions import.

``install()`` registers this package as ``modules`` in ``sys.modules`` (and each submodule as
``modules.<name>``), so an unmodified extension's ``from modules import scripts, shared`` works. It is
called by the loader only when at least one enabled extension exists, and it never replaces a
``modules`` package that is not ours (that is reported as a load error instead).

Covered: ``scripts`` (Script, AlwaysVisible, basedir, PostprocessImageArgs...), ``script_callbacks``,
``shared`` (opts, cmd_opts, state, sd_model, OptionInfo, options_section), ``processing``
(StableDiffusionProcessing* views over GenerationParams, Processed, process_images, fix_seed,
create_infotext), ``images`` (save_image, flatten, resize_image), ``sd_samplers`` (samplers list),
``devices`` (torch_gc, device), ``paths`` (script_path, data_path, models_path, extensions_dir), ``hashes``
(sha256, sha256_from_cache over cache.json), ``infotext_utils`` / ``generation_parameters_copypaste``
(parse_generation_parameters).
"""

from __future__ import annotations

import sys
from types import ModuleType

#: Submodules exposed as ``modules.<name>``.
SUBMODULES = ("scripts", "script_callbacks", "shared", "processing", "images", "sd_samplers", "devices", "paths",
              "hashes", "infotext_utils", "errors")
#: Old A1111 module names → the submodule that provides them now.
ALIASES = {"generation_parameters_copypaste": "infotext_utils"}


def install() -> list[str]:
    """Make ``modules`` and ``modules.<name>`` importable; returns problems (empty when installed)."""
    existing = sys.modules.get("modules")
    ours = sys.modules[__name__]
    if existing is not None and existing is not ours:
        where = getattr(existing, "__file__", None) or repr(existing)
        return [f"another 'modules' package is already imported ({where}); A1111-style extensions cannot load"]
    # deferred on purpose: the shims are loaded only when an A1111-style extension is present
    from app.plugins.compat import (
        devices,
        errors,
        hashes,
        images,
        infotext_utils,
        paths,
        processing,
        script_callbacks,
        scripts,
        sd_samplers,
        shared,
    )

    shims: dict[str, ModuleType] = {"scripts": scripts, "script_callbacks": script_callbacks, "shared": shared,
                                    "processing": processing, "images": images, "sd_samplers": sd_samplers,
                                    "devices": devices, "paths": paths, "hashes": hashes,
                                    "infotext_utils": infotext_utils, "errors": errors}
    sys.modules["modules"] = ours
    for name in SUBMODULES:
        module = shims[name]
        sys.modules[f"modules.{name}"] = module
        setattr(ours, name, module)
    for old, new in ALIASES.items():
        sys.modules[f"modules.{old}"] = sys.modules[f"modules.{new}"]
        setattr(ours, old, sys.modules[f"modules.{new}"])
    return []


def uninstall() -> None:
    """Remove the ``modules`` aliases (tests; extensions that imported them keep their references)."""
    if sys.modules.get("modules") is sys.modules[__name__]:
        del sys.modules["modules"]
    for name in (*SUBMODULES, *ALIASES):
        if f"modules.{name}" in sys.modules:
            sys.modules.pop(f"modules.{name}", None)
