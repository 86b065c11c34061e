"""Download a starter model on explicit request:
`python -m app.devtools.download sd15|zimage|flux-schnell|flux-dev|flux-fill [--t5 fp16|fp8] [--data-dir DIR]`.

Each file goes to its models folder (`Stable-diffusion/` for SD 1.5; for Z-Image Turbo and FLUX.1 the ComfyUI split
layout: `diffusion_models/`, `text_encoders/`, `VAE/`) through a `.part` file, is checked against its published sha256
when one is recorded here, and only then renamed into place; a file already there (e.g. `clip_l.safetensors`, shared by
the FLUX models) is checked, not fetched again. Nothing in Atelier calls this automatically.

FLUX.1 as users get it: Black Forest Labs' diffusion model (`flux1-schnell`, `flux1-dev`, `flux1-fill-dev`), ComfyUI's
`clip_l` and `t5xxl_fp16` (or `--t5 fp8`: `t5xxl_fp8_e4m3fn`, half the size) text encoders and the FLUX VAE `ae`.
dev and Fill are gated on Hugging Face: accept the licence on the model's page while logged in, then set `HF_TOKEN` to
an access token; it is sent to huggingface.co only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    name: str
    url: str
    filename: str
    sha256: str  # "" = not recorded here: the download is size-checked by HTTP only (a warning says so)
    description: str
    folder: str = "Stable-diffusion"  # models sub-folder
    gated: str = ""  # the Hugging Face page whose licence must be accepted (and HF_TOKEN set); "" = open


DOWNLOADS: dict[str, Download] = {
    "sd15": Download(
        name="sd15",
        url="https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors",
        filename="v1-5-pruned-emaonly.safetensors",
        sha256="6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
        description="Stable Diffusion 1.5 (pruned EMA-only, 4.3 GB)",
    ),
}
_ZIMAGE = "https://huggingface.co/Comfy-Org/z_image_turbo/resolve/main/split_files/"
#: Z-Image Turbo in ComfyUI's split layout (Comfy-Org's repackaging): the three files a user needs
ZIMAGE_FILES: tuple[Download, ...] = (
    Download("zimage-diffusion-model", _ZIMAGE + "diffusion_models/z_image_turbo_bf16.safetensors",
             "z_image_turbo_bf16.safetensors", "", "Z-Image Turbo diffusion model (bf16, 12.3 GB)", "diffusion_models"),
    Download("zimage-text-encoder", _ZIMAGE + "text_encoders/qwen_3_4b.safetensors", "qwen_3_4b.safetensors", "",
             "Qwen3-4B text encoder (bf16, 8 GB)", "text_encoders"),
    Download("zimage-vae", _ZIMAGE + "vae/ae.safetensors", "ae.safetensors", "", "FLUX VAE (335 MB)", "VAE"),
)
_HF = "https://huggingface.co/"
_BFL = _HF + "black-forest-labs/"
_FLUX_TE = _HF + "comfyanonymous/flux_text_encoders/resolve/main/"
FLUX_CLIP_L = Download("flux-clip-l", _FLUX_TE + "clip_l.safetensors", "clip_l.safetensors", "",
                       "CLIP-L text encoder (246 MB)", "text_encoders")
#: the T5-XXL encoder in each precision (``--t5``)
FLUX_T5 = {
    "fp16": Download("flux-t5xxl-fp16", _FLUX_TE + "t5xxl_fp16.safetensors", "t5xxl_fp16.safetensors", "",
                     "T5-XXL text encoder (fp16, 9.8 GB)", "text_encoders"),
    "fp8": Download("flux-t5xxl-fp8", _FLUX_TE + "t5xxl_fp8_e4m3fn.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "",
                    "T5-XXL text encoder (fp8 e4m3fn, 4.9 GB)", "text_encoders"),
}
FLUX_VAE = Download("flux-vae", _BFL + "FLUX.1-schnell/resolve/main/ae.safetensors", "ae.safetensors", "",
                    "FLUX VAE (335 MB)", "VAE")
#: the diffusion model of each FLUX.1 bundle (Black Forest Labs' files, bf16, 23.8 GB each)
FLUX_MODELS = {
    "flux-schnell": Download("flux-schnell", _BFL + "FLUX.1-schnell/resolve/main/flux1-schnell.safetensors",
                             "flux1-schnell.safetensors", "", "FLUX.1 schnell diffusion model (bf16, 23.8 GB)",
                             "diffusion_models"),
    "flux-dev": Download("flux-dev", _BFL + "FLUX.1-dev/resolve/main/flux1-dev.safetensors", "flux1-dev.safetensors",
                         "", "FLUX.1 dev diffusion model (bf16, 23.8 GB; gated)", "diffusion_models",
                         gated=_BFL + "FLUX.1-dev"),
    "flux-fill": Download("flux-fill", _BFL + "FLUX.1-Fill-dev/resolve/main/flux1-fill-dev.safetensors",
                          "flux1-fill-dev.safetensors", "", "FLUX.1 Fill (inpainting) diffusion model (bf16, 23.8 GB; "
                          "gated)", "diffusion_models", gated=_BFL + "FLUX.1-Fill-dev"),
}


def flux_files(name: str, t5: str = "fp16") -> tuple[Download, ...]:
    """The four files of the FLUX.1 bundle *name* with the T5 encoder in precision *t5* (``fp16`` or ``fp8``)."""
    return (FLUX_MODELS[name], FLUX_CLIP_L, FLUX_T5[t5], FLUX_VAE)


#: names accepted on the command line -> the files they download (FLUX: with the fp16 T5 unless ``--t5 fp8``)
BUNDLES: dict[str, tuple[Download, ...]] = {"sd15": (DOWNLOADS["sd15"],), "zimage": ZIMAGE_FILES,
                                             **{name: flux_files(name) for name in FLUX_MODELS}}


class DownloadError(RuntimeError):
    """The download failed or the file did not match its checksum."""


class GatedError(DownloadError):
    """The server refused the file (HTTP 401/403): a gated model without an accepted licence or a valid token."""


#: hosts the Hugging Face token is sent to
AUTH_HOSTS = ("huggingface.co",)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise DownloadError naming the file unless its sha256 equals `expected` (hex, any case); "" = not recorded."""
    if not expected:
        print(f"note: no sha256 is recorded for {path.name}; it was not verified", file=sys.stderr)
        return
    actual = sha256_of(path)
    if actual != expected.lower():
        raise DownloadError(f"{path}: sha256 {actual} does not match the expected {expected.lower()}")


def _progress(done: int, total: int | None, started: float, out: BinaryIO | None = None) -> None:
    stream = out or sys.stderr
    speed = done / max(time.time() - started, 1e-6) / 1e6
    if total:
        width = 30
        filled = int(width * done / total)
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {done / 1e6:8.1f}/{total / 1e6:.1f} MB {speed:6.1f} MB/s"
    else:
        line = f"\r{done / 1e6:8.1f} MB {speed:6.1f} MB/s"
    stream.write(line)  # type: ignore[arg-type]
    stream.flush()


def request_for(url: str, token: str | None = None, auth_hosts: tuple[str, ...] = AUTH_HOSTS) -> urllib.request.Request:
    """The HTTP request for *url*; the Hugging Face token (``HF_TOKEN``) goes only to *auth_hosts* (never to a mirror
    given with ``--url``)."""
    headers = {"User-Agent": "atelier-download"}
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if token and any(host == h or host.endswith("." + h) for h in auth_hosts):
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(url, headers=headers)


def fetch(url: str, target: Path, expected_sha256: str, show_progress: bool = True, token: str | None = None,
          auth_hosts: tuple[str, ...] = AUTH_HOSTS) -> Path:
    """Download `url` to `target` via `target.part`, verify the sha256, then rename. Returns `target`.

    A mismatching or interrupted download leaves no file at `target` (the `.part` file is removed on mismatch).
    An HTTP 401/403 raises :class:`GatedError` (the file needs an accepted licence and a token).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    request = request_for(url, token, auth_hosts)
    started = time.time()
    try:
        with urllib.request.urlopen(request) as response, open(part, "wb") as fh:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            while block := response.read(CHUNK):
                fh.write(block)
                done += len(block)
                if show_progress:
                    _progress(done, total, started)
            fh.flush()
            os.fsync(fh.fileno())
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        if exc.code in (401, 403):
            raise GatedError(f"downloading {url} was refused (HTTP {exc.code})") from exc
        raise DownloadError(f"downloading {url} failed: {exc}") from exc
    except OSError as exc:
        raise DownloadError(f"downloading {url} failed: {exc}") from exc
    finally:
        if show_progress:
            sys.stderr.write("\n")
    try:
        verify_sha256(part, expected_sha256)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.devtools.download",
                                     description="Download a starter model into the models folder (explicit, never automatic).")
    parser.add_argument("model", choices=sorted(BUNDLES), help="what to download: " + "; ".join(
        f"{name} = {' + '.join(d.description for d in files)}" for name, files in BUNDLES.items()))
    parser.add_argument("--t5", choices=sorted(FLUX_T5), default="fp16",
                        help="FLUX.1: the T5-XXL text encoder's precision (fp8 = t5xxl_fp8_e4m3fn, half the download)")
    parser.add_argument("--data-dir", default=None, help="Atelier data dir (default: the install / current dir)")
    parser.add_argument("--models-dir", default=None, help="models folder (default: <data-dir>/models)")
    parser.add_argument("--no-download-sd-model", action="store_true",
                        help="refuse to download (mirrors the server flag, e.g. when it is set in COMMANDLINE_ARGS)")
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)  # mirrors / tests (file:// URLs)
    return parser


def main(argv: list[str] | None = None) -> int:
    from app.cli import env_args
    from app.paths import paths_from_args

    args = build_parser().parse_args(argv)
    if args.no_download_sd_model or "--no-download-sd-model" in env_args():
        print("refusing to download: --no-download-sd-model is set", file=sys.stderr)
        return 2
    ns = argparse.Namespace(data_dir=args.data_dir, models_dir=args.models_dir)
    models = paths_from_args(ns).models_dir
    files = flux_files(args.model, args.t5) if args.model in FLUX_MODELS else BUNDLES[args.model]
    for spec in files:
        code = _download_one(spec, models / spec.folder / spec.filename, args.url)
        if code:
            return code
    return 0


def _download_one(spec: Download, target: Path, url: str | None) -> int:
    if target.exists():
        print(f"{target} already exists; checking it...", file=sys.stderr)
        try:
            verify_sha256(target, spec.sha256)
        except DownloadError as exc:
            print(f"error: {exc} (delete it to download again)", file=sys.stderr)
            return 1
        print("ok", file=sys.stderr)
        return 0
    print(f"downloading {spec.description} to {target}", file=sys.stderr)
    try:
        fetch(url or spec.url, target, spec.sha256, token=os.environ.get("HF_TOKEN") or None)
    except GatedError as exc:
        hint = (f"{spec.description} is gated: accept its licence at {spec.gated} while logged in to Hugging Face, "
                "then set HF_TOKEN to an access token (https://huggingface.co/settings/tokens) and run this again"
                if spec.gated else "the server refused the file")
        print(f"error: {exc}; {hint}", file=sys.stderr)
        return 1
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"saved {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
