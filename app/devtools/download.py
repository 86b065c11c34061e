"""Download a starter model on explicit request: `python -m app.devtools.download sd15|zimage [--data-dir DIR]`.

Each file goes to its models folder (`Stable-diffusion/` for SD 1.5; for Z-Image Turbo the ComfyUI split layout:
`diffusion_models/`, `text_encoders/`, `VAE/`) through a `.part` file, is checked against its published sha256 when
one is recorded here, and only then renamed into place. Nothing in Atelier calls this automatically.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
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
#: names accepted on the command line -> the files they download
BUNDLES: dict[str, tuple[Download, ...]] = {"sd15": (DOWNLOADS["sd15"],), "zimage": ZIMAGE_FILES}


class DownloadError(RuntimeError):
    """The download failed or the file did not match its checksum."""


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


def fetch(url: str, target: Path, expected_sha256: str, show_progress: bool = True) -> Path:
    """Download `url` to `target` via `target.part`, verify the sha256, then rename. Returns `target`.

    A mismatching or interrupted download leaves no file at `target` (the `.part` file is removed on mismatch).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "atelier-download"})
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
    for spec in BUNDLES[args.model]:
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
        fetch(url or spec.url, target, spec.sha256)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"saved {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
