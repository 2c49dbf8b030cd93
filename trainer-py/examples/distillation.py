"""Distillation: a student LoRA learns to answer like a teacher, from the teacher's generations alone.

The teacher is the base model with a LoRA adapter (``--teacher-adapter DIR``, or one trained here in a few seconds
to name colours). It answers a set of prompts through ``HybridTrainer.generate`` -- vLLM with a ``LoRARequest`` where
vLLM and a GPU exist, HF/PEFT otherwise -- and a fresh student adapter is fine-tuned on those answers. The student's
loss on teacher answers it never saw falls, and it picks up the teacher's habit.

    python trainer-py/examples/distillation.py               # the tiny model, well under a minute on a CPU
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from vllm_train.config import LoRATrainConfig
from vllm_train.data import SFTExample
from vllm_train.data.synthetic import PROMPTS, class_share, synthetic_sft
from vllm_train.tiny_model import tiny_model_path
from vllm_train.trainer import HybridTrainer


def heldout_loss(trainer: HybridTrainer, examples: list[SFTExample]) -> float:
    """Mean per-token NLL of ``examples`` under the trainer's current adapter, without training."""
    from vllm_train.data import collate_sequences
    from vllm_train.losses import causal_lm_loss

    seqs = [trainer.pair_tokenizer.sequence(e) for e in examples]
    batch = collate_sequences(seqs, trainer.tokenizer.pad_token_id).to(trainer.device)
    causal = trainer.model.get_base_model()
    with torch.no_grad():
        hidden = causal.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask)[0]
        return float(causal_lm_loss(hidden, causal.get_output_embeddings().weight, batch.input_ids,
                                    batch.completion_mask))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="HF model name or path (default: the tiny model)")
    parser.add_argument("--teacher-adapter", default=None, help="the teacher's adapter dir (default: trained here)")
    parser.add_argument("--answers", type=int, default=96, help="teacher generations to learn from")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    model = args.model or str(tiny_model_path())
    work = Path(tempfile.mkdtemp(prefix="distillation-"))
    config = LoRATrainConfig(model=model, rank=16, alpha=32, learning_rate=5e-3, lr_schedule="constant",
                             micro_batch_size=8, device=args.device)

    teacher_dir = args.teacher_adapter
    if teacher_dir is None:
        teacher = HybridTrainer(config)
        lessons = synthetic_sft(64, seed=0)
        for _ in range(8):
            for i in range(0, len(lessons), 8):
                teacher.sft_step(lessons[i:i + 8])
        teacher_dir = teacher.save_lora(work / "teacher").path
        print(f"teacher adapter trained in {time.time() - started:.0f} s: {teacher_dir}")

    student = HybridTrainer(config.replace(seed=1))
    rng = random.Random(0)
    prompts = [[{"role": "user", "content": rng.choice(PROMPTS)}] for _ in range(args.answers)]
    answers = student.generate(prompts, lora_path=teacher_dir, max_new_tokens=12, temperature=0.7, seed=0)
    data = [SFTExample(p, a) for p, a in zip(prompts, answers) if a.strip()]
    train, heldout = data[: len(data) * 3 // 4], data[len(data) * 3 // 4:]
    print(f"teacher wrote {len(data)} answers (colour share {sum(map(class_share, answers)) / len(answers):.3f}); "
          f"student learns from {len(train)}, {len(heldout)} held out")

    probe = [[{"role": "user", "content": p}] for p in PROMPTS] * 4
    share_before = sum(map(class_share, student.generate(probe, max_new_tokens=12, seed=1))) / len(probe)
    loss_before = heldout_loss(student, heldout)
    for epoch in range(1, args.epochs + 1):
        rng.shuffle(train)
        losses = [student.sft_step(train[i:i + 8]).loss for i in range(0, len(train), 8)]
        print(f"epoch {epoch}: train loss {sum(losses) / len(losses):.4f}  held-out loss "
              f"{heldout_loss(student, heldout):.4f}", flush=True)
    share_after = sum(map(class_share, student.generate(probe, max_new_tokens=12, seed=1))) / len(probe)
    info = student.save_lora(work / "student")
    print(f"student: held-out loss on teacher answers {loss_before:.4f} -> {heldout_loss(student, heldout):.4f}, "
          f"colour share {share_before:.3f} -> {share_after:.3f}; adapter {info.path} "
          f"({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
