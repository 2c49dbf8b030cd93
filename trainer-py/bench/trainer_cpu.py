"""CPU benchmark of the trainer on the tiny model: DPO step throughput and the cost of publishing a version.

    ./pipeline bench trainer            # or: .venv/bin/python trainer-py/bench/trainer_cpu.py [--steps N]

For each thread count and micro-batch size it times DPO optimizer steps (reference forward + concatenated
chosen/rejected policy forward + backward + AdamW) on synthetic pairs, after warm-up steps, and reports the median
step: tokens/s (non-padding tokens through the policy forward), pairs/s, ms per step. It also times writing an adapter
version (save_lora: safetensors + config + sha256 + validation). Results are written nowhere: copy the table into
trainer-py/bench/RESULTS.md with the machine's load (tokens per CPU-second, also reported, is the steadier figure on
a shared machine). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import torch

from vllm_train.config import LoRATrainConfig
from vllm_train.data import PreferenceExample
from vllm_train.data.synthetic import synthetic_pairs
from vllm_train.tiny_model import tiny_model_path
from vllm_train.trainer import HybridTrainer


def long_pairs(n: int, seed: int) -> list[PreferenceExample]:
    """Pairs of ~130 prompt tokens and ~80-token completions: a conversation's worth, not a one-liner."""
    short = synthetic_pairs(n * 8, seed=seed)
    out = []
    for i in range(n):
        group = short[i * 8:(i + 1) * 8]
        prompt = " ".join(p.chosen + " " + p.rejected for p in group[:4]) + " " + group[0].prompt[0]["content"]
        out.append(PreferenceExample([{"role": "user", "content": prompt}],
                                     " ".join(p.chosen for p in group[4:]), " ".join(p.rejected for p in group[4:])))
    return out


def bench_dpo(threads: int, micro_batch: int, steps: int, warmup: int, lengths: str) -> dict:
    torch.set_num_threads(threads)
    config = LoRATrainConfig(model=str(tiny_model_path()), rank=16, alpha=32, learning_rate=1e-4,
                             lr_schedule="constant", micro_batch_size=micro_batch, device="cpu", dtype="float32")
    trainer = HybridTrainer(config)
    make = long_pairs if lengths == "long" else synthetic_pairs
    pairs = trainer.tokenize(make(micro_batch * (steps + warmup), seed=0))
    times, tokens, cpu = [], [], []
    for i in range(steps + warmup):
        cpu_start = time.process_time()
        m = trainer.dpo_step(pairs[i * micro_batch:(i + 1) * micro_batch])
        if i >= warmup:
            times.append(m.seconds)
            tokens.append(m.tokens)
            cpu.append(time.process_time() - cpu_start)
    step = statistics.median(times)
    tok = statistics.median(tokens)
    with tempfile.TemporaryDirectory() as d:
        saves = []
        for n in range(5):
            t0 = time.perf_counter()
            trainer.save_lora(os.path.join(d, f"v{n}"))
            saves.append(time.perf_counter() - t0)
    return {"lengths": lengths, "threads": threads, "micro_batch_pairs": micro_batch, "median_step_ms": round(step * 1000, 1),
            "tokens_per_step": int(tok), "tokens_per_s": round(tok / step),
            # CPU seconds the process used: on a shared machine, a steadier figure than wall time.
            "tokens_per_cpu_s": round(sum(tokens) / sum(cpu)), "pairs_per_s": round(micro_batch / step, 1),
            "save_version_ms": round(statistics.median(saves) * 1000, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="CPU benchmark of DPO LoRA steps on the tiny model")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--micro-batches", default="4,16")
    parser.add_argument("--lengths", default="short,long", help="short: ~25-token sequences; long: ~210 tokens")
    args = parser.parse_args(argv)
    rows = []
    for lengths in args.lengths.split(","):
        for threads in [int(t) for t in args.threads.split(",")]:
            for mb in [int(b) for b in args.micro_batches.split(",")]:
                row = bench_dpo(threads, mb, args.steps, args.warmup, lengths)
                rows.append(row)
                print(f"{lengths:5s} threads {row['threads']}  pairs/step {row['micro_batch_pairs']:3d}  "
                      f"step {row['median_step_ms']:7.1f} ms  {row['tokens_per_s']:7d} tokens/s  "
                      f"{row['tokens_per_cpu_s']:7d} tokens/cpu-s  "
                      f"{row['pairs_per_s']:6.1f} pairs/s  save version {row['save_version_ms']:.1f} ms", flush=True)
    summary = {"bench": "trainer_cpu", "model": "tiny-model-0 (Qwen2 shape, hidden 128, 2 layers, vocab 960)",
               "lora": "r16 alpha32, all attention+MLP projections", "torch": torch.__version__,
               "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "load_avg_1m": round(os.getloadavg()[0], 2), "rows": rows,
               "best_tokens_per_s": max(r["tokens_per_s"] for r in rows)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
