"""Write tiny random-weight models in the real on-disk formats an A1111 user has.

``write_tiny_models(out_dir, families=("sd1",))`` fills a data dir with:
``models/Stable-diffusion/tiny-<family>.safetensors`` (single-file checkpoints with original LDM/SGM
key names), ``models/VAE/tiny.vae.safetensors``, ``models/Lora/tiny-lora.safetensors`` (kohya),
``embeddings/tiny-emb.pt`` / ``tiny-emb2.safetensors`` (A1111 textual inversion) and
``models/ESRGAN/tiny-esrgan-4x.pth`` (old-arch ESRGAN). ``full_size=True`` also writes an
SD1.5-shaped fp16 checkpoint for benchmarks. The family ``zimage`` is written as ComfyUI split files
(``app.devtools.tiny_zimage``: diffusion model, Qwen3 text encoder, FLUX VAE, LoRA); ``flux`` / ``flux-schnell``
as split files and an all-in-one checkpoint (``app.devtools.tiny_flux``); ``sd3`` (SD3.5 medium split and all-in-one,
large as Stability's checkpoint layout: ``app.devtools.tiny_sd3``). Everything is deterministic for a given
seed.

CLI: ``python -m app.devtools.tiny_models [--out] DIR [--family sd1|sd2v|sdxl|zimage|flux|flux-schnell|sd3]... [--full-size]
[--zimage-weights bf16|fp8|Q8_0|Q5_K_S|Q4_K_S]``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from app.devtools import tiny_configs as tc
from app.devtools.tiny_gguf import QUANTS as GGUF_QUANTS
from app.models.load import ldm_convert as lc

ESRGAN_NF, ESRGAN_NB, ESRGAN_GC = 8, 2, 32
LORA_RANK, LORA_ALPHA = 4, 2.0
EMBEDDING_TOKEN = 265


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def _unet(cfg: dict[str, Any], seed: int) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    _seeded(seed)
    return UNet2DConditionModel.from_config(cfg).eval()


def _vae(cfg: dict[str, Any], seed: int) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    _seeded(seed)
    return AutoencoderKL.from_config(cfg).eval()


def _clip(cfg: dict[str, Any], seed: int, with_projection: bool = False, extra_layers: int = 0) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    conf = CLIPTextConfig(**{k: v for k, v in cfg.items() if k != "architectures"})
    conf.num_hidden_layers += extra_layers
    _seeded(seed)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(conf).eval()


def _open_clip_extras(hidden: int, proj: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "text_projection": torch.randn(hidden, proj, generator=gen) / math.sqrt(hidden),
        "logit_scale": torch.tensor(4.6052),
    }


def tiny_checkpoint_state_dict(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """LDM-keyed state dict of the tiny *family* checkpoint (random weights from *seed*)."""
    if family not in tc.TINY_FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; expected one of {', '.join(tc.TINY_FAMILIES)}")
    base = family.removesuffix("-inpaint")
    ucfg, vcfg = tc.tiny_unet_config(family), tc.tiny_vae_config(family)
    sd = lc.unet_to_ldm(_unet(ucfg, seed + 1).state_dict(), ucfg)
    sd.update(lc.vae_to_ldm(_vae(vcfg, seed + 2).state_dict(), vcfg))
    te_cfg = tc.tiny_text_encoder_config(family, 1) if base != "sdxl-refiner" else {}
    if base == "sd1":
        sd.update(lc.clip_to_ldm(_clip(te_cfg, seed + 3).state_dict(), lc.SD1_CLIP_PREFIX))
    elif base in ("sd2", "sd2v"):
        # OpenCLIP-H layout: one more resblock than used (SD2 takes the penultimate layer).
        te = _clip(te_cfg, seed + 3, extra_layers=1)
        sd.update(lc.open_clip_to_ldm(te.state_dict(), lc.SD2_OPEN_CLIP_PREFIX))
        extras = _open_clip_extras(te_cfg["hidden_size"], te_cfg["hidden_size"], seed + 4)
        sd.update({lc.SD2_OPEN_CLIP_PREFIX + k: v for k, v in extras.items()})
        if base == "sd2v":
            sd["v_pred"] = torch.zeros(0)
    elif base == "sdxl-refiner":  # OpenCLIP bigG alone, under the refiner's conditioner.embedders.0.model.
        te2 = _clip(tc.tiny_text_encoder_config(family, 2), seed + 4, with_projection=True)
        sd.update(lc.open_clip_to_ldm(te2.state_dict(), lc.SDXL_REFINER_OPEN_CLIP_PREFIX))
        sd[lc.SDXL_REFINER_OPEN_CLIP_PREFIX + "logit_scale"] = torch.tensor(4.6052)
    else:
        sd.update(lc.clip_to_ldm(_clip(te_cfg, seed + 3).state_dict(), lc.SDXL_CLIP_PREFIX))
        te2 = _clip(tc.tiny_text_encoder_config(family, 2), seed + 4, with_projection=True)
        sd.update(lc.open_clip_to_ldm(te2.state_dict(), lc.SDXL_OPEN_CLIP_PREFIX))
        sd[lc.SDXL_OPEN_CLIP_PREFIX + "logit_scale"] = torch.tensor(4.6052)
    return {k: v.detach().contiguous() for k, v in sd.items()}


def _kohya_lora(seed: int) -> dict[str, torch.Tensor]:
    """Rank-4 kohya LoRA over tiny-sd1's attention projections and a few text-encoder linears."""
    ucfg = tc.tiny_unet_config("sd1")
    te_cfg = tc.tiny_text_encoder_config("sd1", 1)
    unet_shapes = {k: v.shape for k, v in _unet_shapes(ucfg).items()}
    gen = torch.Generator().manual_seed(seed)
    targets: list[tuple[str, torch.Size]] = []
    for key, shape in unet_shapes.items():
        name = key.removesuffix(".weight")
        if (
            key.endswith(".weight")
            and "attentions" in key
            and (
                any(f".{a}.{p}" in key for a in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v", "to_out.0"))
                or name.endswith(("proj_in", "proj_out"))
            )
        ):
            targets.append(("lora_unet_" + name.replace(".", "_"), shape))
    hidden, inter = te_cfg["hidden_size"], te_cfg["intermediate_size"]
    for layer in range(te_cfg["num_hidden_layers"]):
        for mod, shape in (
            ("self_attn_q_proj", (hidden, hidden)),
            ("self_attn_v_proj", (hidden, hidden)),
            ("mlp_fc1", (inter, hidden)),
        ):
            targets.append((f"lora_te_text_model_encoder_layers_{layer}_{mod}", torch.Size(shape)))
    out: dict[str, torch.Tensor] = {}
    for name, shape in targets:
        conv = tuple(shape[2:])
        out[f"{name}.lora_down.weight"] = torch.randn(LORA_RANK, shape[1], *conv, generator=gen) * 0.2
        out[f"{name}.lora_up.weight"] = torch.randn(shape[0], LORA_RANK, *[1] * len(conv), generator=gen) * 0.2
        out[f"{name}.alpha"] = torch.tensor(LORA_ALPHA)
    return out


def _unet_shapes(cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel.from_config(cfg).state_dict()


def _esrgan_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Old-arch ESRGAN (``model.0``, ``model.1.sub.*``) x4 with nf=8, nb=2 and spandrel's fixed gc=32."""
    gen = torch.Generator().manual_seed(seed)
    nf, gc = ESRGAN_NF, ESRGAN_GC

    def conv(out_ch: int, in_ch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(out_ch, in_ch, 3, 3, generator=gen) / math.sqrt(in_ch * 9) * 0.5, torch.zeros(out_ch)

    sd: dict[str, torch.Tensor] = {}

    def put(name: str, out_ch: int, in_ch: int) -> None:
        sd[f"{name}.weight"], sd[f"{name}.bias"] = conv(out_ch, in_ch)

    put("model.0", nf, 3)
    for b in range(ESRGAN_NB):
        for r in (1, 2, 3):
            for c in range(1, 6):
                put(f"model.1.sub.{b}.RDB{r}.conv{c}.0", nf if c == 5 else gc, nf + (c - 1) * gc)
    put(f"model.1.sub.{ESRGAN_NB}", nf, nf)
    for idx in (3, 6, 8):
        put(f"model.{idx}", nf, nf)
    put("model.10", 3, nf)
    return sd


def _old_model_hash(path: Path) -> str:
    """A1111's legacy 8-hex checkpoint hash (sha256 of 64 KiB at offset 1 MiB)."""
    with open(path, "rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


def _write_extras(root: Path, seed: int, sd1_ckpt: Path | None) -> dict[str, Path]:
    from safetensors.torch import save_file

    written: dict[str, Path] = {}
    vcfg = tc.tiny_vae_config("sd1")
    vae_path = root / "models" / "VAE" / "tiny.vae.safetensors"
    vae_path.parent.mkdir(parents=True, exist_ok=True)
    vae_sd = lc.vae_to_ldm(_vae(vcfg, seed + 50).state_dict(), vcfg, prefix="")
    save_file({k: v.contiguous() for k, v in vae_sd.items()}, str(vae_path))
    written["vae"] = vae_path

    lora_path = root / "models" / "Lora" / "tiny-lora.safetensors"
    lora_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "ss_output_name": "tiny-lora",
        "ss_base_model_version": "sd_v1",
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(LORA_RANK),
        "ss_network_alpha": str(LORA_ALPHA),
        "ss_sd_model_name": "tiny-sd1.safetensors",
        "ss_v2": "False",
        "ss_resolution": "(64, 64)",
    }
    save_file(_kohya_lora(seed + 60), str(lora_path), metadata=meta)
    written["lora"] = lora_path

    emb_dir = root / "embeddings"
    emb_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed + 70)
    hidden = tc.SD1_HIDDEN
    emb_pt = emb_dir / "tiny-emb.pt"
    torch.save(
        {
            "string_to_token": {"*": EMBEDDING_TOKEN},
            "string_to_param": {"*": torch.randn(2, hidden, generator=gen) * 0.1},
            "name": "tiny-emb",
            "step": 10,
            "sd_checkpoint": _old_model_hash(sd1_ckpt) if sd1_ckpt else None,
            "sd_checkpoint_name": "tiny-sd1" if sd1_ckpt else None,
        },
        emb_pt,
    )
    emb_st = emb_dir / "tiny-emb2.safetensors"
    save_file({"emb_params": torch.randn(3, hidden, generator=gen) * 0.1}, str(emb_st))
    written["embedding_pt"], written["embedding_safetensors"] = emb_pt, emb_st

    esrgan = root / "models" / "ESRGAN" / "tiny-esrgan-4x.pth"
    esrgan.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_esrgan_state_dict(seed + 80), esrgan)
    written["esrgan"] = esrgan
    return written


def _full_size_sd15(path: Path, seed: int) -> Path:
    """SD1.5-shaped fp16 checkpoint (random weights scaled by 1/sqrt(fan_in)); 2.1 GB, seconds to write."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from app.configs import load_family_config

    ucfg, vcfg = load_family_config("sd1", "unet"), load_family_config("sd1", "vae")
    tcfg = load_family_config("sd1", "text_encoder")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(ucfg)
        vae = AutoencoderKL.from_config(vcfg)
        te = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in tcfg.items() if k != "architectures"}))
    meta = lc.unet_to_ldm(unet.state_dict(), ucfg)
    meta.update(lc.vae_to_ldm(vae.state_dict(), vcfg))
    meta.update(lc.clip_to_ldm(te.state_dict(), lc.SD1_CLIP_PREFIX))
    # Drawing 1.07 G normal samples takes ~50 s on one core; slices of one random pool at random
    # offsets take seconds and are just as good for load/speed benchmarks.
    gen = torch.Generator().manual_seed(seed)
    pool_size = 1 << 24
    pool = torch.randn(pool_size, generator=gen).half()
    pool = torch.cat([pool, pool])
    out: dict[str, torch.Tensor] = {}
    for key, t in meta.items():
        if t.ndim >= 2:
            fan_in = max(1, t[0].numel())
            n, pieces = t.numel(), []
            while n > 0:
                start = int(torch.randint(0, pool_size, (1,), generator=gen))
                pieces.append(pool[start : start + min(n, pool_size)])
                n -= pieces[-1].numel()
            flat = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
            out[key] = (flat.reshape(t.shape) * (0.5 / math.sqrt(fan_in))).contiguous()
        elif key.endswith("weight"):
            out[key] = torch.ones(t.shape, dtype=torch.float16)
        else:
            out[key] = torch.zeros(t.shape, dtype=torch.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path))
    return path


def write_tiny_models(
    out_dir: str | Path,
    families: Iterable[str] = ("sd1",),
    full_size: bool = False,
    seed: int = 0,
    zimage_weights: str = "bf16",
    flux_weights: str = "bf16",
) -> dict[str, Path]:
    """Write the tiny model set into the data dir *out_dir*; returns ``{label: path}``.

    Labels: ``ckpt:<family>`` for each checkpoint, ``vae``, ``lora``, ``embedding_pt``,
    ``embedding_safetensors``, ``esrgan``, (with *full_size*) ``ckpt:sd15-shaped`` and, for the family ``zimage``,
    ``zimage:diffusion_model``, ``zimage:text_encoder``, ``zimage:vae``, ``zimage:lora`` (*zimage_weights*: bf16|fp8;
    fp8_scaled = ComfyUI's scaled fp8 layout, ``app.devtools.tiny_fp8``, for both families),
    or with *zimage_weights* a GGUF quantization (Q8_0|Q5_K_S|Q4_K_S) ``zimage:diffusion_model_gguf`` and
    ``zimage:text_encoder_gguf`` in place of the first two; for ``flux`` / ``flux-schnell`` / ``flux-fill`` the labels of
    ``app.devtools.tiny_flux.write_tiny_flux`` (*flux_weights*: bf16; fp8 = the diffusion model and T5 as
    ``float8_e4m3fn`` files; Q8_0|Q5_K_S|Q4_K_S = GGUF diffusion model and T5 encoder in their place, labels
    ``<tag>:diffusion_model_gguf`` and ``<tag>:t5xxl_gguf``); for ``sd3`` those of ``app.devtools.tiny_sd3.write_tiny_sd3``.
    """
    from safetensors.torch import save_file

    from app.devtools.tiny_gguf import write_tiny_zimage_gguf
    from app.devtools.tiny_zimage import write_tiny_zimage

    root = Path(out_dir)
    ckpt_dir = root / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for family in dict.fromkeys(families):
        if family == "zimage":
            if zimage_weights in GGUF_QUANTS:  # GGUF transformer + encoder instead of the bf16 ones
                zimage = write_tiny_zimage(root, seed=seed + 9000)
                for label in ("zimage:diffusion_model", "zimage:text_encoder"):
                    zimage.pop(label).unlink()
                zimage.update(write_tiny_zimage_gguf(root, zimage_weights, seed=seed + 9000))
                written.update(zimage)
            elif zimage_weights == "fp8_scaled":  # ComfyUI's scaled fp8 layout (app.devtools.tiny_fp8)
                from app.devtools.tiny_fp8 import to_scaled_fp8_files

                zimage = write_tiny_zimage(root, seed=seed + 9000)
                written.update(to_scaled_fp8_files(zimage, (":diffusion_model", ":text_encoder")))
            else:
                written.update(write_tiny_zimage(root, seed=seed + 9000, weights=zimage_weights))
            continue
        if family in ("flux", "flux-schnell", "flux-fill"):
            from app.devtools.tiny_flux import VARIANT_FAMILY, to_fp8_files, write_tiny_flux
            from app.devtools.tiny_gguf import write_tiny_flux_gguf

            variant = next(v for v, f in VARIANT_FAMILY.items() if f == family)
            flux = write_tiny_flux(root, variant, seed=seed + 9500)
            if flux_weights == "fp8":
                flux = to_fp8_files(flux)
            elif flux_weights == "fp8_scaled":
                from app.devtools.tiny_fp8 import to_scaled_fp8_files

                flux = to_scaled_fp8_files(flux, (":diffusion_model", ":t5xxl"))
            elif flux_weights in GGUF_QUANTS:  # GGUF transformer + T5 instead of the bf16/fp16 ones
                for label in (f"{family}:diffusion_model", f"{family}:t5xxl"):
                    flux.pop(label).unlink()
                flux.update(write_tiny_flux_gguf(root, flux_weights, variant, seed=seed + 9500))
            written.update(flux)
            continue
        if family == "sd3":
            from app.devtools.tiny_sd3 import write_tiny_sd3

            written.update(write_tiny_sd3(root, seed=seed + 9500))  # same seed base: clip_l equals the FLUX one
            continue
        if family not in tc.TINY_FAMILIES:
            raise ValueError(f"unknown tiny family {family!r}; expected one of {', '.join(tc.TINY_FAMILIES)}")
        sd = tiny_checkpoint_state_dict(family, seed=seed + 1000 * tc.TINY_FAMILIES.index(family))
        path = ckpt_dir / f"tiny-{family}.safetensors"
        save_file(sd, str(path), metadata={"format": "pt", "atelier_tiny_family": family})
        written[f"ckpt:{family}"] = path
        if family == "sd2":  # an epsilon SD2 is told apart from v by its sidecar config (as in A1111)
            path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "eps"\n', "utf-8")
    written.update(_write_extras(root, seed, written.get("ckpt:sd1")))
    if full_size:
        written["ckpt:sd15-shaped"] = _full_size_sd15(ckpt_dir / "sd15-shaped.safetensors", seed)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.devtools.tiny_models", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, help="data dir to write into (or --out)")
    parser.add_argument("--out", type=Path, help="data dir to write into")
    parser.add_argument("--family", action="append", choices=(*tc.TINY_FAMILIES, *tc.TINY_SPLIT_FAMILIES),
                        help="repeatable; default sd1")
    parser.add_argument("--zimage-weights", choices=("bf16", "fp8", "fp8_scaled", *GGUF_QUANTS), default="bf16",
                        help="dtype of the Z-Image transformer and text encoder files (fp8 = float8_e4m3fn; "
                             "fp8_scaled: ComfyUI's scaled fp8; "
                             "Q8_0/Q5_K_S/Q4_K_S: GGUF files)")
    parser.add_argument("--flux-weights", choices=("bf16", "fp8", "fp8_scaled", *GGUF_QUANTS), default="bf16",
                        help="dtype of the FLUX diffusion model and T5 files (fp8 = float8_e4m3fn; "
                             "fp8_scaled: ComfyUI's scaled fp8; "
                             "Q8_0/Q5_K_S/Q4_K_S: GGUF files)")
    parser.add_argument("--full-size", action="store_true", help="also write an SD1.5-shaped fp16 checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out or args.out_dir
    if out is None or (args.out and args.out_dir and args.out != args.out_dir):
        parser.error("give the data dir once, as DIR or --out DIR")
    torch.set_num_threads(1)
    written = write_tiny_models(out, families=args.family or ["sd1"], full_size=args.full_size, seed=args.seed,
                                zimage_weights=args.zimage_weights, flux_weights=args.flux_weights)
    for label, path in written.items():
        print(f"{label}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
