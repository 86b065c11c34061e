"""The A1111 modules community extensions import (issue 16): an unmodified-style extension
(tests/fixtures/extensions/mods-imports) imports them at module level and reads what real ones read; each
adapter is checked against Atelier's own engine (checkpoints, embeddings, extra networks, tile grids, masks,
output folders, unsupported internals)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from app.params import GenerationParams, Img2ImgParams
from app.paths import Paths
from app.plugins import load_extensions
from app.plugins.compat import current as compat_current
from app.prompts.extra_networks import ExtraNetworkRegistry
from app.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extensions"


@pytest.fixture(autouse=True)
def _restore_current_registry():
    previous = compat_current.set_current(None)
    yield
    compat_current.set_current(previous)


def make_runtime(tmp_path: Path, names: tuple[str, ...] = ("mods-imports",), config: dict[str, Any] | None = None,
                 **flags: Any) -> SimpleNamespace:
    from app.models.catalog.index import Catalog

    paths = Paths.from_data_dir(tmp_path)
    for name in names:
        shutil.copytree(FIXTURES / name, paths.extensions_dir / name)
    paths.extensions_dir.mkdir(parents=True, exist_ok=True)
    (paths.ckpt_dirs[0]).mkdir(parents=True, exist_ok=True)
    (paths.ckpt_dirs[0] / "fox-v1.safetensors").write_bytes(b"not read: listing only")
    paths.embeddings_dirs[0].mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": torch.zeros(2, 768)}, str(paths.embeddings_dirs[0] / "grumpy.safetensors"))
    paths.config_file.write_text(json.dumps(config or {}), encoding="utf-8")
    args = SimpleNamespace(**{"disable_all_extensions": False, "disable_extra_extensions": False, "skip_install": False,
                              "lora_dir": None, "embeddings_dir": None, "hypernetwork_dir": None, **flags})
    return SimpleNamespace(paths=paths, settings=Settings.load(paths.config_file), args=args,
                           catalog=Catalog(paths, no_hashing=True), extra_networks=ExtraNetworkRegistry(), _lazy={})


def loaded_module(registry: Any) -> Any:
    """The imported module of the fixture's script (its SEEN record)."""
    import sys

    names = [n for n in sys.modules if n.startswith("atelier_ext_") and n.endswith("uses_modules")]
    return sys.modules[max(names, key=lambda n: int(n.split("_")[2]))]  # the latest load's


def test_extension_importing_a1111_modules_loads_and_reads_atelier_values(tmp_path):
    runtime = make_runtime(tmp_path)
    registry = load_extensions(runtime)
    ext = next(e for e in registry.extensions if e.name == "mods-imports")
    assert ext.errors == [] and ext.scripts == ["scripts/uses_modules.py"]
    seen = loaded_module(registry).SEEN
    # cmd_opts path flags left unset resolve to A1111's default folders, not None
    assert seen["lora_dir"] == str(tmp_path.resolve() / "models" / "Lora")
    assert seen["lyco_dir_backcompat"] == str(tmp_path.resolve() / "models" / "LyCORIS")
    assert seen["embeddings_dir"] == str(tmp_path.resolve() / "embeddings")
    assert seen["hypernetwork_dir"] == str(tmp_path.resolve() / "models" / "hypernetworks")
    assert seen["skip_install"] is False and seen["pip_installed"] is True
    assert seen["checkpoints"] == ["fox-v1.safetensors"]
    assert seen["embeddings"] == ["grumpy"]
    assert seen["same_callbacks"] and seen["active"] == ["mods-imports"]
    assert seen["attention"] == [["a ", 1.0], ["b", 1.5]]
    assert seen["refresh_symbol"] == "\U0001f504" and seen["have"] and seen["api_model"] == "Txt2ImgRequest"
    assert [p.title for _owner, p in registry.plugins] == ["Mods accordion", "Mods accordion"]  # txt2img + img2img


def test_sd_models_and_embedding_db_follow_the_catalog(tmp_path):
    runtime = make_runtime(tmp_path)
    load_extensions(runtime)
    from modules import sd_hijack, sd_models

    info = sd_models.get_closet_checkpoint_match("fox-v1")
    assert info is not None and info.title == "fox-v1.safetensors" and info.model_name == "fox-v1"
    assert info.hash == sd_models.model_hash(info.filename) == "e3b0c442"  # A1111's old hash (of no bytes here)
    assert list(sd_models.checkpoints_list) == ["fox-v1.safetensors"]
    assert sd_models.checkpoint_aliases["fox-v1"].title == "fox-v1.safetensors"
    assert sd_models.select_checkpoint().title == "fox-v1.safetensors"
    assert sd_models.get_closet_checkpoint_match("nothing-like-it") is None
    db = sd_hijack.model_hijack.embedding_db
    assert db.word_embeddings["grumpy"].shape == 768 and db.skipped_embeddings == {}
    save_file({"emb_params": torch.zeros(1, 768)}, str(runtime.paths.embeddings_dirs[0] / "second.safetensors"))
    db.load_textual_inversion_embeddings()
    assert sorted(db.word_embeddings) == ["grumpy", "second"]


def test_extra_network_handler_sees_p_and_writes_the_infotext(tmp_path):
    runtime = make_runtime(tmp_path)
    registry = load_extensions(runtime)
    handler = runtime.extra_networks.get("tagnet")
    assert handler is not None
    from app.prompts.extra_networks import parse_extra_networks

    _, found = parse_extra_networks("a cat <tagnet:one> <tagnet:two:0.5>")
    plan = SimpleNamespace(params=GenerationParams(prompt="a cat"), extra={"Steps": 20})
    handler.activate(plan, found["tagnet"])
    assert plan.extra == {"Steps": 20, "TagNet": "one,two"}
    handler.deactivate(plan)
    assert loaded_module(registry).SEEN["deactivated"] is True


def test_unsupported_internals_say_why(tmp_path):
    runtime = make_runtime(tmp_path)
    scripts_dir = runtime.paths.extensions_dir / "hijacker" / "scripts"
    scripts_dir.mkdir(parents=True)
    (scripts_dir / "patch.py").write_text("from modules import sd_hijack, shared\nsd_hijack.model_hijack.hijack(None)\n")
    (scripts_dir / "lora_internals.py").write_text("import networks\n")
    registry = load_extensions(runtime)
    errors = next(e for e in registry.extensions if e.name == "hijacker").errors
    assert len(errors) == 2
    assert errors[0].startswith("scripts/lora_internals.py: unsupported: A1111's built-in LoRA extension internals")
    assert errors[1].startswith("scripts/patch.py: unsupported: A1111's model hijack patches the CLIP text encoder")
    from modules import deepbooru, prompt_parser, sd_hijack, shared

    assert not hasattr(shared.sd_model, "forge_objects")  # probes stay False
    with pytest.raises(sd_hijack.UnsupportedFeature, match=r"^unsupported: shared.sd_model.model: .*Regional Prompter"):
        shared.sd_model.model.diffusion_model.named_modules()

    for call in (lambda: deepbooru.model.tag(Image.new("RGB", (4, 4))),
                 lambda: prompt_parser.get_learned_conditioning(None, ["a"], 20)):
        with pytest.raises(sd_hijack.UnsupportedFeature, match="^unsupported: "):
            call()


def test_tile_grid_round_trip_with_a1111_list_layout(tmp_path):
    load_extensions(make_runtime(tmp_path))
    from modules import images

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8))
    grid = images.split_grid(image, tile_w=64, tile_h=64, overlap=16)
    assert (grid.image_w, grid.image_h, grid.overlap) == (200, 150, 16)
    assert all(tile[2].size == (64, 64) for _y, _h, row in grid.tiles for tile in row)
    assert np.array_equal(np.asarray(images.combine_grid(grid)), np.asarray(image))
    for _y, _h, row in grid.tiles:  # what A1111's SD upscale script does: replace tiledata[2] in place
        for tiledata in row:
            tiledata[2] = Image.new("RGB", tiledata[2].size, (10, 20, 30))
    assert images.combine_grid(grid).getpixel((199, 149)) == (10, 20, 30)
    assert images.image_grid([image, image, image, image], rows=2).size == (400, 300)


def test_masks_and_processed_infotext(tmp_path):
    load_extensions(make_runtime(tmp_path))
    from modules import masking, processing

    brush = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    brush.paste((255, 255, 255, 255), (8, 4, 16, 12))
    mask = processing.create_binary_mask(brush)
    assert mask.mode == "L" and mask.getpixel((9, 5)) == 255 and mask.getpixel((0, 0)) == 0
    assert masking.get_crop_region(mask, pad=2) == (6, 2, 18, 14)
    assert masking.get_crop_region_v2(Image.new("L", (8, 8))) is None
    assert masking.expand_crop_region((6, 2, 18, 14), 64, 32, 32, 32) == (0, 2, 24, 14)
    filled = masking.fill(Image.new("RGB", (32, 32), (200, 0, 0)), mask)
    assert filled.getpixel((10, 6))[0] > 150
    p = processing.StableDiffusionProcessingTxt2Img(prompt="a fox", steps=3, batch_size=2, width=64, height=64)
    done = processing.Processed(p, [Image.new("RGB", (4, 4))] * 2, seed=5, all_seeds=[5, 6], all_subseeds=[1, 2],
                                all_prompts=["a fox", "a dog"])
    text = done.infotext(p, 1)
    assert text.startswith("a dog\n") and "Seed: 6" in text and "Steps: 3" in text


def test_outputs_of_extensions_go_under_the_data_dir(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    data = tmp_path / "data"
    runtime = make_runtime(data, config={"outdir_txt2img_samples": "outputs/mine"})
    load_extensions(runtime)
    from modules import images, processing

    p = processing.StableDiffusionProcessing.from_params(GenerationParams(prompt="x"))
    assert p.outpath_samples == str(data.resolve() / "outputs" / "mine")
    i2i = processing.StableDiffusionProcessing.from_params(GenerationParams(prompt="x", img2img=Img2ImgParams()))
    assert i2i.outpath_grids == str(data.resolve() / "outputs" / "img2img-grids")
    saved, _ = images.save_image(Image.new("RGB", (4, 4)), "relative/folder", "", 1, "x", "png")
    assert Path(saved).parent == data.resolve() / "relative" / "folder" and not (elsewhere / "relative").exists()


def test_launch_module_and_pip_constraints(tmp_path):
    from app.plugins.installer import PINNED, constraints_text, pip_command

    runtime = make_runtime(tmp_path, skip_install=True)
    load_extensions(runtime)
    import launch

    assert launch.run_pip("install atelier-package-that-does-not-exist", "nothing") == ""  # --skip-install
    assert launch.is_installed("torch") and not launch.is_installed("atelier-package-that-does-not-exist")
    command = pip_command(["install", "somepkg"])
    constraints = Path(command[command.index("-c") + 1]).read_text()
    assert constraints == constraints_text() and "torch==" in constraints and "gradio==" in constraints
    assert set(PINNED) == {"torch", "transformers", "gradio", "diffusers"}
    assert "-c" not in pip_command(["list"])
    with pytest.raises(launch.ExtensionInstallError, match="exit code 3"):
        launch.run("exit 3", errdesc="failing step")


def test_ui_common_save_files_as_image_browsers_call_it(tmp_path):
    """`modules.ui_common.save_files` (A1111's Save button; images-browser calls it with `(image, None)` tuples
    or base64 strings and sets `opts.outdir_save` first): files with their infotext under the data dir, a log.csv
    row each, and a gradio update listing the files."""
    import base64
    import csv
    import io

    from app.infotext.storage import read_info_from_image

    data = tmp_path / "data"
    load_extensions(make_runtime(data))
    from modules import shared, ui_common

    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 6), "blue")
    info = {"infotexts": ["a red fox\nSteps: 3, Seed: 5", "a blue fox\nSteps: 3, Seed: 6"], "index_of_first_image": 0,
            "all_seeds": [5, 6], "all_prompts": ["a red fox", "a blue fox"], "sampler_name": "Euler", "steps": 3}
    shared.opts.save_selected_only = False
    update, message = ui_common.save_files(json.dumps(info), [(red, None), (blue, None)], False, 0)
    files = [Path(f) for f in update["value"]]
    assert update["visible"] is True and len(files) == 2 and message.startswith("<p>Saved: ")
    assert all(f.parent == data.resolve() / "log" / "images" for f in files)
    with Image.open(files[1]) as saved:
        assert saved.size == (8, 6) and read_info_from_image(saved)[0].startswith("a blue fox")
    buf = io.BytesIO()
    red.save(buf, format="PNG")
    shared.opts.outdir_save = str(tmp_path / "chosen")  # what images-browser does before calling it
    shared.opts.save_selected_only = True
    update, _ = ui_common.save_files(json.dumps(info), [base64.b64encode(buf.getvalue()).decode(), "unused"], True, 0)
    names = [Path(f).name for f in update["value"]]
    assert names[0] == "images.zip" and len(names) == 2 and Path(update["value"][1]).parent == tmp_path / "chosen"
    with open(tmp_path / "chosen" / "log.csv", encoding="utf8") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["prompt", "seed", "width"] and rows[1][:4] == ["a red fox", "5", "8", "8"]
    with pytest.raises(ValueError, match="cannot read an image"):
        ui_common.save_files("{}", [123], False, -1)


def test_extras_run_pnginfo_and_scripts_list_scripts(tmp_path):
    """What images-browser needs past `save_files` (`modules.extras.run_pnginfo`, `scripts.list_scripts`) and
    ADetailer at import (`paths.extensions_builtin_dir`, `devices.NansException`) and in `ui()`
    (`shared_items.sd_vae_items`)."""
    from app.infotext.storage import encode_image

    data = tmp_path / "data"
    load_extensions(make_runtime(data))
    from modules import extras, scripts

    png = tmp_path / "a.png"
    png.write_bytes(encode_image(Image.new("RGB", (4, 4)), "a fox\nSteps: 3, Seed: 5", "png"))
    with Image.open(png) as image:
        first, geninfo, info = extras.run_pnginfo(image)
    assert first == "" and geninfo == "a fox\nSteps: 3, Seed: 5" and "<b>parameters</b>" in info
    assert extras.run_pnginfo(Image.new("RGB", (2, 2)))[1] is None
    listed = scripts.list_scripts("scripts", ".py")
    assert [(Path(s.basedir).name, s.filename) for s in listed] == [("mods-imports", "uses_modules.py")]
    assert Path(listed[0].path).is_file()
    from modules import devices, paths

    assert paths.extensions_builtin_dir == str(data / "extensions-builtin") and issubclass(devices.NansException,
                                                                                           Exception)
    from modules import shared_items  # ADetailer's ui(): its VAE and checkpoint dropdowns

    (data / "models" / "VAE").mkdir(parents=True, exist_ok=True)
    (data / "models" / "VAE" / "sharp.safetensors").write_bytes(b"not read: listing only")
    shared_items.refresh_vae_list()
    assert shared_items.sd_vae_items() == ["Automatic", "None", "sharp.safetensors"]
    assert [t.split(" [")[0] for t in shared_items.list_checkpoint_tiles()] == ["fox-v1.safetensors"]
