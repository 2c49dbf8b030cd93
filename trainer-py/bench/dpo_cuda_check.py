"""Does the library's DPO step run on a GPU, and how fast is it before any GPU-specific work? (A check, not the GPU
benchmark: that is trainer-py/bench/dpo_gpu.py of the GPU issue.)

Builds random-weight models with the real shapes of Qwen2.5-0.5B (and optionally 1.5B) in a temp dir, trains
HybridTrainer DPO steps in bf16 (dtype auto) on 8 pairs x 1024 tokens (256 prompt), and prints the first loss (must
be ln 2), median step time, tokens/s and peak GPU memory. The last line printed is one JSON object.

    python trainer-py/bench/dpo_cuda_check.py [--sizes 0.5B,1.5B] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time

import torch

SHAPES = {
    "0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, tie_word_embeddings=True),
}


def build(size: str, out: str) -> str:
    from transformers import AutoModelForCausalLM, Qwen2Config

    from vllm_train.tiny_model import build_tokenizer

    config = Qwen2Config(vocab_size=151936, max_position_embeddings=4096, rms_norm_eps=1e-6, **SHAPES[size],
                         architectures=["Qwen2ForCausalLM"], dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return out


def run(size: str, steps: int, chunk: int) -> dict:
    from vllm_train.config import LoRATrainConfig
    from vllm_train.data import TokenizedPair
    from vllm_train.trainer import HybridTrainer

    with tempfile.TemporaryDirectory() as d:
        path = build(size, d)
        config = LoRATrainConfig(model=path, rank=16, alpha=32, micro_batch_size=8, max_length=1024,
                                 max_prompt_length=256, learning_rate=1e-5, lr_schedule="constant",
                                 logprob_chunk_tokens=chunk)
        trainer = HybridTrainer(config)
    g = torch.Generator().manual_seed(0)
    ids = lambda n: tuple(torch.randint(3, 151000, (n,), generator=g).tolist())
    batches = [[TokenizedPair(ids(256), ids(768), ids(768)) for _ in range(8)] for _ in range(steps + 2)]
    torch.cuda.reset_peak_memory_stats()
    metrics = [trainer.dpo_step(b) for b in batches]
    torch.cuda.synchronize()
    times = [m.seconds for m in metrics[2:]]
    step = statistics.median(times)
    tokens = metrics[-1].tokens
    n_params = sum(p.numel() for p in trainer.model.get_base_model().parameters() if not p.requires_grad)
    return {"model": f"Qwen2.5-{size} shapes (random)", "first_loss": round(metrics[0].loss, 6),
            "first_loss_is_ln2": abs(metrics[0].loss - math.log(2)) < 1e-3, "median_step_s": round(step, 4),
            "tokens_per_s": round(tokens / step), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "mfu": round(6 * n_params * tokens / step / 989e12, 4), "dtype": str(trainer.dtype),
            "chunk_tokens": chunk, "card": torch.cuda.get_device_name(), "torch": torch.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.5B")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--chunk", type=int, default=2048)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this check needs one")
        return 1
    rows = []
    for size in args.sizes.split(","):
        try:
            rows.append(run(size, args.steps, args.chunk))
        except torch.OutOfMemoryError:
            rows.append({"model": f"Qwen2.5-{size} shapes (random)", "error": "out of memory"})
            torch.cuda.empty_cache()
        print(rows[-1], flush=True)
    print(json.dumps({"bench": "dpo_cuda_check", "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
