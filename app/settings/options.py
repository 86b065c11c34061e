"""The built-in settings table: A1111 keys, labels, sections and defaults (plus a few of Atelier's own).

Keys and defaults follow A1111 (modules/shared_options.py) so an A1111 config.json reads as-is. Dynamic choices
(checkpoints, VAEs, upscalers) are filled by the Runtime with `Settings.set_choices_provider`.
Pure module: no torch, no gradio.
"""

from __future__ import annotations

from typing import Any

from app.settings.schema import OptionInfo, Section

SAVING = Section("saving-images", "Saving images/grids")
SAVING_PATHS = Section("saving-paths", "Paths for saving")
SAVING_DIRS = Section("saving-to-dirs", "Saving to a directory")
UPSCALING = Section("upscaling", "Upscaling")
SYSTEM = Section("system", "System")
API = Section("API", "API")
SD = Section("sd", "Stable Diffusion")
VAE = Section("vae", "VAE")
IMG2IMG = Section("img2img", "img2img")
OPTIMIZATIONS = Section("optimizations", "Optimizations")
COMPAT = Section("compatibility", "Compatibility")
EXTRA_NETWORKS = Section("extra_networks", "Extra Networks")
UI = Section("ui", "User interface")
INFOTEXT = Section("infotext", "Infotext")
LIVE_PREVIEWS = Section("ui_live_previews", "Live previews")
SAMPLER_PARAMS = Section("sampler-params", "Sampler parameters")
POSTPROCESSING = Section("postprocessing", "Postprocessing")
EXTENSIONS = Section("extensions", "Extensions")

IMAGE_FORMATS = ("png", "jpg", "jpeg", "webp", "avif")
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")
RNG_SOURCES = ("GPU", "CPU", "NV")
CROSS_ATTENTION = ("Automatic", "sdp", "sdp-no-mem", "sub-quadratic", "Doggettx", "InvokeAI", "xformers", "None")
#: A1111's row (checkpoint, VAE, clip skip) plus Forge's "VAE / Text Encoder" for split-file models (Z-Image)
DEFAULT_QUICKSETTINGS = ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers", "forge_additional_modules"]


def _vae_base_choices() -> tuple[str, ...]:
    """The VAE choices without any VAE file (the Runtime adds the files found on disk)."""
    return ("Automatic", "None")


def _o(section: Section, key: str, default: Any, label: str, component: str | None = None, **kw: Any) -> OptionInfo:
    if component is None:
        component = "checkbox" if isinstance(default, bool) else "number" if isinstance(default, (int, float)) else "textbox"
    return OptionInfo(key=key, default=default, label=label, section=section, component=component, **kw)


def _slider(section: Section, key: str, default: float, label: str, lo: float, hi: float, step: float,
            **kw: Any) -> OptionInfo:
    return _o(section, key, default, label, "slider", minimum=lo, maximum=hi, step=step, **kw)


def _dropdown(section: Section, key: str, default: Any, label: str, choices: Any, **kw: Any) -> OptionInfo:
    return _o(section, key, default, label, "dropdown", choices=choices, **kw)


def _radio(section: Section, key: str, default: Any, label: str, choices: Any, **kw: Any) -> OptionInfo:
    return _o(section, key, default, label, "radio", choices=choices, **kw)


def _saving() -> list[OptionInfo]:
    s = SAVING
    return [
        _o(s, "samples_save", True, "Always save all generated images"),
        _dropdown(s, "samples_format", "png", "File format for images", IMAGE_FORMATS),
        _o(s, "samples_filename_pattern", "", "Images filename pattern"),
        _o(s, "save_images_add_number", True, "Add number to filename when saving"),
        _dropdown(s, "save_images_replace_action", "Replace", "Saving the image to an existing file",
                  ("Replace", "Add number suffix")),
        _o(s, "grid_save", True, "Always save all generated image grids"),
        _dropdown(s, "grid_format", "png", "File format for grids", IMAGE_FORMATS),
        _o(s, "grid_extended_filename", False, "Add extended info (seed, prompt) to filename when saving grid"),
        _o(s, "grid_only_if_multiple", True, "Do not save grids consisting of one picture"),
        _o(s, "grid_prevent_empty_spots", False, "Prevent empty spots in grid (when set to autodetect)"),
        _slider(s, "n_rows", -1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size",
                -1, 16, 1),
        _o(s, "enable_pnginfo", True, "Save text information about generation parameters as chunks to png files"),
        _o(s, "save_txt", False, "Create a text file next to every image with generation parameters"),
        _o(s, "save_images_before_highres_fix", False, "Save a copy of image before applying highres fix"),
        _o(s, "save_images_before_color_correction", False, "Save a copy of image before applying color correction"),
        _o(s, "save_mask", False, "For inpainting, save a copy of the greyscale mask"),
        _o(s, "save_mask_composite", False, "For inpainting, save a masked composite"),
        _slider(s, "jpeg_quality", 80, "Quality for saved jpeg and avif images", 1, 100, 1),
        _o(s, "webp_lossless", False, "Use lossless compression for webp images"),
        _o(s, "export_for_4chan", True, "Save copy of large images as JPG"),
        _o(s, "img_downscale_threshold", 4.0, "File size limit for the above option, MB"),
        _o(s, "target_side_length", 4000.0, "Width/height limit for the above option, in pixels"),
        _o(s, "img_max_size_mp", 200.0, "Maximum image size (megapixels); larger requests are refused"),
        _o(s, "use_original_name_batch", True, "Use original name for output filename during batch process in extras tab"),
        _o(s, "save_selected_only", True, "When using 'Save' button, only save a single selected image"),
        _o(s, "save_init_img", False, "Save init images when using img2img"),
        _o(s, "temp_dir", "", "Directory for temporary images; leave empty for default"),
        _o(s, "clean_temp_dir_at_start", False, "Cleanup non-default temporary directory when starting webui"),
        _o(s, "save_incomplete_images", False, "Save incomplete images"),
    ]


def _saving_paths() -> list[OptionInfo]:
    s = SAVING_PATHS
    return [
        _o(s, "outdir_samples", "", "Output directory for images; if empty, defaults to three directories below"),
        _o(s, "outdir_txt2img_samples", "outputs/txt2img-images", "Output directory for txt2img images"),
        _o(s, "outdir_img2img_samples", "outputs/img2img-images", "Output directory for img2img images"),
        _o(s, "outdir_extras_samples", "outputs/extras-images", "Output directory for images from extras tab"),
        _o(s, "outdir_grids", "", "Output directory for grids; if empty, defaults to two directories below"),
        _o(s, "outdir_txt2img_grids", "outputs/txt2img-grids", "Output directory for txt2img grids"),
        _o(s, "outdir_img2img_grids", "outputs/img2img-grids", "Output directory for img2img grids"),
        _o(s, "outdir_save", "log/images", "Directory for saving images using the Save button"),
        _o(s, "outdir_init_images", "outputs/init-images", "Directory for saving init images when using img2img"),
    ]


def _saving_dirs() -> list[OptionInfo]:
    s = SAVING_DIRS
    return [
        _o(s, "save_to_dirs", True, "Save images to a subdirectory"),
        _o(s, "grid_save_to_dirs", True, "Save grids to a subdirectory"),
        _o(s, "use_save_to_dirs_for_ui", False, "When using \"Save\" button, save images to a subdirectory"),
        _o(s, "directories_filename_pattern", "[date]", "Directory name pattern"),
        _slider(s, "directories_max_prompt_words", 8, "Max prompt words for [prompt_words] pattern", 1, 20, 1),
    ]


def _upscaling() -> list[OptionInfo]:
    s = UPSCALING
    return [
        _slider(s, "ESRGAN_tile", 192, "Tile size for ESRGAN upscalers. 0 = no tiling.", 0, 512, 16),
        _slider(s, "ESRGAN_tile_overlap", 8, "Tile overlap for ESRGAN upscalers, in pixels.", 0, 48, 1),
        _dropdown(s, "upscaler_for_img2img", None, "Upscaler for img2img", None, type=str),
        _slider(s, "upscaling_max_images_in_cache", 5, "Maximum number of images in upscaling cache", 0, 10, 1),
    ]


def _system() -> list[OptionInfo]:
    s = SYSTEM
    return [
        _radio(s, "auto_launch_browser", "Disable", "Automatically open webui in browser on startup",
               ("Disable", "Local", "Remote")),
        _o(s, "enable_console_prompts", False, "Print prompts to console when generating with txt2img and img2img"),
        _o(s, "show_warnings", False, "Show warnings in console"),
        _o(s, "samples_log_stdout", False, "Always print all generation info to standard output"),
        _o(s, "multiple_tqdm", True, "Add a second progress bar to the console that shows progress for an entire job"),
        _o(s, "enable_upscale_progressbar", True, "Show a progress bar in the console for tiled upscaling"),
        _o(s, "list_hidden_files", True, "Load models/files in hidden directories"),
        _o(s, "disable_mmap_load_safetensors", False, "Disable memmapping for loading .safetensors files"),
    ]


def _api() -> list[OptionInfo]:
    s = API
    return [
        _o(s, "api_enable_requests", True, "Allow http:// and https:// URLs for input images in API", restricted=True),
        _o(s, "api_forbid_local_requests", True, "Forbid URLs to local resources", restricted=True),
        _o(s, "api_useragent", "", "User agent for requests"),
        # request limits (docs/SECURITY.md §4; 0 = no limit); read by app.api.limits. These and the
        # URL switches above are `restricted`: locked like the folder settings (a client must not lift them).
        _o(s, "max_request_body_mb", 100, "Largest request body accepted, in MB (web UI file uploads not counted); "
           "0 = no limit", minimum=0, restricted=True),
        _o(s, "api_max_prompt_length", 65536, "Longest prompt accepted by the API, in characters; 0 = no limit",
           minimum=0, restricted=True),
        _o(s, "max_infotext_length", 1 << 20, "Longest infotext parsed (png-info, the API's infotext field), in "
           "characters; 0 = no limit", minimum=0, restricted=True),
        _o(s, "api_max_image_megapixels", 100, "Largest image the API decodes, in megapixels; 0 = no limit",
           minimum=0, restricted=True),
        _o(s, "api_max_request_megapixels", 400, "Most megapixels the API decodes for one request (all its images); "
           "0 = no limit", minimum=0, restricted=True),
        _o(s, "api_image_decode_concurrency", 2, "How many images the API decodes at the same time", minimum=1, restricted=True),
        _o(s, "api_max_generation_megapixels", 64, "Most megapixels one API job may generate at once (width x height "
           "x batch size, at the hires fix size when it is on); 0 = no limit", minimum=0, restricted=True),
        _o(s, "worker_interrupt_grace_s", 15.0, "Seconds a job in the worker process may ignore Interrupt before the "
           "worker is restarted (the job then ends interrupted)", minimum=1.0, restricted=True),
        _o(s, "job_queue_max", 1000, "Most jobs the job API queues at once (more are answered 429 with Retry-After); "
           "0 = no limit", minimum=0, restricted=True),
    ]


def _sd() -> list[OptionInfo]:
    s = SD
    return [
        _dropdown(s, "sd_model_checkpoint", None, "Stable Diffusion checkpoint", None, type=str, infotext="Model hash"),
        _slider(s, "sd_checkpoints_limit", 1, "Maximum number of checkpoints loaded at the same time", 1, 10, 1),
        _o(s, "sd_checkpoints_keep_in_cpu", True, "Only keep one model on device"),
        _slider(s, "sd_checkpoint_cache", 2, "Checkpoints to cache in RAM", 0, 10, 1),
        _radio(s, "emphasis", "Original", "Emphasis mode", EMPHASIS_MODES, infotext="Emphasis"),
        _radio(s, "prompt_syntax", "a1111", "Prompt syntax (a1111: (word:1.1) [a:b:0.5] AND BREAK; compel: word++)",
               ("a1111", "compel")),
        _o(s, "enable_batch_seeds", True, "Make K-diffusion samplers produce same images in a batch as for a single image"),
        _slider(s, "comma_padding_backtrack", 20, "Prompt word wrap length limit", 0, 74, 1),
        _slider(s, "CLIP_stop_at_last_layers", 1, "Clip skip", 1, 12, 1, infotext="Clip skip"),
        _o(s, "upcast_attn", False, "Upcast cross attention layer to float32"),
        _radio(s, "randn_source", "CPU", "Random number generator source", RNG_SOURCES, infotext="RNG"),
        _o(s, "tiling", False, "Tiling", infotext="Tiling"),
        _radio(s, "hires_fix_refiner_pass", "second pass", "Hires fix: which pass to enable refiner for",
               ("first pass", "second pass", "both passes"), infotext="Hires refiner"),
    ]


def _vae() -> list[OptionInfo]:
    s = VAE
    return [
        _slider(s, "sd_vae_checkpoint_cache", 0, "VAE Checkpoints to cache in RAM", 0, 10, 1),
        _dropdown(s, "sd_vae", "Automatic", "SD VAE", _vae_base_choices, type=str, infotext="VAE"),
        # Forge's "VAE / Text Encoder": file names or paths of the text encoder / VAE files split-file models
        # (Z-Image) use; empty = found automatically. SD checkpoints keep using sd_vae.
        _dropdown(s, "forge_additional_modules", [], "VAE / Text Encoder", None, multiselect=True, type=list),
        _o(s, "sd_vae_overrides_per_model_preferences", True, "Selected VAE overrides per-model preferences"),
        _o(s, "auto_vae_precision", True, "Automatically revert VAE to 32-bit floats (on NaN)"),
        _radio(s, "sd_vae_encode_method", "Full", "VAE type for encode", ("Full", "TAESD"), infotext="VAE Encoder"),
        _radio(s, "sd_vae_decode_method", "Full", "VAE type for decode", ("Full", "TAESD"), infotext="VAE Decoder"),
        _slider(s, "vae_tiling_mp", 0.0, "Tiled VAE for images above this many megapixels (0 = never; less memory "
                "for big images, faint seams possible)", 0.0, 64.0, 0.25),
    ]


def _img2img() -> list[OptionInfo]:
    s = IMG2IMG
    return [
        _slider(s, "inpainting_mask_weight", 1.0, "Inpainting conditioning mask strength", 0.0, 1.0, 0.01,
                infotext="Conditional mask weight"),
        _slider(s, "initial_noise_multiplier", 1.0, "Noise multiplier for img2img", 0.0, 1.5, 0.001,
                infotext="Noise multiplier"),
        _slider(s, "img2img_extra_noise", 0.0, "Extra noise multiplier for img2img and hires fix", 0.0, 1.0, 0.01,
                infotext="Extra noise"),
        _o(s, "img2img_color_correction", False, "Apply color correction to img2img results to match original colors."),
        _o(s, "img2img_fix_steps", False,
           "With img2img, do exactly the amount of steps the slider specifies (normally you'd do less with less denoising)."),
        _o(s, "img2img_background_color", "#ffffff", "With img2img, fill transparent parts of the input image with this color.",
           "color"),
        _slider(s, "img2img_editor_height", 720, "Height of the image editor", 80, 1600, 1),
        _o(s, "return_mask", False, "For inpainting, include the greyscale mask in results for web"),
        _o(s, "return_mask_composite", False, "For inpainting, include masked composite in results for web"),
        _o(s, "overlay_inpaint", True, "Overlay original for inpaint"),
    ]


def _optimizations() -> list[OptionInfo]:
    s = OPTIMIZATIONS
    return [
        _dropdown(s, "cross_attention_optimization", "Automatic", "Cross attention optimization", CROSS_ATTENTION),
        _slider(s, "s_min_uncond", 0.0, "Negative Guidance minimum sigma", 0.0, 15.0, 0.01, infotext="NGMS"),
        _slider(s, "token_merging_ratio", 0.0, "Token merging ratio", 0.0, 0.9, 0.1, infotext="Token merging ratio"),
        _slider(s, "token_merging_ratio_img2img", 0.0, "Token merging ratio for img2img", 0.0, 0.9, 0.1),
        _slider(s, "token_merging_ratio_hr", 0.0, "Token merging ratio for high-res pass", 0.0, 0.9, 0.1,
                infotext="Token merging ratio hr"),
        _o(s, "pad_cond_uncond", False, "Pad prompt/negative prompt", infotext="Pad conds"),
        _o(s, "persistent_cond_cache", True, "Persistent cond cache"),
        _o(s, "batch_cond_uncond", True, "Batch cond/uncond"),
        _o(s, "torch_compile", False, "Compile the UNet with torch.compile (slow first run, faster after)"),
        _o(s, "deepcache_enabled", False, "DeepCache: reuse UNet deep features between steps (faster, approximate)"),
        _slider(s, "deepcache_interval", 3, "DeepCache cache interval", 1, 10, 1),
    ]


def _compat() -> list[OptionInfo]:
    s = COMPAT
    return [
        _o(s, "use_old_emphasis_implementation", False, "Use old emphasis implementation."),
        _o(s, "use_old_karras_scheduler_sigmas", False, "Use old karras scheduler sigmas (0.1 to 10)."),
        _o(s, "no_dpmpp_sde_batch_determinism", False, "Do not make DPM++ SDE deterministic across different batch sizes."),
        _o(s, "use_old_hires_fix_width_height", False,
           "For hires fix, use width/height sliders to set final resolution rather than first pass."),
        _o(s, "hires_fix_use_firstpass_conds", False, "For hires fix, calculate conds of second pass using extra networks of first."),
        _o(s, "use_old_scheduling", False, "Use old prompt editing timelines.", infotext="Old prompt editing timelines"),
        _o(s, "use_downcasted_alpha_bar", False, "Downcast model alphas_cumprod to fp16 before sampling.",
           infotext="Downcast alphas_cumprod"),
        _o(s, "refiner_switch_by_sample_steps", False,
           "Switch to refiner by sampling steps instead of model timesteps. Old behavior for refiner.",
           infotext="Refiner switch by sampling steps"),
    ]


def _extra_networks() -> list[OptionInfo]:
    s = EXTRA_NETWORKS
    return [
        _o(s, "extra_networks_show_hidden_directories", True, "Show hidden directories"),
        _slider(s, "extra_networks_default_multiplier", 1.0, "Default multiplier for extra networks", 0.0, 2.0, 0.01),
        _o(s, "extra_networks_add_text_separator", " ", "Extra networks separator"),
        _radio(s, "lora_preferred_name", "Alias from file", "When adding to prompt, refer to Lora by",
               ("Alias from file", "Filename")),
        _o(s, "lora_add_hashes_to_infotext", True, "Add Lora hashes to infotext"),
        _o(s, "textual_inversion_add_hashes_to_infotext", True, "Add Textual Inversion hashes to infotext"),
    ]


def _ui() -> list[OptionInfo]:
    s = UI
    return [
        _dropdown(s, "quicksettings_list", list(DEFAULT_QUICKSETTINGS), "Quicksettings list", None, multiselect=True),
        _dropdown(s, "ui_tab_order", [], "UI tab order", None, multiselect=True),
        _dropdown(s, "hidden_tabs", [], "Hidden UI tabs", None, multiselect=True),
        _o(s, "restore_last_used_values", True, "Restore the last used generation values when the UI opens"),
        _o(s, "show_progress_in_title", True, "Show generation progress in window title."),
        _o(s, "send_seed", True, "Send seed when sending prompt or image to other interface"),
        _o(s, "send_size", True, "Send size when sending prompt or image to another interface"),
        _o(s, "js_modal_lightbox", True, "Full page image viewer: enable"),
        _o(s, "js_modal_lightbox_initially_zoomed", True, "Full page image viewer: show images zoomed in by default"),
        _o(s, "compact_prompt_box", False, "Compact prompt layout"),
        _o(s, "samplers_in_dropdown", True, "Use dropdown for sampler selection instead of radio group"),
        _o(s, "dimensions_and_batch_together", True, "Show Width/Height and Batch sliders in same row"),
        _o(s, "sd_checkpoint_dropdown_use_short", False, "Checkpoint dropdown: use filenames without paths"),
        _o(s, "hires_fix_show_sampler", False, "Hires fix: show hires checkpoint and sampler selection"),
        _o(s, "hires_fix_show_prompts", False, "Hires fix: show hires prompt and negative prompt"),
        _o(s, "interrupt_after_current", True, "Don't Interrupt in the middle"),
        _slider(s, "keyedit_precision_attention", 0.1, "Precision for (attention:1.1) when editing the prompt with Ctrl+up/down",
                0.01, 0.2, 0.001),
        _slider(s, "keyedit_precision_extra", 0.05, "Precision for <extra networks:0.9> when editing the prompt with Ctrl+up/down",
                0.01, 0.2, 0.001),
        _o(s, "keyedit_delimiters", r".,\/!?%^*;:{}=`~() ", "Word delimiters when editing the prompt with Ctrl+up/down"),
        _o(s, "disable_token_counters", False, "Disable prompt token counters"),
        _o(s, "include_styles_into_token_counters", True, "Count tokens of enabled styles"),
    ]


def _infotext() -> list[OptionInfo]:
    s = INFOTEXT
    return [
        _o(s, "add_model_hash_to_info", True, "Add model hash to infotext"),
        _o(s, "add_model_name_to_info", True, "Add model name to infotext"),
        _o(s, "add_user_name_to_info", False, "Add user name to infotext when authenticated"),
        _o(s, "add_version_to_infotext", True, "Add program version to infotext"),
        _o(s, "disable_weights_auto_swap", True,
           "Disregard checkpoint information from pasted infotext"),
        _dropdown(s, "infotext_skip_pasting", [], "Disregard fields from pasted infotext", None, multiselect=True),
        _radio(s, "infotext_styles", "Apply if any", "Infer styles from prompts of pasted infotext",
               ("Ignore", "Apply", "Discard", "Apply if any")),
    ]


def _live_previews() -> list[OptionInfo]:
    s = LIVE_PREVIEWS
    return [
        _o(s, "show_progressbar", True, "Show progressbar"),
        _o(s, "live_previews_enable", True, "Show live previews of the created image"),
        _radio(s, "live_previews_image_format", "png", "Live preview file format", ("jpeg", "png", "webp")),
        _o(s, "show_progress_grid", True, "Show previews of all images generated in a batch as a grid"),
        _slider(s, "show_progress_every_n_steps", 10,
                "Live preview display period (in sampling steps; -1 = only at the end of generation)", -1, 32, 1),
        _radio(s, "show_progress_type", "Approx NN", "Live preview method",
               ("Full", "Approx NN", "Approx cheap", "TAESD")),
        _radio(s, "live_preview_content", "Prompt", "Live preview subject", ("Combined", "Prompt", "Negative prompt")),
        _slider(s, "live_preview_refresh_period", 1000, "Progressbar and preview update period, in milliseconds",
                100, 5000, 10),
        _o(s, "live_preview_fast_interrupt", False, "Return image with chosen live preview method on interrupt"),
    ]


def _sampler_params() -> list[OptionInfo]:
    s = SAMPLER_PARAMS
    return [
        _dropdown(s, "hide_samplers", [], "Hide samplers in user interface", None, multiselect=True),
        _slider(s, "eta_ddim", 0.0, "Eta for DDIM", 0.0, 1.0, 0.01, infotext="Eta DDIM"),
        _slider(s, "eta_ancestral", 1.0, "Eta for k-diffusion samplers", 0.0, 1.0, 0.01, infotext="Eta"),
        _radio(s, "ddim_discretize", "uniform", "img2img DDIM discretize", ("uniform", "quad")),
        _slider(s, "s_churn", 0.0, "sigma churn", 0.0, 100.0, 0.01, infotext="Sigma churn"),
        _slider(s, "s_tmin", 0.0, "sigma tmin", 0.0, 10.0, 0.01, infotext="Sigma tmin"),
        _slider(s, "s_tmax", 0.0, "sigma tmax", 0.0, 999.0, 0.01, infotext="Sigma tmax"),
        _slider(s, "s_noise", 1.0, "sigma noise", 0.0, 1.1, 0.001, infotext="S noise"),
        _o(s, "sigma_min", 0.0, "sigma min", infotext="Schedule min sigma"),
        _o(s, "sigma_max", 0.0, "sigma max", infotext="Schedule max sigma"),
        _o(s, "rho", 0.0, "rho", infotext="Schedule rho"),
        _o(s, "eta_noise_seed_delta", 0, "Eta noise seed delta", infotext="ENSD"),
        _o(s, "always_discard_next_to_last_sigma", False, "Always discard next-to-last sigma",
           infotext="Discard penultimate sigma"),
        _o(s, "sgm_noise_multiplier", False, "SGM noise multiplier", infotext="SGM noise multiplier"),
        _dropdown(s, "uni_pc_variant", "bh1", "UniPC variant", ("bh1", "bh2", "vary_coeff"), infotext="UniPC variant"),
        _dropdown(s, "uni_pc_skip_type", "time_uniform", "UniPC skip type", ("time_uniform", "time_quadratic", "logSNR"),
                  infotext="UniPC skip type"),
        _slider(s, "uni_pc_order", 3, "UniPC order", 1, 50, 1, infotext="UniPC order"),
        _o(s, "uni_pc_lower_order_final", True, "UniPC lower order final"),
        _radio(s, "sd_noise_schedule", "Default", "Noise schedule for sampling", ("Default", "Zero Terminal SNR"),
               infotext="Noise Schedule"),
        _o(s, "flow_shift", 0.0, "Shift for flow-matching models (Z-Image, FLUX); 0 = the model's default",
           minimum=0.0, comment="a request's or the UI's Shift field wins; infotext key Shift"),
        _slider(s, "skip_early_cond", 0.0, "Ignore negative prompt during early sampling", 0.0, 1.0, 0.01,
                infotext="Skip Early CFG"),
        # The "Beta" schedule type's distribution (A1111 1.10); sampling writes `Beta schedule alpha/beta`.
        _slider(s, "beta_dist_alpha", 0.6, "Beta scheduler - alpha", 0.01, 1.0, 0.01, infotext="Beta scheduler alpha",
                comment="Default = 0.6; the alpha parameter of the beta distribution used in Beta sampling"),
        _slider(s, "beta_dist_beta", 0.6, "Beta scheduler - beta", 0.01, 1.0, 0.01, infotext="Beta scheduler beta",
                comment="Default = 0.6; the beta parameter of the beta distribution used in Beta sampling"),
    ]


def _postprocessing() -> list[OptionInfo]:
    s = POSTPROCESSING
    return [
        _dropdown(s, "postprocessing_enable_in_main_ui", [], "Enable postprocessing operations in txt2img and img2img tabs",
                  None, multiselect=True),
        _dropdown(s, "postprocessing_operation_order", [], "Postprocessing operation order", None, multiselect=True),
    ]


def _extensions() -> list[OptionInfo]:
    s = EXTENSIONS
    return [
        _dropdown(s, "disabled_extensions", [], "Disable these extensions", None, multiselect=True),
        _radio(s, "disable_all_extensions", "none", "Disable all extensions (preserves the list of disabled extensions)",
               ("none", "extra", "all")),
        _o(s, "extensions_index_url",
           "https://raw.githubusercontent.com/AUTOMATIC1111/stable-diffusion-webui-extensions/master/index.json",
           "Extension index (A1111's index.json: a URL, or a local file for offline use)"),
        _o(s, "sd_checkpoint_hash", "", "SHA256 hash of the current checkpoint", hidden=True),
    ]


def builtin_options() -> list[OptionInfo]:
    """Every built-in option, grouped by section in A1111's settings-page order."""
    groups = (_saving, _saving_paths, _saving_dirs, _upscaling, _system, _api, _sd, _vae, _img2img, _optimizations,
              _compat, _extra_networks, _ui, _infotext, _live_previews, _sampler_params, _postprocessing,
              _extensions)
    return [info for group in groups for info in group()]
