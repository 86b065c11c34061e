"""Command-line flags with AUTOMATIC1111's names and meanings (flags only: the entry point is `app.runtime.main`).

`parse_args(argv)` reads `COMMANDLINE_ARGS` from the environment (as `webui-user.sh`/`.bat` set it) and puts those
flags *before* `argv`, so flags typed on the command line win. `server_host`, `is_listening_publicly` and
`redacted_args` answer questions about parsed flags.

Nothing here runs at import: the parser is built on demand.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_PORT = 7860
DEFAULT_API_ONLY_PORT = 7861
LOOPBACK_HOST = "127.0.0.1"
ALL_INTERFACES_HOST = "0.0.0.0"

#: Flags whose values are secrets: they are never shown by `redacted_args` (e.g. /sdapi/v1/cmd-flags) or logs.
SECRET_FLAGS: tuple[str, ...] = ("api_auth", "gradio_auth", "tls_keyfile")


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--listen", action="store_true",
                   help="listen on 0.0.0.0 (all interfaces) instead of 127.0.0.1, to serve other computers on the network")
    g.add_argument("--port", type=int, default=None,
                   help=f"port to listen on (default {DEFAULT_PORT}, or {DEFAULT_API_ONLY_PORT} with --nowebui)")
    g.add_argument("--server-name", type=str, default=None,
                   help="address/host name to bind to (overrides --listen); default 127.0.0.1")
    g.add_argument("--subpath", type=str, default=None,
                   help="serve the web UI under this URL path prefix (e.g. /atelier) behind a reverse proxy")
    g.add_argument("--cors-allow-origins", type=str, default=None,
                   help="comma-separated list of origins allowed to call the server (CORS), e.g. http://127.0.0.1:8000")
    g.add_argument("--cors-allow-origins-regex", type=str, default=None,
                   help="regular expression of origins allowed to call the server (CORS)")
    g.add_argument("--tls-keyfile", type=str, default=None, help="TLS private key file; enables HTTPS with --tls-certfile")
    g.add_argument("--tls-certfile", type=str, default=None, help="TLS certificate file; enables HTTPS with --tls-keyfile")
    g.add_argument("--timeout-keep-alive", type=int, default=30, help="HTTP keep-alive timeout in seconds (default 30)")
    g.add_argument("--autolaunch", action="store_true", help="open the web UI in the system's default browser on start")
    g.add_argument("--disable-console-progressbars", action="store_true",
                   help="do not print progress bars to the console while generating")
    g.add_argument("--worker", type=str, default=None, choices=["process", "thread"],
                   help="where generation runs: 'process' (default for `python -m app`: a supervised child process, "
                        "so a crash or hang there fails one job, not the server) or 'thread' (inside the server "
                        "process, as before; the environment variable ATELIER_WORKER sets the default)")
    g.add_argument("--theme", type=str, default=None, choices=["light", "dark"],
                   help="open the web UI with the light or dark theme (default: the browser's preference)")
    g.add_argument("--share", action="store_true",
                   help="not supported: Atelier never opens public tunnels (use --listen on a trusted network)")


def _add_api_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("API and authentication")
    g.add_argument("--api", action="store_true", help="serve the A1111-compatible HTTP API under /sdapi/v1 (and /docs)")
    g.add_argument("--nowebui", action="store_true", help="serve only the HTTP API, without the web UI (implies --api)")
    g.add_argument("--api-auth", type=str, default=None,
                   help='HTTP Basic credentials required by the API, "user:password[,user2:password2]"')
    g.add_argument("--api-log", action="store_true", help="log every API request")
    g.add_argument("--api-server-stop", action="store_true",
                   help="enable the /sdapi/v1/server-kill, server-restart and server-stop endpoints")
    g.add_argument("--gradio-auth", type=str, default=None,
                   help='credentials required to open the web UI, "user:password[,user2:password2]"')
    g.add_argument("--gradio-auth-path", type=str, default=None,
                   help="file with web UI credentials: user:password pairs, one per line or comma-separated")
    g.add_argument("--enable-insecure-extension-access", action="store_true",
                   help="allow installing extensions from the web UI even when listening on the network")
    g.add_argument("--disable-all-extensions", action="store_true", help="do not load any extension")
    g.add_argument("--disable-extra-extensions", action="store_true",
                   help="do not load extensions other than the built-in ones")


def _add_path_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("folders and files")
    g.add_argument("--data-dir", type=str, default=None,
                   help="base folder for models/, embeddings/, extensions/, outputs/, config.json, ui-config.json, "
                        "styles.csv (point it at an existing A1111 install to reuse its files)")
    g.add_argument("--models-dir", type=str, default=None, help="models folder (default: <data-dir>/models)")
    g.add_argument("--ckpt", type=str, default=None, help="checkpoint file to add to the list and load at start")
    g.add_argument("--ckpt-dir", type=str, default=None,
                   help="extra folder with Stable Diffusion checkpoints (besides models/Stable-diffusion)")
    g.add_argument("--vae-dir", type=str, default=None, help="extra folder with VAE files (besides models/VAE)")
    g.add_argument("--diffusion-models-dir", "--unet-dir", dest="diffusion_models_dir", type=str, default=None,
                   help="extra folder with diffusion models such as Z-Image (besides models/diffusion_models and "
                        "models/unet)")
    g.add_argument("--text-encoders-dir", "--clip-dir", dest="text_encoders_dir", type=str, default=None,
                   help="extra folder with text encoders such as qwen_3_4b (besides models/text_encoders and "
                        "models/clip)")
    g.add_argument("--vae-path", type=str, default=None, help="VAE file to use for every checkpoint (overrides the setting)")
    g.add_argument("--lora-dir", type=str, default=None, help="LoRA folder (default: models/Lora)")
    g.add_argument("--lyco-dir-backcompat", type=str, default=None, help="LyCORIS folder (default: models/LyCORIS)")
    g.add_argument("--embeddings-dir", type=str, default=None,
                   help="textual inversion embeddings folder (default: <data-dir>/embeddings)")
    g.add_argument("--hypernetwork-dir", type=str, default=None, help="hypernetworks folder (default: models/hypernetworks)")
    g.add_argument("--esrgan-models-path", type=str, default=None, help="ESRGAN upscalers folder (default: models/ESRGAN)")
    g.add_argument("--realesrgan-models-path", type=str, default=None,
                   help="Real-ESRGAN upscalers folder (default: models/RealESRGAN)")
    g.add_argument("--swinir-models-path", type=str, default=None, help="SwinIR upscalers folder (default: models/SwinIR)")
    g.add_argument("--dat-models-path", type=str, default=None, help="DAT upscalers folder (default: models/DAT)")
    g.add_argument("--codeformer-models-path", type=str, default=None, help="CodeFormer models folder")
    g.add_argument("--gfpgan-models-path", type=str, default=None, help="GFPGAN models folder")
    g.add_argument("--ui-config-file", type=str, default=None,
                   help="UI defaults file (default: <data-dir>/ui-config.json)")
    g.add_argument("--ui-settings-file", type=str, default=None, help="settings file (default: <data-dir>/config.json)")
    g.add_argument("--styles-file", type=str, action="append", default=None,
                   help="styles CSV file (default: <data-dir>/styles.csv); repeat to use several")
    g.add_argument("--freeze-settings", action="store_true", help="make all settings read-only (UI and API)")
    g.add_argument("--hide-ui-dir-config", action="store_true",
                   help="hide folder settings in the UI and do not read params.txt for the Paste button")
    g.add_argument("--no-prompt-history", action="store_true",
                   help="do not write params.txt (the last generation) and do not read it for Paste")
    g.add_argument("--no-hashing", action="store_true", help="do not compute sha256 hashes of checkpoints")
    g.add_argument("--no-download-sd-model", action="store_true",
                   help="never offer to download Stable Diffusion 1.5 when there is no checkpoint")
    g.add_argument("--do-not-download-clip", action="store_true", help="accepted for compatibility (nothing is downloaded)")
    g.add_argument("--disable-safe-unpickle", action="store_true",
                   help="allow loading .ckpt/.pt files that contain arbitrary pickled Python objects (UNSAFE)")
    g.add_argument("--allow-code", action="store_true", help="allow custom code execution from the web UI scripts")


def _add_device_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("device and precision")
    g.add_argument("--use-cpu", type=str, nargs="+", default=[],
                   help='run on the CPU: "all" (or "sd") for everything, or a list of task names')
    g.add_argument("--device-id", type=str, default=None, help="CUDA device index to use (e.g. 0, 1)")
    g.add_argument("--skip-torch-cuda-test", action="store_true",
                   help="do not stop at start when no CUDA device is found (Atelier falls back to MPS/CPU anyway)")
    g.add_argument("--no-half", action="store_true", help="keep the model in fp32 (full precision) on the GPU")
    g.add_argument("--no-half-vae", action="store_true", help="keep the VAE in fp32 (avoids black/NaN images)")
    g.add_argument("--precision", type=str, default="autocast", choices=["full", "half", "autocast"],
                   help="evaluate at this precision: full = fp32, half/autocast = fp16 on GPU (default autocast)")
    g.add_argument("--upcast-sampling", action="store_true", help="run the model in fp16 but sample in fp32")
    g.add_argument("--medvram", action="store_true", help="keep only the model part in use on the GPU (less VRAM)")
    g.add_argument("--medvram-sdxl", action="store_true", help="--medvram, but only for SDXL models")
    g.add_argument("--lowvram", action="store_true", help="move weights to the GPU piece by piece (least VRAM, slow)")
    g.add_argument("--xformers", action="store_true", help="use xformers attention if installed")
    g.add_argument("--opt-sdp-attention", action="store_true", help="use torch scaled-dot-product attention")
    g.add_argument("--opt-split-attention", action="store_true", help="use sliced attention (less memory)")
    g.add_argument("--disable-nan-check", action="store_true", help="do not check images/latents for NaN values")


def _add_misc_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("other")
    g.add_argument("--skip-install", action="store_true",
                   help="do not run extensions' install.py / requirements.txt at launch (./webui.sh), nor launch.run_pip")
    g.add_argument("--use-textbox-seed", action="store_true", help="show the seed as a textbox instead of a number field")
    g.add_argument("--test-server", action="store_true", help="configure the server for running the test suite")
    g.add_argument("--log-level", type=str, default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level (default INFO)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every flag Atelier understands (A1111 names)."""
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Atelier: a local image-generation web UI in the AUTOMATIC1111 style. "
                    "Flags may also be given in the COMMANDLINE_ARGS environment variable (see webui-user.sh).",
    )
    _add_server_flags(parser)
    _add_api_flags(parser)
    _add_path_flags(parser)
    _add_device_flags(parser)
    _add_misc_flags(parser)
    return parser


def env_args(environ: Mapping[str, str] | None = None) -> list[str]:
    """The flags held in `COMMANDLINE_ARGS` (shell-quoted, like webui-user.sh writes them)."""
    environ = os.environ if environ is None else environ
    raw = environ.get("COMMANDLINE_ARGS", "")
    return shlex.split(raw) if raw.strip() else []


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse `COMMANDLINE_ARGS` + `argv` (default `sys.argv[1:]`) and resolve derived defaults.

    After parsing, `args.port` is always an int (7860, or 7861 with `--nowebui`) and `args.api` is True with
    `--nowebui`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(env_args(environ) + argv)
    if args.port is None:
        args.port = DEFAULT_API_ONLY_PORT if args.nowebui else DEFAULT_PORT
    if args.nowebui:
        args.api = True
    return args


def server_host(args: argparse.Namespace) -> str:
    """The address to bind: `--server-name`, else 0.0.0.0 with `--listen`, else loopback only."""
    if args.server_name:
        return str(args.server_name)
    return ALL_INTERFACES_HOST if args.listen else LOOPBACK_HOST


def is_listening_publicly(args: argparse.Namespace) -> bool:
    """True when the server may be reachable from other machines (A1111 disables extension installs then)."""
    host = server_host(args)
    return bool(args.listen or args.share or (host not in (LOOPBACK_HOST, "localhost", "::1")))


def redacted_args(args: argparse.Namespace) -> dict[str, Any]:
    """All flags as a dict, with secret values (credentials, key files) replaced by "***"."""
    out = dict(vars(args))
    for key in SECRET_FLAGS:
        if out.get(key):
            out[key] = "***"
    return out
