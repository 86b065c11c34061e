"""Settings registry and config.json; UiConfig and ui-config.json."""

from __future__ import annotations

import json
import logging
import os

import pytest

import app.settings.store as settings_module
from app.outputs.fileio import write_json_atomic
from app.settings import Settings
from app.settings.schema import OptionInfo, Section, SettingsFrozenError
from app.settings.ui_config import UiConfig

A1111_DEFAULTS = [
    ("sd_model_checkpoint", None),
    ("sd_vae", "Automatic"),
    ("CLIP_stop_at_last_layers", 1),
    ("quicksettings_list", ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers", "forge_additional_modules"]),
    ("samples_format", "png"),
    ("samples_save", True),
    ("grid_save", True),
    ("save_to_dirs", True),
    ("directories_filename_pattern", "[date]"),
    ("samples_filename_pattern", ""),
    ("save_images_add_number", True),
    ("outdir_samples", ""),
    ("outdir_txt2img_samples", "outputs/txt2img-images"),
    ("outdir_img2img_samples", "outputs/img2img-images"),
    ("outdir_extras_samples", "outputs/extras-images"),
    ("outdir_txt2img_grids", "outputs/txt2img-grids"),
    ("outdir_img2img_grids", "outputs/img2img-grids"),
    ("outdir_save", "log/images"),
    ("jpeg_quality", 80),
    ("enable_pnginfo", True),
    ("save_txt", False),
    ("emphasis", "Original"),
    ("comma_padding_backtrack", 20),
    ("prompt_syntax", "a1111"),
    ("eta_ancestral", 1.0),
    ("eta_ddim", 0.0),
    ("randn_source", "CPU"),  # ours: same seed, same image on any device (A1111: GPU)
    ("eta_noise_seed_delta", 0),
    ("img2img_fix_steps", False),
    ("upscaler_for_img2img", None),
    ("ESRGAN_tile", 192),
    ("ESRGAN_tile_overlap", 8),
    ("live_previews_enable", True),
    ("show_progress_every_n_steps", 10),
    ("live_preview_content", "Prompt"),
    ("interrupt_after_current", True),
    ("add_version_to_infotext", True),
    ("sd_checkpoint_cache", 2),
    ("auto_vae_precision", True),
    ("tiling", False),
    ("use_old_hires_fix_width_height", False),
    ("hires_fix_show_sampler", False),
    ("hires_fix_show_prompts", False),
    ("disabled_extensions", []),
    ("disable_all_extensions", "none"),
    ("restore_last_used_values", True),
    ("img_max_size_mp", 200.0),
    ("api_enable_requests", True),
    ("api_forbid_local_requests", True),
    ("sd_vae_overrides_per_model_preferences", True),
    ("cross_attention_optimization", "Automatic"),
    ("torch_compile", False),
    ("token_merging_ratio", 0.0),
    ("deepcache_enabled", False),
    ("auto_launch_browser", "Disable"),  # ours: no browser unless --autolaunch or the setting asks
]


@pytest.fixture
def cfg(tmp_path):
    return tmp_path / "config.json"


@pytest.mark.parametrize(("key", "default"), A1111_DEFAULTS)
def test_defaults(key, default):
    s = Settings()
    assert s[key] == default
    assert type(s[key]) is type(default)


@pytest.mark.parametrize(
    ("key", "component", "choices", "minimum", "maximum", "step"),
    [
        ("CLIP_stop_at_last_layers", "slider", None, 1, 12, 1),
        ("emphasis", "radio", ("Original", "No norm", "Ignore", "None"), None, None, None),
        ("randn_source", "radio", ("GPU", "CPU", "NV"), None, None, None),
        ("samples_format", "dropdown", ("png", "jpg", "jpeg", "webp", "avif"), None, None, None),
        ("jpeg_quality", "slider", None, 1, 100, 1),
        ("samples_save", "checkbox", None, None, None, None),
        ("outdir_save", "textbox", None, None, None, None),
        ("eta_noise_seed_delta", "number", None, None, None, None),
    ],
)
def test_option_metadata(key, component, choices, minimum, maximum, step):
    info = Settings().info(key)
    assert info.component == component
    assert info.static_choices() == choices
    assert (info.minimum, info.maximum, info.step) == (minimum, maximum, step)
    assert info.label and info.section.label


def test_sections_follow_a1111():
    labels = [s.label for s in Settings().sections()]
    for label in ("Saving images/grids", "Paths for saving", "Stable Diffusion", "VAE", "User interface",
                  "Live previews", "Sampler parameters", "Upscaling", "Compatibility"):
        assert label in labels


def test_infotext_keys():
    keys = Settings().infotext_keys()
    assert keys["Clip skip"] == "CLIP_stop_at_last_layers"
    assert keys["ENSD"] == "eta_noise_seed_delta"
    assert keys["Emphasis"] == "emphasis"
    assert keys["RNG"] == "randn_source"


def test_round_trip_and_flat_file(cfg):
    s = Settings.load(cfg)
    assert not cfg.exists()  # loading never writes
    s.set("CLIP_stop_at_last_layers", 2)
    s.set("sd_vae", "foo.vae.safetensors")
    s.set("quicksettings_list", ["sd_model_checkpoint"])
    on_disk = json.loads(cfg.read_text())
    assert on_disk["CLIP_stop_at_last_layers"] == 2 and on_disk["sd_vae"] == "foo.vae.safetensors"
    assert set(on_disk) == {o.key for o in s.options()}  # flat {key: value}, defaults included (as A1111 writes)
    again = Settings.load(cfg)
    assert again["CLIP_stop_at_last_layers"] == 2
    assert again.get("sd_vae") == "foo.vae.safetensors"
    assert again.quicksettings_list == ["sd_model_checkpoint"]


def test_a1111_config_is_read_and_unknown_keys_kept(cfg):
    cfg.write_text(json.dumps({"sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors [6ce0161689]",
                               "CLIP_stop_at_last_layers": 2, "my_extension_option": {"x": 1}}))
    s = Settings.load(cfg)
    assert s["sd_model_checkpoint"] == "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    s.set("jpeg_quality", 90)
    on_disk = json.loads(cfg.read_text())
    assert on_disk["my_extension_option"] == {"x": 1}
    assert on_disk["CLIP_stop_at_last_layers"] == 2
    s.set("my_extension_option", {"x": 2})  # a stored-but-unregistered key accepts any value
    assert Settings.load(cfg)["my_extension_option"] == {"x": 2}


def test_atomic_write_keeps_old_file_when_replace_never_happens(cfg, monkeypatch):
    write_json_atomic(cfg, {"a": 1})

    def crash(*args, **kwargs):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(settings_module.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        write_json_atomic(cfg, {"a": 2})
    assert json.loads(cfg.read_text()) == {"a": 1}
    assert sorted(p.name for p in cfg.parent.iterdir()) == ["config.json"]  # no temp file left behind


def test_set_reports_save_failure_and_file_stays(cfg, monkeypatch):
    s = Settings.load(cfg)
    s.set("jpeg_quality", 70)
    monkeypatch.setattr(settings_module.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        s.set("jpeg_quality", 60)
    assert json.loads(cfg.read_text())["jpeg_quality"] == 70


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe garbage", ""])
def test_corrupt_config_is_backed_up(cfg, caplog, content):
    cfg.write_bytes(content.encode("utf-8", "surrogateescape") if content != "\xff\xfe garbage" else b"\xff\xfe{")
    original = cfg.read_bytes()
    with caplog.at_level(logging.WARNING):
        s = Settings.load(cfg)
    assert s["CLIP_stop_at_last_layers"] == 1
    backups = list(cfg.parent.glob("config.json.bad-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == original
    assert not cfg.exists()
    assert "config.json" in caplog.text
    s.set("jpeg_quality", 81)  # a fresh file is written, the backup stays
    assert backups[0].exists() and json.loads(cfg.read_text())["jpeg_quality"] == 81


def test_wrongly_typed_value_in_file_falls_back_to_default(cfg, caplog):
    cfg.write_text(json.dumps({"CLIP_stop_at_last_layers": "two", "jpeg_quality": 90.0, "eta_ddim": 1}))
    with caplog.at_level(logging.WARNING):
        s = Settings.load(cfg)
    assert s["CLIP_stop_at_last_layers"] == 1 and "CLIP_stop_at_last_layers" in caplog.text
    assert s["jpeg_quality"] == 90 and isinstance(s["jpeg_quality"], int)
    assert s["eta_ddim"] == 1.0 and isinstance(s["eta_ddim"], float)


def test_freeze_settings(cfg):
    Settings.load(cfg).set("jpeg_quality", 70)
    frozen = Settings.load(cfg, frozen=True)
    before = cfg.read_text()
    with pytest.raises(SettingsFrozenError, match="freeze-settings"):
        frozen.set("jpeg_quality", 75)
    assert frozen["jpeg_quality"] == 70 and cfg.read_text() == before


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("CLIP_stop_at_last_layers", "2", "CLIP_stop_at_last_layers"),
        ("CLIP_stop_at_last_layers", 2.5, "integer"),
        ("CLIP_stop_at_last_layers", 13, "outside"),
        ("CLIP_stop_at_last_layers", True, "number"),
        ("samples_save", 1, "samples_save"),
        ("samples_format", "bmp", "not one of"),
        ("emphasis", "Strong", "not one of"),
        ("sd_vae", 3, "sd_vae"),
        ("quicksettings_list", "sd_vae", "list"),
        ("eta_ancestral", "1.0", "eta_ancestral"),
        ("outdir_save", None, "outdir_save"),
    ],
)
def test_validation_errors_name_the_key(cfg, key, value, message):
    s = Settings.load(cfg)
    before = s[key]
    with pytest.raises(ValueError, match=message) as err:
        s.set(key, value)
    assert key in str(err.value)
    assert s[key] == before and not cfg.exists()


def test_unknown_key_is_rejected():
    with pytest.raises(KeyError, match="no_such_setting"):
        Settings().set("no_such_setting", 1)


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        ("eta_ancestral", 1, 1.0),
        ("CLIP_stop_at_last_layers", 3.0, 3),
        ("sd_model_checkpoint", "x.safetensors [0123456789]", "x.safetensors [0123456789]"),
        ("upscaler_for_img2img", "R-ESRGAN 4x+", "R-ESRGAN 4x+"),
        ("quicksettings_list", ("sd_vae",), ["sd_vae"]),
    ],
)
def test_numbers_interchange(key, value, stored):
    s = Settings()
    s.set(key, value)
    assert s[key] == stored and type(s[key]) is type(stored)


def test_listeners_and_rollback(cfg):
    s = Settings.load(cfg)
    seen: list[tuple[str, object]] = []
    everything: list[str] = []
    s.on_change("sd_vae", lambda k, v: seen.append((k, v)))
    s.on_any_change(lambda k, v: everything.append(k))
    assert s.set("sd_vae", "None") is True
    assert s.set("sd_vae", "None") is False  # unchanged: no event
    assert seen == [("sd_vae", "None")] and everything == ["sd_vae"]

    def fail(key, value):
        raise RuntimeError("checkpoint failed to load")

    s.on_change("sd_model_checkpoint", fail)
    with pytest.raises(RuntimeError, match="failed to load"):
        s.set("sd_model_checkpoint", "broken.safetensors")
    assert s["sd_model_checkpoint"] is None
    assert json.loads(cfg.read_text())["sd_model_checkpoint"] is None


def test_set_many_is_all_or_nothing(cfg):
    s = Settings.load(cfg)
    with pytest.raises(ValueError, match="jpeg_quality"):
        s.set_many({"sd_vae": "None", "jpeg_quality": "high"})
    assert s["sd_vae"] == "Automatic" and not cfg.exists()
    assert s.set_many({"sd_vae": "None", "jpeg_quality": 50}) == ["sd_vae", "jpeg_quality"]


def test_dynamic_choices():
    s = Settings()
    assert s.choices("sd_vae") == ["Automatic", "None"]
    s.set_choices_provider("sd_vae", lambda: ["Automatic", "None", "a.vae.pt"])
    assert s.choices("sd_vae") == ["Automatic", "None", "a.vae.pt"]
    assert s.choices("samples_save") == []
    s.set("sd_vae", "b.vae.pt")  # dynamic lists change at run time: not validated against a snapshot


def test_extension_option_keeps_loaded_value(cfg):
    cfg.write_text(json.dumps({"ext_strength": 0.5, "ext_mode": 7}))
    s = Settings.load(cfg)
    section = Section("ext", "My extension")
    s.register(OptionInfo("ext_strength", 1.0, "Strength", section, "slider", minimum=0, maximum=2, step=0.1))
    s.register(OptionInfo("ext_mode", "a", "Mode", section, "radio", choices=("a", "b")))
    assert s["ext_strength"] == 0.5
    assert s["ext_mode"] == "a"  # the stored 7 is not a valid mode
    with pytest.raises(ValueError):
        s.register(OptionInfo("ext_bad", 1, "Bad", section, "knob"))


# -- ui-config.json ---------------------------------------------------------------------------------------------------
def test_ui_config_records_defaults_and_writes_once(tmp_path):
    path = tmp_path / "ui-config.json"
    ui = UiConfig.load(path)
    assert ui.get_or_default("txt2img/Width/value", 512) == 512
    assert ui.get_or_default("txt2img/Width/maximum", 2048) == 2048
    assert ui.get_or_default("customscript/sampler.py/txt2img/Sampling method/value", "DPM++ 2M",
                             choices=["Euler a", "DPM++ 2M"]) == "DPM++ 2M"
    assert not path.exists()
    assert ui.save_if_dirty() is True
    assert json.loads(path.read_text()) == {"txt2img/Width/value": 512, "txt2img/Width/maximum": 2048,
                                            "customscript/sampler.py/txt2img/Sampling method/value": "DPM++ 2M"}
    mtime = os.stat(path).st_mtime_ns
    again = UiConfig.load(path)
    again.get_or_default("txt2img/Width/value", 512)
    assert again.save_if_dirty() is False and os.stat(path).st_mtime_ns == mtime


def test_ui_config_saved_values_win_unless_invalid(tmp_path):
    path = tmp_path / "ui-config.json"
    path.write_text(json.dumps({
        "txt2img/Width/value": 768,
        "txt2img/CFG Scale/value": 5,
        "customscript/sampler.py/txt2img/Sampling method/value": "Removed sampler",
        "txt2img/Hires. fix/value": "yes",
        "txt2img/Styles/value": ["a", "zzz"],
    }))
    ui = UiConfig.load(path)
    assert ui.get_or_default("txt2img/Width/value", 512) == 768
    cfg_scale = ui.get_or_default("txt2img/CFG Scale/value", 7.0)
    assert cfg_scale == 5.0 and isinstance(cfg_scale, float)
    assert ui.get_or_default("customscript/sampler.py/txt2img/Sampling method/value", "DPM++ 2M",
                             choices=["Euler a", "DPM++ 2M"]) == "DPM++ 2M"
    assert ui.get_or_default("txt2img/Hires. fix/value", False) is False
    assert ui.get_or_default("txt2img/Styles/value", [], choices=["a", "b"]) == []
    assert ui.changed_from_defaults()["txt2img/Width/value"] == (512, 768)
    ui.update({"txt2img/Width/value": 640})
    assert json.loads(path.read_text())["txt2img/Width/value"] == 640
    assert json.loads(path.read_text())["customscript/sampler.py/txt2img/Sampling method/value"] == "Removed sampler"


def test_ui_config_corrupt_file_is_backed_up(tmp_path):
    path = tmp_path / "ui-config.json"
    path.write_text("{oops")
    ui = UiConfig.load(path)
    assert ui.get_or_default("txt2img/Width/value", 512) == 512
    assert len(list(tmp_path.glob("ui-config.json.bad-*"))) == 1


def test_listener_may_wait_on_a_thread_that_reads_settings():
    import threading

    s = Settings()
    seen: list[object] = []

    def listener(key, value):  # like loading a model on the worker thread, which reads sd_vae
        t = threading.Thread(target=lambda: seen.append(s.get("sd_vae")))
        t.start()
        t.join(timeout=5)
        assert not t.is_alive(), "settings lock held while listeners run"

    s.on_change("sd_model_checkpoint", listener)
    s.set("sd_model_checkpoint", "a.safetensors", save=False)
    assert seen == ["Automatic"]


def test_set_quietly_records_without_listeners(cfg):
    s = Settings.load(cfg, frozen=True)
    s.on_change("sd_model_checkpoint", lambda k, v: pytest.fail("listener must not run"))
    s.set_quietly("sd_model_checkpoint", "a.safetensors [0123456789]")
    assert s["sd_model_checkpoint"] == "a.safetensors [0123456789]" and not cfg.exists()
    with pytest.raises(ValueError, match="jpeg_quality"):
        s.set_quietly("jpeg_quality", "x")


A1111_CONFIG = {  # a config.json as A1111 1.10 writes it (subset), including keys Atelier does not use
    "samples_save": True, "samples_format": "png", "samples_filename_pattern": "", "save_images_add_number": True,
    "grid_save": True, "grid_format": "png", "n_rows": -1, "enable_pnginfo": True, "save_txt": False,
    "jpeg_quality": 80, "webp_lossless": False, "export_for_4chan": True, "img_downscale_threshold": 4.0,
    "target_side_length": 4000, "img_max_size_mp": 200, "outdir_samples": "",
    "outdir_txt2img_samples": "outputs/txt2img-images", "outdir_save": "log/images", "save_to_dirs": True,
    "directories_filename_pattern": "[date]", "directories_max_prompt_words": 8, "ESRGAN_tile": 192,
    "ESRGAN_tile_overlap": 8, "realesrgan_enabled_models": ["R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B"],
    "upscaler_for_img2img": None, "face_restoration_model": "CodeFormer", "code_former_weight": 0.5,
    "sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors [6ce0161689]", "sd_checkpoints_limit": 1,
    "sd_checkpoint_cache": 0, "sd_vae_checkpoint_cache": 0, "sd_vae": "Automatic",
    "sd_vae_overrides_per_model_preferences": True, "auto_vae_precision": True, "sd_vae_encode_method": "Full",
    "sd_vae_decode_method": "Full", "inpainting_mask_weight": 1.0, "initial_noise_multiplier": 1.0,
    "img2img_color_correction": False, "img2img_fix_steps": False, "img2img_background_color": "#ffffff",
    "cross_attention_optimization": "Automatic", "s_min_uncond": 0.0, "token_merging_ratio": 0.0,
    "pad_cond_uncond": False, "persistent_cond_cache": True, "batch_cond_uncond": True, "emphasis": "Original",
    "comma_padding_backtrack": 20, "CLIP_stop_at_last_layers": 2, "upcast_attn": False, "randn_source": "GPU",
    "tiling": False, "use_old_emphasis_implementation": False, "use_old_hires_fix_width_height": False,
    "quicksettings_list": ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"], "ui_reorder_list": [],
    "hidden_tabs": [], "gradio_theme": "Default", "show_progress_every_n_steps": 64, "show_progress_type": "Approx NN",
    "live_preview_content": "Prompt", "live_preview_refresh_period": 1000, "hide_samplers": [], "eta_ddim": 0.0,
    "eta_ancestral": 1.0, "ddim_discretize": "uniform", "s_churn": 0.0, "s_tmin": 0.0, "s_tmax": 0.0, "s_noise": 1.0,
    "eta_noise_seed_delta": 0, "always_discard_next_to_last_sigma": False, "uni_pc_variant": "bh1",
    "uni_pc_skip_type": "time_uniform", "uni_pc_order": 3, "uni_pc_lower_order_final": True,
    "disabled_extensions": ["sd-webui-controlnet"], "disable_all_extensions": "none", "auto_launch_browser": "Local",
    "interrupt_after_current": True, "sd_checkpoint_hash": "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
}


def test_an_a1111_config_loads_without_warnings_and_round_trips(cfg, caplog):
    cfg.write_text(json.dumps(A1111_CONFIG))
    with caplog.at_level(logging.WARNING):
        s = Settings.load(cfg)
    assert not caplog.records, caplog.text
    for key, value in A1111_CONFIG.items():
        assert s[key] == value, key
    assert s["show_progress_every_n_steps"] == 64  # beyond the slider's 32: kept, as A1111 does
    s.set("jpeg_quality", 85)
    again = json.loads(cfg.read_text())
    assert {k: again[k] for k in A1111_CONFIG if k != "jpeg_quality"} == {
        k: v for k, v in A1111_CONFIG.items() if k != "jpeg_quality"}
