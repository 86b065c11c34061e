"""Saving images: A1111 file-name patterns, numbering, folders, grids, atomic writes (spec §9.4)."""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import datetime, timezone

import pytest
from PIL import Image

from app.infotext.storage import read_info_from_image
from app.outputs.filenames import FilenameGenerator, NamingContext, sanitize_filename_part
from app.outputs.save import (
    ImageSaveError,
    make_grid,
    next_sequence_number,
    save_grid,
    save_image,
    write_params_txt,
)
from app.params import GenerationParams, HiresParams, Img2ImgParams

NOW = datetime(2024, 5, 6, 7, 8, 9)
INFO = "a photo of a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 64x64"


def _ctx(**kw) -> NamingContext:
    params = kw.pop("params", GenerationParams(prompt="a photo of a cat", negative_prompt="blurry", styles=["S1"],
                                               sampler_name="DPM++ 2M", steps=20, cfg_scale=7, width=64, height=48))
    base = dict(params=params, seed=1234, prompt="a photo: of a cat, <lora:x:1>", now=NOW, model_hash="6ce0161689",
                model_name="v1-5 pruned", all_seeds=[1234, 1235], job_timestamp="20240506070809")
    base.update(kw)
    return NamingContext(**base)


@pytest.mark.parametrize(
    ("text", "spaces", "expected"),
    [
        ("a photo of a cat", True, "a_photo_of_a_cat"),
        ("a photo of a cat", False, "a photo of a cat"),
        ('#x<y>z:"q"/w\\e|r?t*\n\r\t', False, "_x_y_z__q__w_e_r_t____"),
        ("  lead and trail .. ", False, "lead and trail"),
        ("x" * 200, False, "x" * 128),
        (None, False, None),
    ],
)
def test_sanitize(text, spaces, expected) -> None:
    assert sanitize_filename_part(text, replace_spaces=spaces) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("[seed]", "1234"),
        ("[SEED]-[steps]-[cfg]", "1234-20-7"),
        ("[width]x[height]", "64x48"),
        ("[styles]", "S1"),
        ("[sampler]", "DPM++ 2M"),
        ("[sampler_scheduler]", "DPM++ 2M Karras"),
        ("[scheduler]", "Karras"),
        ("[model_hash]-[model_name]", "6ce0161689-v1-5 pruned"),
        ("[date]", "2024-05-06"),
        ("[datetime]", "20240506070809"),
        ("[datetime<%Y_%m>]", "2024_05"),
        ("[datetime<%H:%M>]", "07_08"),
        ("[job_timestamp]", "20240506070809"),
        ("[prompt_hash]", hashlib.sha256(b"a photo: of a cat, <lora:x:1>").hexdigest()[:8]),
        ("[prompt_hash<4>]", hashlib.sha256(b"a photo: of a cat, <lora:x:1>").hexdigest()[:4]),
        ("[negative_prompt_hash]", hashlib.sha256(b"blurry").hexdigest()[:8]),
        ("[full_prompt_hash<12>]", hashlib.sha256(b"a photo of a cat blurry").hexdigest()[:12]),
        ("[prompt]", "a_photo__of_a_cat,__lora_x_1_"),
        ("[prompt_spaces]", "a photo_ of a cat, _lora_x_1_"),
        ("[prompt_words]", "a photo of a cat lora x 1"),
        ("[seed]-[batch_number]", "1234"),
        ("[seed_first]-[seed_last]", "1234"),
        ("[generation_number]x", "x"),
        ("[batch_size]", "1"),
        ("[hasprompt<cat|nocat><dog|nodog><bird>]", "catnodog"),
        ("[clip_skip]", "1"),
        ("[denoising]", ""),
        ("[vae_filename]", "NoneType"),
        ("a[none]b", "ab"),
        ("[user]-[unknown_tag]", "[user]-[unknown_tag]"),
        ("plain text", "plain text"),
    ],
)
def test_filename_patterns(pattern: str, expected: str) -> None:
    assert FilenameGenerator(_ctx()).apply(pattern) == expected


def test_batch_dependent_tags_and_data_tags() -> None:
    params = GenerationParams(prompt="p", batch_size=2, n_iter=3, clip_skip=2,
                              hires=HiresParams(enabled=True, denoising_strength=0.55))
    ctx = _ctx(params=params, batch_index=1, iteration=2, all_seeds=[10, 11, 12, 13, 14, 15],
               vae_file="/m/VAE/vae-ft-mse.safetensors", user="bob", model_hash=None,
               image=Image.new("RGB", (8, 8), "red"))
    gen = FilenameGenerator(ctx)
    assert gen.apply("[batch_number]-[generation_number]-[seed_first]-[seed_last]") == "2-6-10-15"
    assert gen.apply("[clip_skip]/[denoising]/[vae_filename]/[user]/[model_hash]") == "2/0.55/vae-ft-mse/bob/[model_hash]"
    digest = hashlib.sha256(ctx.image.tobytes()).hexdigest()
    assert gen.apply("[image_hash]") == digest and gen.apply("[image_hash<6>]") == digest[:6]
    assert gen.apply("[width]x[height]") == "8x8"
    img2img = GenerationParams(img2img=Img2ImgParams(denoising_strength=0.3))
    assert FilenameGenerator(_ctx(params=img2img)).apply("d[denoising]") == "d0.3"


def test_datetime_with_time_zone() -> None:
    ctx = _ctx(now=datetime(2024, 5, 6, 23, 30, tzinfo=timezone.utc))
    assert FilenameGenerator(ctx).apply("[datetime<%Y-%m-%d %H><Asia/Tokyo>]") == "2024-05-07 08"
    assert FilenameGenerator(ctx).apply("[datetime<%H><Not/AZone>]") == "23"


def test_prompt_no_styles() -> None:
    ctx = _ctx(prompt="1girl, art by greg, masterpiece", style_prompts=["masterpiece"])
    assert FilenameGenerator(ctx).apply("[prompt_no_styles]") == "1girl, art by greg"


def test_next_sequence_number(tmp_path) -> None:
    assert next_sequence_number(tmp_path / "missing") == 0
    assert next_sequence_number(tmp_path) == 0
    for name in ("00003-1.png", "00010-5-a cat.png", "notes.txt", "grid-0004.png", ".x.tmp", "7.txt"):
        (tmp_path / name).write_bytes(b"")
    assert next_sequence_number(tmp_path) == 11
    assert next_sequence_number(tmp_path, "grid") == 5


def test_save_image_default_layout_and_numbering(tmp_path) -> None:
    image = Image.new("RGB", (64, 64), "blue")
    folder = tmp_path / "outputs" / "txt2img-images"
    first = save_image(image, folder, infotext=INFO, seed=1234, prompt="a photo of a cat", context=NamingContext(now=NOW))
    second = save_image(image, folder, infotext=INFO, seed=1235, prompt="a photo of a cat", context=NamingContext(now=NOW))
    assert first == folder / "2024-05-06" / "00000-1234.png"
    assert second == folder / "2024-05-06" / "00001-1235.png"
    with Image.open(first) as saved:
        assert read_info_from_image(saved)[0] == INFO
    assert sorted(p.name for p in first.parent.iterdir()) == ["00000-1234.png", "00001-1235.png"]


def test_save_image_variants(tmp_path) -> None:
    image = Image.new("RGB", (32, 32))
    flat = save_image(image, tmp_path, infotext=INFO, seed=7, prompt="a photo of a cat", save_to_dirs=False)
    assert flat.name == "00000-7-a photo of a cat.png"
    suffixed = save_image(image, tmp_path, seed=7, prompt="p", save_to_dirs=False, samples_filename_pattern="[seed]",
                          suffix="-before-highres-fix", extension="jpg", save_txt=True, infotext=INFO)
    assert suffixed.name == "00001-7-before-highres-fix.jpg"
    assert suffixed.with_suffix(".txt").read_text(encoding="utf-8") == INFO + "\n"
    with Image.open(suffixed) as saved:
        assert saved.format == "JPEG" and read_info_from_image(saved)[0] == INFO
    named = save_image(image, tmp_path, seed=7, prompt="p", save_to_dirs=False, add_number=False,
                       samples_filename_pattern="fixed-[seed]", infotext=None)
    again = save_image(image, tmp_path, seed=8, prompt="p", save_to_dirs=False, add_number=False,
                       samples_filename_pattern="fixed-7")
    assert named == again == tmp_path / "fixed-7.png"
    forced = save_image(image, tmp_path, forced_filename="abc", save_to_dirs=False, pnginfo=False, infotext=INFO)
    assert forced.name == "abc.png"
    with Image.open(forced) as saved:
        assert read_info_from_image(saved)[0] is None
    no_seed = save_image(image, tmp_path / "s", save_to_dirs=False)
    assert no_seed.name == "00000.png"


def test_directory_pattern_cannot_escape(tmp_path) -> None:
    path = save_image(Image.new("RGB", (8, 8)), tmp_path / "out", seed=1, prompt="../../etc",
                      directories_filename_pattern="../[prompt_spaces]/x")
    assert path.resolve().is_relative_to((tmp_path / "out").resolve())
    assert path.parent.name == "x"


def test_concurrent_saves_get_distinct_numbers(tmp_path) -> None:
    image = Image.new("RGB", (16, 16))
    paths: list = []
    errors: list = []

    def worker(seed: int) -> None:
        try:
            paths.append(save_image(image, tmp_path, seed=seed, prompt="p", save_to_dirs=False,
                                    samples_filename_pattern="x"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(p.name for p in paths) == [f"{i:05}-x.png" for i in range(8)]
    assert sorted(os.listdir(tmp_path)) == [f"{i:05}-x.png" for i in range(8)]


def test_save_errors_name_the_path_and_leave_nothing(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ImageSaveError, match="could not save image to .*file") as info:
        save_image(Image.new("RGB", (8, 8)), blocker, seed=1, prompt="p", save_to_dirs=False)
    assert isinstance(info.value.cause, OSError)
    with pytest.raises(ValueError, match="unsupported image format"):
        save_image(Image.new("RGB", (8, 8)), tmp_path / "o", seed=1, extension="tiff2")
    assert not (tmp_path / "o").exists()
    if os.name == "posix" and os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(ImageSaveError):
            save_image(Image.new("RGB", (8, 8)), ro, seed=1, save_to_dirs=False)


def test_make_grid_rows_and_layout() -> None:
    tiles = [Image.new("RGB", (10, 10), c) for c in ("red", "green", "blue", "white")]
    assert make_grid(tiles).size == (20, 20)
    assert make_grid(tiles[:3]).size == (20, 20)  # round(sqrt(3)) = 2 rows, 2 cols
    six = tiles + tiles[:2]
    assert make_grid(six).size == (30, 20)
    assert make_grid(six, prevent_empty_spots=True).size == (30, 20)
    assert make_grid(six[:5], prevent_empty_spots=True).size == (50, 10)
    assert make_grid(six, n_rows=0, batch_size=3).size == (20, 30)
    assert make_grid(tiles, rows=1).size == (40, 10)
    grid = make_grid([Image.new("RGB", (10, 10), "red"), Image.new("RGB", (4, 4), "blue")], rows=1)
    assert grid.getpixel((15, 5)) == (0, 0, 255) and grid.getpixel((11, 1)) == (255, 255, 255)
    with pytest.raises(ValueError):
        make_grid([])


def test_save_grid_and_params_txt(tmp_path) -> None:
    grid = make_grid([Image.new("RGB", (8, 8))] * 4)
    folder = tmp_path / "txt2img-grids"
    path = save_grid(grid, folder, infotext=INFO, context=NamingContext(now=NOW, seed=1, prompt="p"))
    assert path == folder / "2024-05-06" / "grid-0000.png"
    assert save_grid(grid, folder, context=NamingContext(now=NOW)).name == "grid-0001.png"
    params_txt = write_params_txt(tmp_path / "params.txt", INFO)
    assert params_txt.read_text(encoding="utf-8") == INFO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.txt", "txt2img-grids"]


def test_pure_modules_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, app.infotext.format, app.infotext.paste, app.infotext.storage, app.outputs.save, app.jobs.info; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
