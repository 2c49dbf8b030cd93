"""GPU benchmark: this trainer's DPO LoRA step against TRL's DPOTrainer, same card, same data, same settings, one run.

    python trainer-py/bench/dpo_gpu.py [--sizes 0.5B,1.5B,7B] [--steps 5] [--warmup 2] [--out FILE]

Models are random-weight Qwen2 models with the real shapes of Qwen2.5-0.5B, 1.5B and 7B (built from a
``Qwen2Config``; no hub), bf16, SDPA attention. Every system trains LoRA r=16, alpha=32, dropout 0 on all seven
linear layers of each decoder layer, sigmoid DPO with beta 0.1, reference = the base model (adapter disabled), one
optimizer step per 8 pairs of 1024 tokens each side (256 prompt + 768 completion tokens, EOS last), identical token
ids for every system, fresh pairs each step. Warm-up steps are excluded; the median step is reported:

- ``tokens_per_s`` = 8 x 2 x 1024 / median step; ``pairs_per_s`` = 8 / median step;
- ``peak_gib`` = ``torch.cuda.max_memory_allocated`` over the system's run (base weights included);
- ``mfu`` = 6 x N x tokens / step / 989e12, N = all parameters of the base model (the issue's convention:
  reference forward + policy forward + activation backward; recomputation not counted).

Systems, per size, in one process per size (Liger's patches are process-wide, so TRL's Liger run goes last):

1. ``trl`` - TRL's DPOTrainer with a PEFT ``LoraConfig``, TRL's defaults (gradient checkpointing on, bf16, full
   logits), batch 8.
2. ``ours`` - ``HybridTrainer`` with its fast path (``fast_path="on"``, ``compile_kernels``), the largest micro-batch
   of ``MICRO_BATCH_PAIRS[size]`` (then halves) whose peak stays at or under TRL default's measured peak.
3. ``trl_best`` - TRL's fastest configuration that fits: ``use_liger_kernel=True`` with gradient checkpointing off at
   batch 8, else off with gradient accumulation (4x2, then 2x4 pairs), else on.

TRL sees the pairs as text over a word-level tokenizer whose word ``w<id>`` is token ``<id>``, so its own
tokenization yields exactly the ids the trainer gets. Per size it also drives the trainer service's training path
(``TrainerService._train`` on decoded-batch records, then ``_write_version``: trainer state + adapter folder +
SHA-256) in process; there is no Kafka broker on the GPU machine, so consuming and the transaction are not timed.

Writes a JSON list (one object per size) to ``--out`` and prints a table last.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEAK_BF16_FLOPS = 989e12
VOCAB = 151936
EOS_ID = 151643
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PAIRS_PER_STEP, PROMPT_TOKENS, SEQ_TOKENS = 8, 256, 1024
SHAPES = {
    "0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, tie_word_embeddings=False),
    # CPU smoke test of this script (not a benchmark): --sizes tiny
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=True),
}
# Pairs per forward/backward for the fast path, largest first (activations without checkpointing; see docs/trainer.md).
MICRO_BATCH_PAIRS = {"0.5B": (8, 4), "1.5B": (4, 2), "7B": (2, 1), "tiny": (4, 2)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- data -------------------------------------------------------------------------------------------------------------

def word_tokenizer(vocab: int):
    """A tokenizer whose text ``"w5 w17"`` is exactly the ids [5, 17]: TRL tokenizes text, the trainer takes ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos = f"w{EOS_ID if vocab > EOS_ID else vocab - 1}"
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=eos, pad_token=eos, unk_token="w0")


def make_pairs(count: int, vocab: int, eos_id: int, seed: int) -> list[tuple[list[int], list[int], list[int]]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = lambda n: torch.randint(1, min(vocab, EOS_ID) - 1, (n,), generator=g).tolist()
    completion = SEQ_TOKENS - PROMPT_TOKENS
    return [(ids(PROMPT_TOKENS), ids(completion - 1) + [eos_id], ids(completion - 1) + [eos_id]) for _ in range(count)]


def as_text(ids: list[int]) -> str:
    return " ".join(f"w{i}" for i in ids)


# --- model ------------------------------------------------------------------------------------------------------------

def build_model(size: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    vocab = VOCAB if size != "tiny" else 1000
    config = Qwen2Config(vocab_size=vocab, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                         use_sliding_window=False, hidden_act="silu", **SHAPES[size])
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.requires_grad_(False)
    return model, vocab


def unwrap_peft(model):
    """The base model back from a PEFT wrapping (LoRA layers removed, nothing merged), checkpointing off."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.unload()
    if getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()
    try:
        model.disable_input_require_grads()
    except Exception:  # no hook registered
        pass
    model.requires_grad_(False)
    return model


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else 0.0


def figures(step_times: list[float], n_params: int) -> dict:
    step = statistics.median(step_times)
    tokens = PAIRS_PER_STEP * 2 * SEQ_TOKENS
    return {"median_step_s": round(step, 4), "step_s": [round(t, 4) for t in step_times],
            "tokens_per_s": round(tokens / step), "pairs_per_s": round(PAIRS_PER_STEP / step, 2),
            "mfu": round(6 * n_params * tokens / step / PEAK_BF16_FLOPS, 4), "peak_gib": peak_gib()}


def is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


# --- systems ----------------------------------------------------------------------------------------------------------

def run_ours(model, tokenizer, pairs, size, args, n_params, budget_gib: float | None,
             device: str) -> tuple[dict, object]:
    """The fast path at the largest planned micro-batch whose peak stays within ``budget_gib``."""
    import torch

    from vllm_train.config import LoRATrainConfig
    from vllm_train.data import TokenizedPair
    from vllm_train.trainer import HybridTrainer

    steps = args.warmup + args.steps
    tokenized = [TokenizedPair(tuple(p), tuple(c), tuple(r)) for p, c, r in pairs]
    batches = [tokenized[i * PAIRS_PER_STEP:(i + 1) * PAIRS_PER_STEP] for i in range(steps)]
    tried = []
    for mb in MICRO_BATCH_PAIRS[size]:
        for compile_kernels in ((True, False) if args.compile else (False,)):
            free_memory()
            trainer = None
            try:
                config = LoRATrainConfig(model=f"Qwen2.5-{size}-shapes-random", rank=16, alpha=32, dropout=0.0,
                                         target_modules=TARGETS, learning_rate=5e-6, lr_schedule="constant",
                                         beta=0.1, max_prompt_length=PROMPT_TOKENS, max_length=SEQ_TOKENS,
                                         micro_batch_size=mb, gradient_accumulation_steps=PAIRS_PER_STEP // mb,
                                         device=device, fast_path="on", compile_kernels=compile_kernels,
                                         publish_every_batches=1000, max_staleness_versions=None)
                trainer = HybridTrainer(config, base_model=model, tokenizer=tokenizer)
                times, losses = [], []
                over_budget = False
                for i, batch in enumerate(batches):
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    m = trainer.dpo_step(batch)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                    losses.append(round(m.loss, 5))
                    if i == 0 and budget_gib is not None and peak_gib() > budget_gib:
                        over_budget = True
                        break
                if over_budget:
                    tried.append({"micro_batch_pairs": mb, "compile": compile_kernels,
                                  "skipped": f"peak {peak_gib()} GiB > TRL default's {budget_gib} GiB"})
                    log(f"ours mb={mb}: {tried[-1]['skipped']}")
                    model = unwrap_peft(_release(trainer))
                    break  # next micro-batch size
                result = {"micro_batch_pairs": mb, "gradient_accumulation": PAIRS_PER_STEP // mb,
                          "compile_kernels": compile_kernels, "first_loss": losses[0], "losses": losses,
                          **figures(times[args.warmup:], n_params), "tried": tried,
                          "fast_path": str(trainer.fast_path_report)}
                if args.profile and device == "cuda":
                    try:
                        profile_step(trainer, batches[-1], size, args)
                    except Exception:  # noqa: BLE001 - the figures above stand without it
                        traceback.print_exc()
                return result, trainer
            except Exception as e:  # noqa: BLE001 - record and try the next setting
                why = "out of memory" if is_oom(e) else f"{type(e).__name__}: {e}"
                tried.append({"micro_batch_pairs": mb, "compile": compile_kernels, "error": why[:500]})
                log(f"ours mb={mb} compile={compile_kernels} failed: {why[:300]}")
                if not is_oom(e):
                    traceback.print_exc()
                if trainer is not None:
                    model = unwrap_peft(_release(trainer))
                else:
                    model = unwrap_peft(model)
                if is_oom(e):
                    break  # compile or not, this micro-batch does not fit
    return {"error": "no setting ran", "tried": tried}, None


def profile_step(trainer, batch, size: str, args) -> None:
    """One more step under the profiler: where the GPU time goes, by operator and by kernel."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        trainer.dpo_step(batch)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    by_op = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=45, max_name_column_width=60)
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    cuda = torch.autograd.DeviceType.CUDA
    kernel_us = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type == cuda)
    text = f"=== {size} profile: {len(events)} kernels, {kernel_us / 1e3:.1f} ms of kernel time\n{by_op}\n"
    print(text, flush=True)
    if args.profile_dir:
        Path(args.profile_dir, f"profile_{size}.txt").write_text(text)


def _release(trainer):
    from vllm_train.fast_path import remove_fast_path

    peft_model = trainer.model
    remove_fast_path(peft_model)
    trainer.optimizer = None
    trainer.model = None
    return peft_model


def run_service(trainer, size: str, args, device: str) -> dict:
    """The trainer service's training path on batch records (no broker: decoded records in, version folder out)."""
    import torch

    from vllm_train.events import KafkaSettings
    from vllm_train.service.config import TrainerServiceConfig
    from vllm_train.service.intake import SeenBatches, take_batch
    from vllm_train.service.trainer_service import TrainerService
    from vllm_train.lora import adapter_sha256

    vocab = trainer.model.get_base_model().config.vocab_size
    n_batches = args.warmup + args.steps
    pairs = make_pairs(n_batches * PAIRS_PER_STEP, vocab, trainer.tokenizer.eos_token_id, seed=99)
    records = []
    for b in range(n_batches):
        chunk = pairs[b * PAIRS_PER_STEP:(b + 1) * PAIRS_PER_STEP]
        records.append({"batch_id": f"bench-{b}", "window_start": 0, "window_end": 1, "pairs": [
            {"pair_id": f"p{b}-{i}", "request_id": f"r{b}-{i}", "base_model": trainer.config.model,
             "prompt": {"messages": None, "text": as_text(p)},
             # encode_completion appends EOS itself: the text stops before it
             "chosen": as_text(c[:-1]), "rejected": as_text(r[:-1]), "chosen_response_id": "c",
             "rejected_response_id": "r", "chosen_adapter_version": None, "rejected_adapter_version": None,
             "source": "PAIRWISE", "weight": 1.0, "feedback_ids": [], "created_at": 0}
            for i, (p, c, r) in enumerate(chunk)]})
    with tempfile.TemporaryDirectory() as root:
        config = TrainerServiceConfig(run_id="gpu-bench", train=trainer.config, adapter_root=Path(root),
                                      kafka=KafkaSettings(client={"bootstrap.servers": "not-used:9092"},
                                                          registry_url="http://not-used"),
                                      heldout_percent=0.0, metrics_port=-1)
        service = TrainerService(config)
        service.trainer = trainer
        service.seen = SeenBatches()
        service.published = trainer.snapshot()
        service.has_published = False
        times, tokens = [], 0
        for record in records:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            result = take_batch(record, base_model=config.train.model, run_id=config.run_id,
                                latest_version=service.last_version, max_staleness=config.train.max_staleness_versions,
                                heldout_percent=config.heldout_percent, seen=service.seen)
            service.window.batch_ids.append(record["batch_id"])
            service._train(record["batch_id"], result.train)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        batch_s = statistics.median(times[args.warmup:])
        publish = []
        for number in (1, 2, 3):
            t0 = time.perf_counter()
            version = service._write_version(number, {"loss": 0.0, "steps": trainer.step, "pairs": trainer.pairs_seen})
            publish.append(time.perf_counter() - t0)
        save_lora, hashes = [], []
        for n in range(3):
            t0 = time.perf_counter()
            info = trainer.save_lora(Path(root) / f"lora-{n}")
            save_lora.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert adapter_sha256(info.path) == info.sha256
            hashes.append(time.perf_counter() - t0)
        adapter_mib = sum(f.stat().st_size for f in Path(info.path).iterdir()) / 2**20
    return {"batches_timed": len(times) - args.warmup, "pairs_per_batch": PAIRS_PER_STEP,
            "median_batch_s": round(batch_s, 4), "pairs_per_s": round(PAIRS_PER_STEP / batch_s, 2),
            "tokens_per_s": round(PAIRS_PER_STEP * 2 * SEQ_TOKENS / batch_s),
            "write_version_s": round(statistics.median(publish), 4),
            "save_lora_s": round(statistics.median(save_lora), 4),
            "sha256_s": round(statistics.median(hashes), 4), "adapter_mib": round(adapter_mib, 2),
            "version_sha256": version["sha256"][:16]}


def run_trl(model, tokenizer, pairs, args, n_params, *, checkpointing: bool, liger: bool, batch: int,
            device: str) -> tuple[dict, object]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class StepEnds(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_end(self, args_, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    steps = args.warmup + args.steps
    data = Dataset.from_dict({"prompt": [as_text(p) for p, _, _ in pairs[:steps * PAIRS_PER_STEP]],
                              "chosen": [" " + as_text(c) for _, c, _ in pairs[:steps * PAIRS_PER_STEP]],
                              "rejected": [" " + as_text(r) for _, _, r in pairs[:steps * PAIRS_PER_STEP]]})
    free_memory()
    timer = StepEnds()
    trainer = None
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(output_dir=out, per_device_train_batch_size=batch,
                           gradient_accumulation_steps=PAIRS_PER_STEP // batch, max_steps=steps,
                           learning_rate=5e-6, lr_scheduler_type="constant", warmup_steps=0, beta=0.1,
                           max_length=SEQ_TOKENS, gradient_checkpointing=checkpointing, use_liger_kernel=liger,
                           bf16=device == "cuda", use_cpu=device != "cuda", report_to="none", save_strategy="no",
                           logging_steps=1000, seed=0, dataloader_num_workers=0, disable_tqdm=True)
        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=list(TARGETS), bias="none",
                          task_type="CAUSAL_LM")
        try:
            trainer = DPOTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                                 peft_config=lora, callbacks=[timer])
            first = trainer.train_dataset[0]
            lengths = (len(first["prompt_ids"]), len(first["chosen_ids"]))
            assert lengths == (PROMPT_TOKENS, SEQ_TOKENS - PROMPT_TOKENS), \
                f"TRL tokenized the pairs to {lengths} tokens, not to what the trainer gets"
            trainer.train()
            times = [b - a for a, b in zip(timer.ends, timer.ends[1:])][args.warmup - 1:]
            result = {"per_device_batch": batch, "gradient_accumulation": PAIRS_PER_STEP // batch,
                      "gradient_checkpointing": checkpointing, "use_liger_kernel": liger,
                      **figures(times, n_params)}
        except Exception as e:  # noqa: BLE001
            why = "out of memory" if is_oom(e) else f"{type(e).__name__}: {e}"
            if not is_oom(e):
                traceback.print_exc()
            result = {"per_device_batch": batch, "gradient_checkpointing": checkpointing, "use_liger_kernel": liger,
                      "error": why[:500], "peak_gib": peak_gib()}
        finally:
            wrapped = trainer.model if trainer is not None else model
            if trainer is not None:
                trainer.model = trainer.model_wrapped = trainer.optimizer = trainer.lr_scheduler = None
                trainer.accelerator.free_memory()
            del trainer
            model = unwrap_peft(wrapped)
            free_memory()
    return result, model


def size_worker(size: str, args) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    row: dict = {"model": f"Qwen2.5-{size} shapes (random weights)", "size": size,
                 "card": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                 "tokens_per_step": PAIRS_PER_STEP * 2 * SEQ_TOKENS, "pairs_per_step": PAIRS_PER_STEP}
    row["versions"] = versions()
    t0 = time.perf_counter()
    model, vocab = build_model(size, device)
    n_params = sum(p.numel() for p in model.parameters())
    row["params"] = n_params
    tokenizer = word_tokenizer(vocab)
    eos = tokenizer.eos_token_id
    steps = args.warmup + args.steps
    pairs = make_pairs(steps * PAIRS_PER_STEP, vocab, eos, seed=0)
    log(f"{size}: {n_params / 1e9:.3f}B parameters built in {time.perf_counter() - t0:.1f} s on {row['card']}")

    systems = args.systems.split(",")
    trl_peak = None
    try:
        model = _systems(row, systems, model, tokenizer, pairs, size, args, n_params, device)
    except Exception as e:  # noqa: BLE001 - a broken harness for one system must not lose the others' figures
        traceback.print_exc()
        row["error"] = f"{type(e).__name__}: {e}"[:500]
    flatten(row)
    return row


def _systems(row, systems, model, tokenizer, pairs, size, args, n_params, device):
    trl_peak = None
    if "trl" in systems:
        t0 = time.perf_counter()
        row["trl"], model = run_trl(model, tokenizer, pairs, args, n_params, checkpointing=True, liger=False,
                                    batch=PAIRS_PER_STEP, device=device)
        trl_peak = row["trl"].get("peak_gib") if "error" not in row["trl"] else None
        log(f"{size} trl default: {_brief(row['trl'])} ({time.perf_counter() - t0:.0f} s)")
    if "ours" in systems:
        t0 = time.perf_counter()
        budget = trl_peak if (trl_peak and device == "cuda" and not args.no_budget) else None
        row["ours"], trainer = run_ours(model, tokenizer, pairs, size, args, n_params, budget, device)
        log(f"{size} ours: {_brief(row['ours'])} ({time.perf_counter() - t0:.0f} s)")
        if trainer is not None:
            if args.service:
                t0 = time.perf_counter()
                try:
                    row["service"] = run_service(trainer, size, args, device)
                except Exception as e:  # noqa: BLE001
                    traceback.print_exc()
                    row["service"] = {"error": f"{type(e).__name__}: {e}"[:500]}
                log(f"{size} service: {row['service']} ({time.perf_counter() - t0:.0f} s)")
            model = unwrap_peft(_release(trainer))
            del trainer
        free_memory()
    if "trl_best" in systems:
        # Checkpointing off at batch 8, else off with accumulation, else on; Liger on. If Liger itself fails (not
        # memory), the same list without it, and the row says why.
        candidates = [(False, PAIRS_PER_STEP), (False, PAIRS_PER_STEP // 2), (False, PAIRS_PER_STEP // 4),
                      (True, PAIRS_PER_STEP)]
        tried = []
        row["trl_best"] = {"error": "no configuration fit", "tried": tried}
        for liger in (True, False):
            for checkpointing, batch in candidates:
                if not liger and checkpointing:
                    continue  # that is TRL's default, measured above
                t0 = time.perf_counter()
                result, model = run_trl(model, tokenizer, pairs, args, n_params, checkpointing=checkpointing,
                                        liger=liger, batch=batch, device=device)
                log(f"{size} trl liger={liger} ckpt={checkpointing} batch={batch}: {_brief(result)} "
                    f"({time.perf_counter() - t0:.0f} s)")
                if "error" not in result:
                    row["trl_best"] = {**result, "tried": tried}
                    break
                tried.append(result)
                if result["error"] != "out of memory":
                    break  # not a memory problem: the other batch sizes would fail the same way
            if "error" not in row["trl_best"]:
                break
    return model


def _brief(r: dict) -> str:
    if "error" in r:
        return f"ERROR {r['error'][:200]}"
    return f"{r['tokens_per_s']} tok/s, step {r['median_step_s']} s, peak {r['peak_gib']} GiB, MFU {r['mfu']}"


def flatten(row: dict) -> None:
    """The issue's top-level keys: ours as tokens_per_s/mfu/peak_gib, TRL default as trl_*, TRL best as trl_best_*."""
    ours, trl, best = row.get("ours", {}), row.get("trl", {}), row.get("trl_best", {})
    for key in ("tokens_per_s", "pairs_per_s", "mfu", "peak_gib", "median_step_s"):
        row[key] = ours.get(key)
        row[f"trl_{key}"] = trl.get(key)
        row[f"trl_best_{key}"] = best.get(key)
    if row["tokens_per_s"] and row["trl_tokens_per_s"]:
        row["speedup_vs_trl"] = round(row["tokens_per_s"] / row["trl_tokens_per_s"], 2)
    if row["tokens_per_s"] and row["trl_best_tokens_per_s"]:
        row["speedup_vs_trl_best"] = round(row["tokens_per_s"] / row["trl_best_tokens_per_s"], 2)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "trl", "liger-kernel", "datasets", "triton"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    try:
        out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001
        out["driver"] = None
    return out


def table(rows: list[dict]) -> str:
    lines = ["| model | ours tok/s | ours peak GiB | ours MFU | TRL default tok/s · peak | TRL best tok/s · peak "
             "(config) | × TRL default | × TRL best | service pairs/s | write version s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        best = r.get("trl_best", {})
        cfg = "" if "error" in best or not best else (
            f"liger, ckpt {'on' if best['gradient_checkpointing'] else 'off'}, "
            f"{best['per_device_batch']}x{best['gradient_accumulation']}")
        f = lambda v, suffix="": "—" if v is None else f"{v}{suffix}"
        svc = r.get("service", {})
        lines.append(f"| {r['size']} | {f(r.get('tokens_per_s'))} | {f(r.get('peak_gib'))} | {f(r.get('mfu'))} | "
                     f"{f(r.get('trl_tokens_per_s'))} · {f(r.get('trl_peak_gib'))} | "
                     f"{f(r.get('trl_best_tokens_per_s'))} · {f(r.get('trl_best_peak_gib'))} ({cfg}) | "
                     f"{f(r.get('speedup_vs_trl'))} | {f(r.get('speedup_vs_trl_best'))} | "
                     f"{f(svc.get('pairs_per_s'))} | {f(svc.get('write_version_s'))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.5B,1.5B,7B")
    parser.add_argument("--systems", default="trl,ours,trl_best")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per system")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="fast path without torch.compile")
    parser.add_argument("--no-service", dest="service", action="store_false")
    parser.add_argument("--no-budget", action="store_true", help="don't hold ours under TRL default's peak")
    parser.add_argument("--profile", action="store_true", help="profile one extra step of ours (CUDA) and print it")
    parser.add_argument("--profile-dir", help="also write the profile tables here")
    parser.add_argument("--out", default=str(HERE / "results" / "dpo_gpu.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    parser.add_argument("--worker-timeout", type=int, default=420)
    parser.add_argument("--deadline", type=int, default=0,
                        help="seconds for the whole run (0: none): no size starts with less than 60 s left")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the first step compiles and allocates)")
    if args.worker:
        row = size_worker(args.worker, args)
        Path(args.worker_out).write_text(json.dumps(row, indent=1))
        return 0

    rows = []
    started = time.monotonic()
    for size in args.sizes.split(","):
        if size not in SHAPES:
            parser.error(f"unknown size {size}; choose from {', '.join(SHAPES)}")
        timeout = args.worker_timeout
        if args.deadline:
            left = args.deadline - (time.monotonic() - started)
            if left < 60:
                log(f"--- {size}: skipped, {left:.0f} s left of the {args.deadline} s deadline")
                rows.append({"size": size, "model": f"Qwen2.5-{size} shapes (random weights)",
                             "error": "not run: deadline"})
                continue
            timeout = int(min(timeout, left - 5))
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            worker_out = f.name
        cmd = [sys.executable, __file__, "--worker", size, "--worker-out", worker_out, "--sizes", size,
               "--systems", args.systems, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        cmd += [] if args.compile else ["--no-compile"]
        cmd += [] if args.service else ["--no-service"]
        cmd += ["--no-budget"] if args.no_budget else []
        cmd += ["--profile"] if args.profile else []
        cmd += ["--profile-dir", args.profile_dir] if args.profile_dir else []
        log(f"--- {size}: {' '.join(cmd[1:])}")
        try:
            proc = subprocess.run(cmd, timeout=timeout)
            row = json.loads(Path(worker_out).read_text()) if proc.returncode == 0 else {
                "size": size, "model": f"Qwen2.5-{size} shapes (random weights)",
                "error": f"worker exit {proc.returncode}"}
        except subprocess.TimeoutExpired:
            row = {"size": size, "model": f"Qwen2.5-{size} shapes (random weights)",
                   "error": f"worker ran past {timeout} s"}
        rows.append(row)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1) + "\n")  # after every size: a later failure keeps what ran
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
