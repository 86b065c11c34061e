"""The OpenAI CLIP BPE tokenizer, built offline.

The vocabulary comes from open_clip's packaged ``bpe_simple_vocab_16e6.txt.gz`` (the same
merges OpenAI's CLIP uses). The files in HF layout are written once into a cache folder and
loaded with ``CLIPTokenizer.from_pretrained(dir, local_files_only=True)``. Text is cleaned
like A1111/open_clip before tokenizing (ftfy, HTML unescape, whitespace collapse).
"""

from __future__ import annotations

import gzip
import html
import json
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

BOS_ID = 49406
EOS_ID = 49407
VOCAB_SIZE = 49408
COMMA_ID = 267
_N_MERGES = 49152 - 256 - 2
_lock = threading.Lock()


def clean_text(text: str) -> str:
    """ftfy + double HTML unescape + whitespace collapse (open_clip/A1111 parity)."""
    import ftfy

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split())


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable unicode map."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars), strict=True))


def _bpe_source() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("open_clip")  # located, not imported: importing open_clip imports torch
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(folders[0] if folders else ".") / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"CLIP BPE vocabulary not found at {path} (is open_clip_torch installed?)")
    return path


def tokenizer_cache_dir() -> Path:
    """Folder holding the generated HF tokenizer files (``ATELIER_CACHE`` overrides the root)."""
    root = Path(os.environ.get("ATELIER_CACHE") or Path.home() / ".cache" / "atelier")
    return root / "clip-tokenizer-v1"


def write_tokenizer_files(folder: Path, pad_token: str = "<|endoftext|>") -> Path:
    """Write vocab.json, merges.txt and tokenizer_config.json for a CLIPTokenizer into *folder*."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(_bpe_source()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : _N_MERGES + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    tmp = folder / ".tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), "utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), "utf-8")
    config = {
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
        "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer",
    }
    (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=1), "utf-8")
    (tmp / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}), "utf-8"
    )
    for item in tmp.iterdir():
        os.replace(item, folder / item.name)
    tmp.rmdir()
    return folder


def ensure_tokenizer_files(pad_token: str = "<|endoftext|>") -> Path:
    """Return a folder with tokenizer files for *pad_token*, writing them on first use."""
    folder = tokenizer_cache_dir() / ("pad-eos" if pad_token == "<|endoftext|>" else "pad-" + str(ord(pad_token[0])))
    with _lock:
        if not (folder / "tokenizer_config.json").is_file():
            write_tokenizer_files(folder, pad_token)
    return folder


@lru_cache(maxsize=4)
def clip_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """A CLIPTokenizer with the OpenAI vocabulary. SD1 pads with EOS; SD2/SDXL-G pad with ``!`` (id 0)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(ensure_tokenizer_files(pad_token)), local_files_only=True)


def tokenize(text: str, tokenizer: Any | None = None) -> list[int]:
    """Token ids of cleaned *text* without BOS/EOS, any length.

    ``verbose=False``: a prompt over 77 tokens is expected here (``app.prompts.chunks`` splits it into 75-token
    chunks), so transformers' "Token indices sequence length is longer than the specified maximum" warning is
    wrong for this call; it is turned off for this call only, and the tokenizer's other warnings stay on."""
    tok = tokenizer or clip_tokenizer()
    return list(tok(clean_text(text), add_special_tokens=False, truncation=False, verbose=False).input_ids)
