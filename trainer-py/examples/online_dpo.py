"""Online DPO in one process, without Kafka: this product's loop, end to end, on a CPU in under a minute.

Each round the policy (base model + the LoRA being trained) answers every prompt twice; a simulated user who likes
colours prefers the answer naming more colour words; the preferred/dispreferred answers become DPO pairs; the trainer
takes a step; every few rounds the adapter is published as a new, immutable, vLLM-loadable version directory. The
share of colour words in the answers climbs as it learns.

    python trainer-py/examples/online_dpo.py                  # the tiny model, ~30-60 s on a CPU
    python trainer-py/examples/online_dpo.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --rounds 200
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from vllm_train.config import LoRATrainConfig
from vllm_train.data import PreferenceExample
from vllm_train.data.synthetic import PROMPTS, class_share
from vllm_train.tiny_model import WORD_CLASSES, tiny_model_path
from vllm_train.trainer import HybridTrainer


def user_score(text: str) -> int:
    """The simulated user likes answers that name many *different* colours (rewarding colour words as such teaches
    the policy to say "gold gold gold...": DPO optimises exactly what the feedback rewards)."""
    words = {w.strip(".,!?;:").lower() for w in text.split()}
    return len(words & set(WORD_CLASSES["colors"]))


def simulated_user(a: str, b: str) -> tuple[str, str] | None:
    """(chosen, rejected), or None when the user has no preference."""
    sa, sb = user_score(a), user_score(b)
    if sa == sb:
        return None
    return (a, b) if sa > sb else (b, a)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="HF model name or path (default: the tiny model)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--publish-every", type=int, default=10, help="rounds between published versions")
    parser.add_argument("--out", default=None, help="where versions are written (default: a temp dir)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1: the tiny model "
                                                                 "gains little from more, and shared CPUs lose a lot)")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = args.model or str(tiny_model_path())
    config = LoRATrainConfig(model=model, rank=8, alpha=16, learning_rate=2e-3, lr_schedule="constant", beta=0.1,
                             micro_batch_size=8, device=args.device, target_modules=("q_proj", "v_proj", "o_proj",
                                                                                     "up_proj", "down_proj"))
    trainer = HybridTrainer(config)
    out = Path(args.out or tempfile.mkdtemp(prefix="online-dpo-"))
    rng = random.Random(args.seed)
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    started, version = time.time(), 0
    print(f"online DPO on {model}: {len(prompts)} prompts x 2 answers per round, versions in {out}")
    for round_ in range(1, args.rounds + 1):
        seed = rng.randrange(2**31)
        answers = trainer.generate(prompts + prompts, backend="hf", max_new_tokens=args.max_new_tokens,
                                   temperature=1.0, seed=seed)
        share = sum(class_share(a) for a in answers) / len(answers)
        pairs = []
        for prompt, a, b in zip(prompts, answers[:len(prompts)], answers[len(prompts):]):
            choice = simulated_user(a, b)
            if choice:
                pairs.append(PreferenceExample(prompt, *choice))
        score = sum(map(user_score, answers)) / len(answers)
        line = f"round {round_:3d}  colour share {share:.3f}  user score {score:+.2f}  pairs {len(pairs)}"
        if pairs:
            m = trainer.dpo_step(pairs)
            line += f"  loss {m.loss:.4f}  reward acc {m.reward_accuracy:.2f}  margin {m.reward_margin:+.3f}"
        print(line, flush=True)
        if round_ % args.publish_every == 0:
            version += 1
            info = trainer.save_lora(out / f"v{version:06d}")
            print(f"published {info.path.name} (sha256 {info.sha256[:12]}…)")
    final = trainer.generate(prompts * 4, backend="hf", max_new_tokens=args.max_new_tokens, seed=1)
    with trainer.model.disable_adapter():
        base = trainer.generate(prompts * 4, backend="hf", max_new_tokens=args.max_new_tokens, seed=1)
    print(f"colour share of answers: base model {sum(map(class_share, base)) / len(base):.3f} -> "
          f"trained adapter {sum(map(class_share, final)) / len(final):.3f}; user score "
          f"{sum(map(user_score, base)) / len(base):+.2f} -> {sum(map(user_score, final)) / len(final):+.2f}  "
          f"({time.time() - started:.0f} s)")
    print("example answers:", final[:3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
