"""Supervised LoRA fine-tuning from a JSONL file, saved as an adapter vLLM loads.

Each line is ``{"prompt": "..." or [{"role": ..., "content": ...}], "completion": "..."}``; the loss covers the
completion tokens only. Without ``--data`` a small file of colour-naming answers is written and used, so the example
runs as is on the tiny model in well under a minute on a CPU.

    python trainer-py/examples/lora_finetune.py
    python trainer-py/examples/lora_finetune.py --data my.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --device cuda
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from vllm_train.config import LoRATrainConfig
from vllm_train.data import read_sft_jsonl
from vllm_train.data.synthetic import PROMPTS, class_share, synthetic_sft
from vllm_train.tiny_model import tiny_model_path
from vllm_train.trainer import HybridTrainer


def write_sample(path: Path, n: int = 64) -> Path:
    with open(path, "w") as f:
        for ex in synthetic_sft(n, seed=0):
            f.write(json.dumps({"prompt": ex.prompt, "completion": ex.completion}) + "\n")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="JSONL of prompt/completion lines (default: a generated sample)")
    parser.add_argument("--model", default=None, help="HF model name or path (default: the tiny model)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8, help="examples per optimizer step")
    parser.add_argument("--out", default=None, help="adapter directory to write (default: a temp dir)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1: the tiny model "
                                                                 "gains little from more, and shared CPUs lose a lot)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="lora-finetune-"))
    data = Path(args.data) if args.data else write_sample(work / "sft.jsonl")
    examples = read_sft_jsonl(data)
    model = args.model or str(tiny_model_path())
    config = LoRATrainConfig(model=model, rank=16, alpha=32, learning_rate=5e-3, lr_schedule="cosine",
                             warmup_steps=2, total_steps=args.epochs * -(-len(examples) // args.batch),
                             micro_batch_size=args.batch, device=args.device)
    trainer = HybridTrainer(config)
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS] * 4
    before = trainer.generate(prompts, backend="hf", max_new_tokens=12, seed=0)
    print(f"fine-tuning {model} on {len(examples)} examples from {data}")
    started = time.time()
    rng = random.Random(0)
    for epoch in range(1, args.epochs + 1):
        rng.shuffle(examples)
        for i in range(0, len(examples), args.batch):
            m = trainer.sft_step(examples[i:i + args.batch])
            print(f"epoch {epoch} step {m.step:3d}  loss {m.loss:.4f}  lr {m.learning_rate:.2e}  "
                  f"{m.tokens_per_s:.0f} tokens/s", flush=True)
    out = Path(args.out or work / "adapter")
    info = trainer.save_lora(out)
    after = trainer.generate(prompts, lora_path=out, backend="hf", max_new_tokens=12, seed=0)
    print(f"adapter written to {info.path} (rank {info.rank}, sha256 {info.sha256[:12]}…) in "
          f"{time.time() - started:.0f} s")
    print(f"colour share of answers: before {sum(map(class_share, before)) / len(before):.3f} -> after "
          f"{sum(map(class_share, after)) / len(after):.3f}")
    print("example:", repr(after[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
