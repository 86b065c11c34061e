"""Apply a list of networks (with te / unet multipliers) to one diffusers pipeline.

``apply_networks(pipe, family, [(network, te, unet), ...])`` matches every network module to a torch
module (``keys.model_index``), checks that the network fits the model, computes the deltas and patches
the weights through the pipeline's ``ModelPatch`` (restoring whatever was applied before). It returns an
``ApplyResult``: what was applied, the per-network warnings (unknown keys, refusals) and whether the
text encoders changed (the prompt encoder's cache key must then change too).

Refusal policy: a network made for another model family (``lora_te2_`` keys on a model with one text
encoder, shapes that do not match, or no module that matches at all) is skipped as a whole with a
warning that names the file; generation continues with the other networks. Keys that no format
explains, and modules that do not exist in the model, are skipped and counted in one warning.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from app.models.lora.keys import TE_COMPONENTS, model_index, pipe_components
from app.models.lora.network import Network, NetworkError
from app.models.lora.patch import Delta, patch_for


@dataclass
class ApplyResult:
    applied: list[Network] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # network name → reason
    warnings: list[str] = field(default_factory=list)
    modules_patched: int = 0
    te_signature: Hashable | None = None  # None: the text encoders are unchanged


def _basename(net: Network) -> str:
    return net.filename.rsplit("/", 1)[-1] if net.filename else net.name


def network_deltas(
    net: Network, components: dict[str, torch.nn.Module], te: float, unet: float, originals: Any
) -> tuple[list[Delta], list[str], set[str]]:
    """Deltas of one network (``NetworkError`` naming the file when it does not fit the model).

    Returns ``(deltas, skipped keys, components touched with a non-zero multiplier)``.
    """
    fname = _basename(net)
    wanted = {k.component for k in net.modules}
    for comp in sorted(wanted - set(components)):
        if comp == "te2":
            raise NetworkError(
                f"{fname}: made for SDXL (it has second text encoder keys, lora_te2_*), "
                "but the current model has a single text encoder"
            )
        if comp == "te3":
            raise NetworkError(f"{fname}: has T5 text encoder keys (lora_te3_*, made for FLUX or SD3.5), "
                               "but the current model has no T5 text encoder")
    skipped = list(net.unknown_keys) + list(net.unsupported)
    matched: list[tuple[Any, torch.nn.Module]] = []
    for key, module in net.modules.items():
        comp_module = components.get(key.component)
        target = model_index(key.component, comp_module).get(key.name) if comp_module is not None else None
        if target is None:
            skipped.append(module.file_key)
            continue
        matched.append((module, target))
    if net.modules and not matched:
        raise NetworkError(
            f"{fname}: none of its {len(net.modules)} modules exists in the current model (another model family?)"
        )
    deltas: list[Delta] = []
    touched: set[str] = set()
    for module, target in matched:
        mult = te if module.key.component in TE_COMPONENTS else unet
        orig = torch.cat([originals(t) for t in target]) if isinstance(target, tuple) else originals(target)
        try:
            weight, bias = module.delta(orig) if mult != 0 else (module.rebuild(orig.shape), None)
        except NetworkError as exc:
            raise NetworkError(
                f"{fname}: does not fit the current model (made for another model family?): {exc}"
            ) from None
        except RuntimeError as exc:  # malformed factor shapes (matmul / kron)
            raise NetworkError(f"{fname}: module {module.file_key} is malformed: {exc}") from None
        if mult == 0:
            continue  # shape checked; weight 0 changes nothing
        if isinstance(target, tuple):  # a fused module of the file (qkv): one slice of rows per real module
            rows = [int(originals(t).shape[0]) for t in target]
            weights = torch.split(weight * mult, rows)
            biases = torch.split(bias * mult, rows) if bias is not None else [None] * len(rows)
            deltas.extend(Delta(t, w, b) for t, w, b in zip(target, weights, biases, strict=True))
        else:
            deltas.append(Delta(target, weight * mult, bias * mult if bias is not None else None))
        touched.add(module.key.component)
    return deltas, skipped, touched


def apply_networks(
    pipe: Any, requests: Sequence[tuple[Network, float, float]], signature_extra: Hashable = None
) -> ApplyResult:
    """Patch *pipe* so exactly *requests* are applied (an empty list restores the original weights)."""
    components = pipe_components(pipe)
    patch = patch_for(components["unet"])
    result = ApplyResult()
    signature = (signature_extra, tuple((net.filename, id(net), float(te), float(unet)) for net, te, unet in requests))
    with patch.lock:
        last = patch.info
        if requests and patch.signature == signature and isinstance(last, ApplyResult):
            return ApplyResult(list(last.applied), dict(last.refused), [], last.modules_patched, last.te_signature)
        patch.restore()
        all_deltas: list[Delta] = []
        te_parts = []
        for net, te, unet in requests:
            try:
                deltas, skipped, touched = network_deltas(net, components, te, unet, patch.original_weight)
            except NetworkError as exc:
                result.refused[net.name] = str(exc)
                result.warnings.append(f"LoRA {net.name!r} skipped: {exc}")
                continue
            if skipped:
                sample = ", ".join(skipped[:3])
                result.warnings.append(f"LoRA {net.name!r}: {len(skipped)} unknown key(s) skipped (e.g. {sample})")
            all_deltas.extend(deltas)
            result.applied.append(net)
            if touched & set(TE_COMPONENTS):
                te_parts.append((net.filename, id(net), float(te)))
        try:
            result.modules_patched = patch.apply(all_deltas, signature) if all_deltas else 0
        except NetworkError as exc:  # e.g. weights not resident (sequential offload): nothing is applied
            for net in result.applied:
                result.refused[net.name] = str(exc)
            result.warnings.append(f"LoRA networks not applied: {exc}")
            result.applied, te_parts = [], []
        result.te_signature = ("lora", tuple(te_parts)) if te_parts else None
        patch.info = result if patch.signature is not None else None
    return result


def restore_networks(pipe: Any) -> None:
    """Give *pipe* its original weights back (bit-exact); a no-op when nothing is applied."""
    components = pipe_components(pipe)
    if "unet" in components:
        patch_for(components["unet"]).restore()
