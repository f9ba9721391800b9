"""A tiny random-weights chat model, built locally in well under a second.

It lets rayeval run the whole hosted-model path (Ray Serve + vLLM) with no GPU and no network:
the quick start and the tests deploy it like any other checkpoint. Its answers are meaningless
(the weights are random), but deterministic under greedy decoding.

The model is a 2-layer Llama (hidden size 128, 2 attention heads: vLLM's CPU attention needs a
head size of at least 32) with a byte-level BPE tokenizer trained on a few KB of fixed text and
a plain chat template, saved in Hugging Face format.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rayeval.paths import models_dir

__all__ = ["TINY_MODEL_NAME", "build_tiny_model", "tiny_model_dir"]

TINY_MODEL_NAME = "tiny-random-llama"
#: Bump when the recipe changes, so that a cached copy built by an older recipe is rebuilt.
RECIPE_VERSION = 1

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]


def _corpus() -> list[str]:
    """Fixed training text for the tokenizer: prose, digits and arithmetic, so numbers tokenise sensibly."""
    words = (
        "the model reads a question and writes an answer step by step then gives the final number "
        "evaluation of large language models on a ray cluster with actors and streaming data sets "
        "natalia sold clips to her friends in april and then she sold half as many clips in may "
        "how many clips did natalia sell altogether in april and may answer with a number"
    )
    lines = [words, words.upper(), words.title()]
    lines += [f"{a} + {b} = {a + b}; {a} * {b} = {a * b}; #### {a * b - b}" for a in range(40) for b in range(0, 40, 3)]
    return lines


def build_tiny_model(dest: str | os.PathLike[str], *, seed: int = 0, max_position_embeddings: int = 8192) -> Path:
    """Build the tiny model into `dest` (created) and return its path.

    Args:
        dest: Folder to write the Hugging Face model files into.
        seed: Seed of the random weights (same seed, same model).
        max_position_embeddings: Longest context the model accepts (MAX_MODEL_LEN may not exceed it).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL_TOKENS[4:],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(dest)

    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.do_sample = False
    model.save_pretrained(dest, safe_serialization=True)
    (dest / "rayeval_tiny_model.json").write_text(json.dumps({"recipe": RECIPE_VERSION, "seed": seed}))
    return dest


def tiny_model_dir(home: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Path:
    """The tiny model's folder under rayeval's home, built on first use (atomically, so concurrent callers agree)."""
    base = models_dir(home)
    final = base / f"{TINY_MODEL_NAME}-r{RECIPE_VERSION}-s{seed}"
    if (final / "rayeval_tiny_model.json").exists():
        return final
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=base))
    build_tiny_model(staging, seed=seed)
    try:
        staging.rename(final)
    except OSError:  # another process finished first: use its copy
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return final
