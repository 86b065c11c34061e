"""Textual-inversion embeddings bundled in a LoRA file (``bundle_emb.<name>.<key>``, spec §3.3).

They are usable for the job the network is active in. Their ``TI hashes`` entry shows the network's
name instead of a hash (A1111 ``lora_bundled_ti_to_infotext``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from app.models.embedding_files import Embedding, EmbeddingFormatError, embedding_from_data
from app.models.lora.network import Network


@dataclass(eq=False)
class BundledEmbedding(Embedding):
    """An embedding that came with a network; ``shorthash`` is the network's name."""

    network_name: str = ""

    @property
    def sha256(self) -> str:  # type: ignore[override]
        return self.network_name

    @property
    def shorthash(self) -> str:  # type: ignore[override]
        return self.network_name


def _as_file_data(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``string_to_param.<k>`` keys back to the A1111 ``.pt`` layout; other keys as they are."""
    params = {k[len("string_to_param.") :]: v for k, v in tensors.items() if k.startswith("string_to_param.")}
    if params:
        return {"string_to_param": params}
    return dict(tensors)


def _fits(emb: Embedding, dims: dict[str, int]) -> bool:
    have = emb.part_dims()
    if isinstance(emb.vec, dict):
        return all(have.get(k) == v for k, v in dims.items())
    return len(dims) == 1 and next(iter(have.values())) == next(iter(dims.values()))


def bundled_embeddings(networks: Iterable[Network], encoder: Any) -> tuple[dict[str, BundledEmbedding], list[str]]:
    """The usable bundled embeddings of *networks* for *encoder*'s model, and warnings for the others."""
    out: dict[str, BundledEmbedding] = {}
    warnings: list[str] = []
    dims = encoder.embedding_dims() if hasattr(encoder, "embedding_dims") else {}
    for net in networks:
        for name, tensors in net.bundled.items():
            try:
                base = embedding_from_data(_as_file_data(tensors), name, net.filename)
            except EmbeddingFormatError as exc:
                warnings.append(f"bundled embedding {name!r} of LoRA {net.name!r} skipped: {exc}")
                continue
            emb = BundledEmbedding(name=name, vec=base.vec, filename=net.filename, network_name=net.name)
            if dims and not _fits(emb, dims):
                warnings.append(
                    f"bundled embedding {name!r} of LoRA {net.name!r} skipped: width {emb.shape} does not fit the model"
                )
                continue
            out.setdefault(name, emb)
    return out, warnings
