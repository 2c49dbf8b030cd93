"""The tiny model: a small, deterministic HF model directory that tests and the local demo use in place of a real LLM.

``vllm-train tiny-model --out DIR [--seed S]`` writes an ordinary Hugging Face model directory (``config.json``,
``generation_config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json`` with a chat template)
so that every code path which loads a real model by name (``AutoModelForCausalLM.from_pretrained``,
``AutoTokenizer.from_pretrained``, vLLM's ``LLM(model=...)``) loads it unchanged. No model hub is needed: the
tokenizer is built here with the ``tokenizers`` library and the weights are random, drawn from ``torch`` seeded with
``seed``, so the same seed always gives byte-identical files.

The vocabulary is byte-level BPE (any text encodes) whose merges make every word of :data:`WORD_CLASSES` a single
token, with and without a leading space. That keeps the demo's hidden preference ("the user likes answers that name
a colour") one token class away, which LoRA DPO on a CPU learns within minutes.

:func:`tiny_model_path` returns a cached copy under the repository's ``.cache/`` (created on first use) and is the one
place tests and the demo get the model from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Bump when anything below changes the files written, so cached copies are rebuilt.
TINY_MODEL_SPEC_VERSION = 2

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

# Words that are one token each. The classes give the demo simple, learnable hidden preferences.
WORD_CLASSES: dict[str, tuple[str, ...]] = {
    "colors": ("red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black", "white", "gold",
               "silver"),
    "animals": ("cat", "dog", "fox", "bird", "fish", "horse", "cow", "lion", "tiger", "bear", "wolf", "owl"),
    "foods": ("apple", "bread", "cheese", "rice", "soup", "cake", "tea", "milk", "egg", "pear", "plum", "corn"),
    "numbers": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "zero", "many"),
    "moods": ("happy", "sad", "calm", "angry", "glad", "tired", "brave", "kind", "bright", "dark", "warm", "cold"),
    "function": ("the", "a", "an", "is", "are", "was", "and", "or", "but", "of", "to", "in", "on", "at", "it", "I",
                 "you", "we", "they", "he", "she", "my", "your", "this", "that", "with", "for", "not", "no", "yes",
                 "what", "which", "who", "how", "why", "do", "does", "like", "likes", "see", "have", "has", "can",
                 "will", "tell", "me", "about", "please", "story", "color", "colour", "animal", "food", "number",
                 "favorite", "best", "good", "bad", "very", "really", "some", "all", "name", "say", "answer", "hello",
                 "hi", "thanks", "today", "day", "night", "sky", "sea", "tree", "house", "big", "small", "new",
                 "old"),
    # The chat template's role names, so a rendered conversation stays short.
    "roles": ("system", "user", "assistant"),
}

# Sentence-initial forms of these classes are single tokens too.
CAPITALIZED_CLASSES = ("function", "colors", "animals", "numbers")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Model shape: head_dim 64 is a size every vLLM attention backend supports; everything else is as small as it goes.
MODEL_SHAPE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1, max_position_embeddings=2048)
# With embeddings of std 0.02 tied to the LM head and a unit final norm, no logit can exceed ~2.6: the model could
# never become confident, and LoRA (which leaves the norm and the head alone) could barely teach it anything. A final
# norm weight of 4 gives logits of std ~0.9 at init and room to learn.
FINAL_NORM_SCALE = 4.0


def build_tokenizer():
    """The tiny model's tokenizer as a ``transformers`` fast tokenizer (deterministic; no files, no hub).

    Byte-level BPE trained on the word list alone, each word with and without a leading space, until no pair is left
    to merge: encoding replays the training merges, so every listed word comes out as exactly one token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = [w for cls in WORD_CLASSES.values() for w in cls]
    words += [w.capitalize() for name in CAPITALIZED_CLASSES for w in WORD_CLASSES[name]]
    corpus = [form for w in dict.fromkeys(words) for form in (w, " " + w)]
    core = Tokenizer(models.BPE(fuse_unk=False))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=100_000, min_frequency=1, show_progress=False,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(corpus, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=None, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
                                  unk_token=None, model_max_length=MODEL_SHAPE["max_position_embeddings"],
                                  clean_up_tokenization_spaces=False)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def create_tiny_model(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Writes the tiny model (weights random for ``seed``, byte-identical for the same seed) to ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    # A multiple of 64 keeps GPU kernels on their fast path; the ids past the tokenizer are never produced by it.
    vocab_size = (len(tokenizer) + 63) // 64 * 64
    pad_id, eos_id = tokenizer.convert_tokens_to_ids([PAD_TOKEN, EOS_TOKEN])
    config = Qwen2Config(vocab_size=vocab_size, **MODEL_SHAPE, tie_word_embeddings=True, rms_norm_eps=1e-6,
                         initializer_range=0.02, pad_token_id=pad_id, bos_token_id=None, eos_token_id=eos_id,
                         use_sliding_window=False, dtype="float32", architectures=["Qwen2ForCausalLM"])
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        with torch.device("cpu"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        with torch.no_grad():
            model.get_decoder().norm.weight.fill_(FINAL_NORM_SCALE)
    finally:
        torch.random.set_rng_state(rng_state)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id, do_sample=True,
                                               temperature=1.0, top_p=1.0, max_new_tokens=32)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "tiny_model.json").write_text(json.dumps(
        {"spec_version": TINY_MODEL_SPEC_VERSION, "seed": seed, "word_classes": WORD_CLASSES}, indent=1) + "\n")
    return out


def cache_root() -> Path:
    """The project's cache: $VLLM_TRAIN_CACHE, else <repo>/.cache in a checkout, else ~/.cache/vllm-train."""
    env = os.environ.get("VLLM_TRAIN_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "trainer-py").is_dir():
        return repo / ".cache"
    return Path.home() / ".cache" / "vllm-train"


def _is_current(path: Path) -> bool:
    try:
        marker = json.loads((path / "tiny_model.json").read_text())
    except (OSError, ValueError):
        return False
    return marker.get("spec_version") == TINY_MODEL_SPEC_VERSION and (path / "model.safetensors").exists()


def tiny_model_path(seed: int = 0) -> Path:
    """The cached tiny model for ``seed`` (``<repo>/.cache/tiny-model-<seed>``, or ``$VLLM_TRAIN_CACHE``), built if
    missing or stale. Safe when several processes ask at once: each builds in a temp dir and renames it in place."""
    root = cache_root()
    path = root / f"tiny-model-{seed}"
    if _is_current(path):
        return path
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tiny-model-{seed}-", dir=root))
    try:
        create_tiny_model(tmp, seed)
        if path.exists() and not _is_current(path):
            stale = Path(tempfile.mkdtemp(prefix=f".stale-tiny-model-{seed}-", dir=root))
            os.replace(path, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, path)
        except OSError:
            if not _is_current(path):  # someone else won the race with a good copy; otherwise it is a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vllm-train tiny-model",
        description="Write the tiny, deterministic HF model (config, random weights, local tokenizer with a chat "
                    "template) used by tests and the demo.")
    parser.add_argument("--out", required=True, help="directory to write the model to (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    args = parser.parse_args(argv)
    out = create_tiny_model(args.out, args.seed)
    print(f"tiny model (seed {args.seed}) written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
