"""LoRA / LyCORIS key formats: split file keys into (component, module name, weight kind) and find
the torch modules they target (spec §3.3).

A network file holds, per target module, a few tensors named ``<module key>.<suffix>``:

* kohya: ``lora_unet_<path with _>`` / ``lora_te_…`` / ``lora_te1_…`` / ``lora_te2_…`` / ``lora_te3_…`` with
  ``lora_down.weight`` / ``lora_up.weight`` [/ ``lora_mid.weight``] / ``alpha``; UNet paths in diffusers
  naming (``down_blocks_0_attentions_0_…``) or LDM/SGM naming (``input_blocks_4_1_…``);
* PEFT / diffusers: ``unet.<dotted path>.lora_A.weight`` / ``lora_B.weight`` (``text_encoder.``,
  ``text_encoder_2.``), old attention-processor files ``….processor.to_q_lora.down.weight``;
* LyCORIS: LoHa ``hada_w1_a`` …, LoKr ``lokr_w1`` …, full diff ``diff`` / ``diff_b``, norm ``w_norm`` /
  ``b_norm``; optional ``scale``, ``dora_scale``.

Text encoders: ``te1`` is ``pipe.text_encoder`` (CLIP-L on SD / SDXL / SD3.5 / FLUX), ``te2`` ``pipe.text_encoder_2``
(SDXL's and SD3.5's CLIP-G; FLUX's T5, as OneTrainer's FLUX files and ComfyUI read ``lora_te2_``), ``te3`` the T5
(``pipe.text_encoder_3`` on SD3.5, ``pipe.text_encoder_2`` on FLUX): kohya sd-scripts' ``flux_train_network`` /
``sd3_train_network`` write T5 modules as ``lora_te3_encoder_block_0_layer_0_SelfAttention_q``.

Targets are looked up in a per-model index built once from ``named_modules()``: every module that has
a ``weight`` is registered under its flattened (``.`` → ``_``) diffusers name, UNet modules also under
their LDM name (via ``app.models.load.ldm_convert.unet_to_ldm``), text-encoder modules without ``text_model``
(transformers ≥ 5.6 flattened ``CLIPTextModel``; ``CLIPTextModelWithProjection`` keeps it).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

#: suffix in the file → canonical weight name (longest first so ``lokr_w1_a`` wins over ``lokr_w1``)
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("lora_down.weight", "down"),
    ("lora_up.weight", "up"),
    ("lora_mid.weight", "mid"),
    ("lora_A.default.weight", "down"),
    ("lora_B.default.weight", "up"),
    ("lora_A.weight", "down"),
    ("lora_B.weight", "up"),
    ("lora.down.weight", "down"),
    ("lora.up.weight", "up"),
    ("hada_w1_a", "hada_w1_a"),
    ("hada_w1_b", "hada_w1_b"),
    ("hada_w2_a", "hada_w2_a"),
    ("hada_w2_b", "hada_w2_b"),
    ("hada_t1", "hada_t1"),
    ("hada_t2", "hada_t2"),
    ("lokr_w1_a", "lokr_w1_a"),
    ("lokr_w1_b", "lokr_w1_b"),
    ("lokr_w2_a", "lokr_w2_a"),
    ("lokr_w2_b", "lokr_w2_b"),
    ("lokr_w1", "lokr_w1"),
    ("lokr_w2", "lokr_w2"),
    ("lokr_t2", "lokr_t2"),
    ("diff_b", "diff_b"),
    ("diff", "diff"),
    ("w_norm", "w_norm"),
    ("b_norm", "b_norm"),
    ("dora_scale", "dora_scale"),
    ("alpha", "alpha"),
    ("scale", "scale"),
)
#: old diffusers attention-processor LoRA (``….processor.to_q_lora.down.weight``)
_PROCESSOR_SUFFIXES = (("down.weight", "down"), ("up.weight", "up"))
_PROCESSOR_RENAMES = {"to_q_lora": "to_q", "to_k_lora": "to_k", "to_v_lora": "to_v", "to_out_lora": "to_out_0"}

#: (prefix, component, dotted) — first match wins
_PREFIXES: tuple[tuple[str, str, bool], ...] = (
    ("lora_unet_", "unet", False),
    ("lora_te1_", "te1", False),
    ("lora_te2_", "te2", False),
    ("lora_te3_", "te3", False),
    ("lora_te_", "te1", False),
    ("unet.", "unet", True),
    ("text_encoder_2.", "te2", True),
    ("text_encoder_3.", "te3", True),
    ("text_encoder.", "te1", True),
    ("lora_te1.", "te1", True),
    ("lora_te2.", "te2", True),
    ("lora_te3.", "te3", True),
    ("model.diffusion_model.", "unet", True),
    ("diffusion_model.", "unet", True),  # ComfyUI / ai-toolkit files for DiT families (Z-Image)
    ("transformer.", "unet", True),  # diffusers / peft files for DiT families
)
COMPONENTS = ("unet", "te1", "te2", "te3")
TE_COMPONENTS = ("te1", "te2", "te3")
BUNDLE_PREFIX = "bundle_emb."


@dataclass(frozen=True)
class ModuleKey:
    """Where one group of tensors points: ``component`` ∈ unet/te1/te2/te3, ``name`` flattened with ``_``."""

    component: str
    name: str


@dataclass
class ParsedKeys:
    """A network state dict split by target module (see module doc)."""

    modules: dict[ModuleKey, dict[str, torch.Tensor]]
    file_keys: dict[ModuleKey, str]  # the module's key prefix as written in the file (for messages)
    bundled: dict[str, dict[str, torch.Tensor]]  # embedding name → its tensors (``string_to_param`` …)
    unknown: list[str]  # keys no format explains


def _split_suffix(key: str) -> tuple[str, str] | None:
    for suffix, canon in _SUFFIXES:
        if key.endswith("." + suffix):
            return key[: -len(suffix) - 1], canon
    for suffix, canon in _PROCESSOR_SUFFIXES:
        if key.endswith("." + suffix):
            head = key[: -len(suffix) - 1]
            base, _, last = head.rpartition(".")
            if last in _PROCESSOR_RENAMES:
                return f"{base.removesuffix('.processor')}.{_PROCESSOR_RENAMES[last]}", canon
    return None


def module_key(prefix: str) -> ModuleKey | None:
    """The target of a file key prefix (``lora_unet_down_blocks_0_…``, ``unet.down_blocks.0.…``) or None."""
    for head, component, dotted in _PREFIXES:
        if prefix.startswith(head):
            rest = prefix[len(head) :]
            if dotted:
                rest = rest.removeprefix("base_model.model.").replace(".", "_")
            if component in TE_COMPONENTS:
                rest = rest.removeprefix("text_model_")
            else:
                rest = rest.removeprefix("diffusion_model_")
            return ModuleKey(component, rest) if rest else None
    return None


def parse_keys(state_dict: Mapping[str, Any]) -> ParsedKeys:
    """Group a network's tensors by target module; bundled embeddings and unknown keys on the side."""
    modules: dict[ModuleKey, dict[str, torch.Tensor]] = {}
    file_keys: dict[ModuleKey, str] = {}
    bundled: dict[str, dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if key.startswith(BUNDLE_PREFIX):
            name, _, rest = key[len(BUNDLE_PREFIX) :].partition(".")
            if name and rest and isinstance(value, torch.Tensor):
                bundled.setdefault(name, {})[rest] = value
            else:
                unknown.append(key)
            continue
        split = _split_suffix(key)
        target = module_key(split[0]) if split else None
        if split is None or target is None or not isinstance(value, torch.Tensor):
            unknown.append(key)
            continue
        modules.setdefault(target, {})[split[1]] = value
        file_keys.setdefault(target, split[0])
    return ParsedKeys(modules, file_keys, bundled, unknown)


# ------------------------------------------------------------------------------ model index
def _flat(name: str) -> str:
    return name.replace(".", "_")


def _patchable(module: torch.nn.Module) -> bool:
    return isinstance(getattr(module, "weight", None), torch.nn.Parameter)


#: A DiT's original (single-file) module names that diffusers renamed: flattened original → flattened diffusers
_DIT_RENAMES = (("attention_out", "attention_to_out_0"), ("attention_q_norm", "attention_norm_q"),
                ("attention_k_norm", "attention_norm_k"))
_DIT_PREFIX_RENAMES = (("x_embedder", "all_x_embedder_2-1"), ("final_layer", "all_final_layer_2-1"))


def _dit_aliases(index: dict[str, Any]) -> None:
    """Original Z-Image names next to diffusers' (``attention.out`` = ``attention.to_out.0``; the fused
    ``attention.qkv`` = ``to_q``, ``to_k`` and ``to_v`` stacked, a tuple target split by rows when applied)."""
    for name in list(index):
        if name.endswith("attention_to_q"):
            head = name[: -len("to_q")]
            parts = [index.get(head + p) for p in ("to_q", "to_k", "to_v")]
            if all(p is not None for p in parts):
                index.setdefault(head + "qkv", tuple(parts))
        for old, new in _DIT_RENAMES:
            if name.endswith(new):
                index.setdefault(name[: -len(new)] + old, index[name])
        for old, new in _DIT_PREFIX_RENAMES:
            if name.startswith(new):
                index.setdefault(old + name[len(new) :], index[name])


def _flux_aliases(index: dict[str, Any]) -> None:
    """FLUX.1's original (BFL) module names next to diffusers' (``app.models.load.flux_convert.module_map``): a fused
    ``img_attn.qkv`` / ``single_blocks.N.linear1`` is a tuple target split by rows. The final AdaLN projection is left
    out: its halves are stored swapped, so a row-wise update would land on the wrong half."""
    if "single_transformer_blocks_0_proj_mlp" not in index:
        return
    from app.models.load.flux_convert import module_map

    n_double = sum(1 for n in index if n.startswith("transformer_blocks_") and n.endswith("_norm1_linear"))
    n_single = sum(1 for n in index if n.startswith("single_transformer_blocks_") and n.endswith("_proj_mlp"))
    for orig, diffs in module_map(n_double, n_single):
        if orig.startswith("final_layer.adaLN"):
            continue
        targets = [index.get(_flat(d)) for d in diffs]
        if all(t is not None for t in targets):
            index.setdefault(_flat(orig), targets[0] if len(targets) == 1 else tuple(targets))


def _sd3_aliases(index: dict[str, Any]) -> None:
    """SD3's original (Stability) module names next to diffusers' (``app.models.load.sd3_convert.module_map``): a fused
    ``x_block.attn.qkv`` / ``context_block.attn.qkv`` is a tuple target split by rows. The AdaLN projections stored with
    swapped halves (``final_layer``, the last block's ``context_block``) are left out."""
    if "pos_embed_proj" not in index or "context_embedder" not in index:
        return
    from app.models.load.sd3_convert import _swapped, module_map

    n = sum(1 for name in index if name.startswith("transformer_blocks_") and name.endswith("_norm1_linear"))
    dual = tuple(i for i in range(n) if f"transformer_blocks_{i}_attn2_to_q" in index)
    for orig, diffs in module_map(n, dual):
        if _swapped(orig, n):
            continue
        targets = [index.get(_flat(d)) for d in diffs]
        if all(t is not None for t in targets):
            index.setdefault(_flat(orig), targets[0] if len(targets) == 1 else tuple(targets))


def unet_index(unet: torch.nn.Module) -> dict[str, Any]:
    """Flattened diffusers and LDM/SGM names → UNet module (modules with a ``weight``); for a diffusion
    transformer its diffusers names and its original single-file names (a fused target is a tuple)."""
    from app.models.load.ldm_convert import UNET_PREFIX, unet_to_ldm

    index: dict[str, torch.nn.Module] = {}
    names: dict[str, torch.nn.Module] = {}
    for name, module in unet.named_modules():
        if name and _patchable(module):
            index[_flat(name)] = module
            names[name] = module
    if not hasattr(unet, "up_blocks"):  # a diffusion transformer: no LDM layout
        _dit_aliases(index)
        _flux_aliases(index)
        _sd3_aliases(index)
        return index
    config = getattr(unet, "config", None)
    if config is not None:
        for name, module in names.items():
            try:
                ldm = unet_to_ldm({f"{name}.weight": None}, config)  # type: ignore[dict-item]
            except (KeyError, TypeError, ValueError):
                continue  # a module the LDM layout does not name (it keeps only its diffusers name)
            for key in ldm:
                ldm_name = key[len(UNET_PREFIX) :].removesuffix(".weight")
                index.setdefault(_flat(ldm_name), module)
    return index


def text_encoder_index(te: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Flattened names without ``text_model`` → text-encoder module (modules with a ``weight``)."""
    index: dict[str, torch.nn.Module] = {}
    for name, module in te.named_modules():
        if name and _patchable(module):
            index[_flat(name.removeprefix("text_model."))] = module
    return index


_INDEX_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, torch.nn.Module]] = weakref.WeakKeyDictionary()


def model_index(component: str, module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The (cached, per module object) lookup table of one pipeline component."""
    index = _INDEX_CACHE.get(module)
    if index is None:
        index = unet_index(module) if component == "unet" else text_encoder_index(module)
        _INDEX_CACHE[module] = index
    return index


def pipe_components(pipe: Any) -> dict[str, torch.nn.Module]:
    """``unet`` / ``te1`` / ``te2`` / ``te3`` of a diffusers pipeline (absent ones left out; ``te3`` is the T5:
    ``text_encoder_3`` on SD3.5, ``text_encoder_2`` on FLUX, see the module doc)."""
    out: dict[str, torch.nn.Module] = {}
    for component, attr in (("unet", "unet"), ("unet", "transformer"), ("te1", "text_encoder"), ("te2", "text_encoder_2"),
                            ("te3", "text_encoder_3")):
        module = getattr(pipe, attr, None)
        if isinstance(module, torch.nn.Module):
            out.setdefault(component, module)
    if "te3" not in out and "te2" in out and _is_t5(out["te2"]):
        out["te3"] = out["te2"]
    return out


def _is_t5(module: torch.nn.Module) -> bool:
    """A T5 encoder (transformers' ``T5EncoderModel``: ``encoder.block``), not a CLIP text model."""
    return hasattr(getattr(module, "encoder", None), "block")


def describe_components(keys: Iterable[ModuleKey]) -> dict[str, int]:
    """Module count per component (for messages and tests)."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key.component] = counts.get(key.component, 0) + 1
    return counts
