"""The GPU end-to-end measurements of trainer-py/bench/GPU_E2E.md: real vLLM engines serving a real chat model
(SmolLM2-135M-Instruct) with LoRA adapters written by this project's trainer, measured against vLLM driven directly.

``--phase engine``: an engine worker process (``vllm-train serve --backend vllm``) and, in this process, vLLM's
``AsyncLLM`` with the same engine arguments (``vllm_backend.engine_args_kwargs``), both resident on the GPU:

- **agreement** with HF + PEFT (bf16, same GPU) on the same adapter: for each chat prompt, HF's greedy 32-token
  continuation; vLLM scores prompt + continuation teacher-forced (``prompt_logprobs=1``): the share of continuation
  positions where vLLM's top-1 token is HF's, and the mean |log-prob difference| of HF's tokens; plus the share of
  prompts whose 32-token greedy output vLLM reproduces exactly, and the share whose first token it does.
- **adapter loads**: ``LoadAdapter`` on the engine worker (verification + vLLM's ``add_lora``) against ``add_lora``
  on the direct engine, each on fresh copies of one r16 all-linear adapter (new name, new directory, new id).
- **throughput**: 64 concurrent clients, the same requests (prompt ~256 tokens, 128 new tokens, temperature 1, a
  seed each) through the engine worker over gRPC and straight into ``AsyncLLM``, on the base model and on an
  adapter, alternating, ``--rounds`` times each (after one warm-up run of each path).

``--phase rollout``: the local stack (Kafka + registry), the inference service and two engine workers; 64 clients
call ``Generate`` (greedy) through the inference service while adapter versions are published one after another to
``llm.adapter-versions``. Every reply is checked against its label by a greedy fingerprint of each version (its
first 16 characters on a fixed prompt, all distinct); for each version the time from its record to the service
reporting it active and to the first reply it served.

Writes ``results/gpu_e2e.json`` (merged with what other phases wrote; ``--out`` elsewhere) and prints a JSON line
last. ``--backend hf --device cpu --model tiny`` runs the same plumbing on a CPU (a dry run: "direct" is then PEFT in
this process, and agreement is trivially exact).

  python trainer-py/bench/gpu_e2e.py --phase engine            # on the GPU machine, see GPU_E2E.md
  python trainer-py/bench/gpu_e2e.py --phase rollout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results" / "gpu_e2e.json"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def log(message: str) -> None:
    print(message, flush=True)


def p50(values) -> float:
    return float(statistics.median(values)) if values else float("nan")


# --- adapters ------------------------------------------------------------------------------------------------------

def write_adapter(model: str, out: Path, *, seed: int, scale: float, rank: int = 16) -> tuple[Path, str]:
    """An r``rank`` all-linear LoRA saved with the trainer library: A as PEFT initialises it, B ~ N(0, scale²), so
    the adapter moves the model by an amount ``scale`` sets (0.002: a mild change, like a few DPO steps; 0.05: every
    answer different from the base model's from the first token)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from vllm_train.lora import save_lora

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(LORA_TARGETS),
                                           lora_dropout=0.0))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, scale)
    info = save_lora(peft, out, base_model_name=model)
    return Path(out), info.sha256


def copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- prompts -------------------------------------------------------------------------------------------------------

def chat_prompts(n: int) -> list[str]:
    from vllm_train.demo.preference import CONCISE

    questions = list(CONCISE.prompts) + list(CONCISE.heldout_prompts)
    return questions[:n]


def render(tokenizer, question: str) -> list[int]:
    """The token ids the engine renders for a one-message chat (PromptRenderer's rule)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def long_text_prompts(tokenizer, n: int, tokens: int = 256) -> list[str]:
    """n distinct text prompts of about ``tokens`` tokens (questions followed by filler from the others)."""
    questions = chat_prompts(96)
    out = []
    for i in range(n):
        words, j = [], i
        while len(tokenizer(" ".join(words))["input_ids"]) < tokens:
            words += questions[j % len(questions)].split()
            j += 7
        out.append(" ".join(words))
    return out


# --- the engine under test (a worker process) and the direct engine (in this process) ------------------------------

class EngineWorker:
    """``vllm-train serve`` as a child process, with an asyncio gRPC client."""

    def __init__(self, model: str, adapter_root: Path, backend: str, device: str, log_path: Path, *,
                 gpu_memory_utilization: float, enforce_eager: bool, replica: str = "engine-under-test"):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        flags = ["--backend", backend, "--model", model, "--port", str(self.port), "--adapter-root",
                 str(adapter_root), "--replica", replica, "--max-lora-rank", "16", "--max-loras", "8"]
        if backend == "vllm":
            flags += ["--dtype", "bfloat16", "--gpu-memory-utilization", str(gpu_memory_utilization),
                      "--max-model-len", "2048", "--enforce-eager" if enforce_eager else "--no-enforce-eager"]
        else:
            flags += ["--device", device]
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "vllm_train.cli", "serve", *flags], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    async def wait_serving(self, timeout: float = 900) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine worker exited with {self.proc.returncode}; see {self.log.name}")
            try:
                async with grpc.aio.insecure_channel(self.address) as ch:
                    reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            except grpc.RpcError:
                pass
            await asyncio.sleep(0.5)
        raise RuntimeError(f"engine worker not serving after {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


class DirectVLLM:
    """vLLM's AsyncLLM in this process, made with the engine worker's own engine arguments."""

    def __init__(self, model: str, *, gpu_memory_utilization: float, enforce_eager: bool):
        from vllm_train.engine.config import EngineConfig
        from vllm_train.engine.vllm_backend import engine_args_kwargs

        self.config = EngineConfig(model=model, backend="vllm", adapter_root=tempfile.gettempdir(), port=0,
                                   dtype="bfloat16", gpu_memory_utilization=gpu_memory_utilization,
                                   max_model_len=2048, enforce_eager=enforce_eager, max_lora_rank=16, max_loras=8)
        self.kwargs = engine_args_kwargs(self.config)
        self.llm = None
        self.next_id = 1

    async def start(self) -> None:
        from vllm_train.compat import vllm_api

        self.api = vllm_api()
        args = self.api.AsyncEngineArgs(**self.kwargs)
        self.llm = await asyncio.to_thread(self.api.AsyncLLM.from_engine_args, args)
        await self.llm.list_loras()

    def lora(self, path: Path):
        request = self.api.LoRARequest(lora_name=f"direct-{self.next_id}", lora_int_id=self.next_id,
                                       lora_path=str(path))
        self.next_id += 1
        return request

    async def add_lora_ms(self, path: Path) -> tuple[float, object]:
        request = self.lora(path)
        started = time.perf_counter()
        await self.llm.add_lora(request)
        return (time.perf_counter() - started) * 1000, request

    async def final(self, prompt_ids, params, lora=None):
        request_id = uuid.uuid4().hex
        last = None
        async for output in self.llm.generate({"prompt_token_ids": list(prompt_ids)}, params, request_id,
                                              lora_request=lora):
            last = output
        return last

    def params(self, **kw):
        return self.api.SamplingParams(output_kind=self.api.RequestOutputKind.FINAL_ONLY, **kw)

    def close(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()


# --- phase: engine -------------------------------------------------------------------------------------------------

def hf_reference(model: str, adapter: Path, prompts: list[list[int]], new_tokens: int, device: str):
    """HF + PEFT greedy continuations (up to ``new_tokens``, EOS included when it comes first) and their log-probs
    (teacher-forced), bf16 on the GPU."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    m = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device).eval()
    m = PeftModel.from_pretrained(m, str(adapter)).eval()
    out = []
    with torch.inference_mode():
        for ids in prompts:
            x = torch.tensor([ids], device=device)
            gen = m.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                             max_new_tokens=new_tokens, pad_token_id=0)
            cont = gen[0, len(ids):].tolist()
            full = torch.tensor([ids + cont], device=device)
            logits = m(input_ids=full).logits[0, len(ids) - 1:-1].float()
            lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(cont, device=device)[:, None])[:, 0]
            out.append((cont, lp.tolist()))
    del m
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


async def agreement(direct: DirectVLLM, model: str, adapter: Path, n_prompts: int, device: str) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = [render(tokenizer, q) for q in chat_prompts(n_prompts)]
    reference = hf_reference(model, adapter, prompts, 32, device)
    _, lora = await direct.add_lora_ms(adapter)
    agree = positions = 0
    diffs, exact, first = [], 0, 0
    for ids, (cont, hf_lp) in zip(prompts, reference):
        scored = await direct.final(ids + cont, direct.params(max_tokens=1, temperature=0.0, prompt_logprobs=1),
                                    lora)
        for j, token in enumerate(cont):
            entry = scored.prompt_logprobs[len(ids) + j]
            top = min(entry.items(), key=lambda kv: kv[1].rank)[0]
            agree += top == token
            positions += 1
            diffs.append(abs(entry[token].logprob - hf_lp[j]))
        greedy = await direct.final(ids, direct.params(max_tokens=32, temperature=0.0), lora)
        mine = list(greedy.outputs[0].token_ids)
        exact += mine == cont
        first += mine[:1] == cont[:1]
    result = dict(prompts=len(prompts), positions=positions,
                  teacher_forced_top1_agreement=round(agree / positions, 4),
                  teacher_forced_mean_abs_logprob_diff=round(sum(diffs) / len(diffs), 4),
                  teacher_forced_max_abs_logprob_diff=round(max(diffs), 4),
                  greedy_match_rate=round(exact / len(prompts), 4), first_token_match_rate=round(first / len(prompts), 4))
    log(f"agreement: {result}")
    return result


async def adapter_loads(worker: EngineWorker, direct: DirectVLLM, source: Path, root: Path, repeats: int) -> dict:
    import grpc

    from vllm_train.lora import adapter_sha256
    from vllm_train.proto.v1 import engine_pb2, engine_pb2_grpc

    sha = adapter_sha256(source)
    direct_ms, load_ms, engine_ms = [], [], []
    async with grpc.aio.insecure_channel(worker.address) as ch:
        stub = engine_pb2_grpc.EngineServiceStub(ch)
        for i in range(repeats):
            path = copy_adapter(source, root / "loads" / f"direct-{i}")
            ms, request = await direct.add_lora_ms(path)
            direct_ms.append(ms)
            await direct.llm.remove_lora(request.lora_int_id)
            path = copy_adapter(source, root / "loads" / f"engine-{i}")
            started = time.perf_counter()
            reply = await stub.LoadAdapter(engine_pb2.LoadAdapterRequest(name=f"load/v{i:06d}", uri=path.as_uri(),
                                                                         sha256=sha), timeout=120)
            load_ms.append((time.perf_counter() - started) * 1000)
            engine_ms.append(reply.load_ms)
            await stub.UnloadAdapter(engine_pb2.UnloadAdapterRequest(name=f"load/v{i:06d}"), timeout=120)
    result = dict(repeats=repeats, load_adapter_ms_p50=round(p50(load_ms), 1),
                  load_adapter_engine_ms_p50=round(p50(engine_ms), 1), vllm_add_lora_ms_p50=round(p50(direct_ms), 1),
                  load_adapter_ms=[round(x, 1) for x in load_ms], vllm_add_lora_ms=[round(x, 1) for x in direct_ms])
    log(f"adapter loads: {result}")
    return result


async def throughput(worker: EngineWorker, direct: DirectVLLM, prompts: list[str], prompt_ids: list[list[int]],
                     adapter: Path, root: Path, concurrency: int, max_tokens: int, rounds: int) -> dict:
    import grpc

    from vllm_train.lora import adapter_sha256
    from vllm_train.proto.v1 import common_pb2, engine_pb2, engine_pb2_grpc

    engine_adapter = copy_adapter(adapter, root / "throughput" / "engine")
    _, direct_lora = await direct.add_lora_ms(copy_adapter(adapter, root / "throughput" / "direct"))
    async with grpc.aio.insecure_channel(worker.address) as ch:
        stub = engine_pb2_grpc.EngineServiceStub(ch)
        await stub.LoadAdapter(engine_pb2.LoadAdapterRequest(name="tput/v000001", uri=engine_adapter.as_uri(),
                                                             sha256=adapter_sha256(engine_adapter)), timeout=120)

        async def through_engine(i: int, with_lora: bool) -> int:
            reply = await stub.Generate(engine_pb2.EngineGenerateRequest(
                prompt=common_pb2.Prompt(text=prompts[i]), adapter="tput/v000001" if with_lora else "",
                sampling=common_pb2.SamplingParams(n=1, temperature=1.0, max_tokens=max_tokens, seed=i)), timeout=600)
            return reply.completions[0].completion_tokens

        async def through_direct(i: int, with_lora: bool) -> int:
            out = await direct.final(prompt_ids[i], direct.params(n=1, temperature=1.0, max_tokens=max_tokens, seed=i),
                                     direct_lora if with_lora else None)
            return len(out.outputs[0].token_ids)

        async def run(fn, with_lora: bool) -> float:
            queue = list(range(len(prompts)))
            total = 0

            async def client():
                nonlocal total
                while queue:
                    total += await fn(queue.pop(), with_lora)

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            return total / (time.perf_counter() - started)

        await run(through_direct, False)   # warm-up of both paths (first requests compile and allocate)
        await run(through_engine, False)
        rates: dict[str, list[float]] = {}
        for _ in range(rounds):
            for with_lora in (False, True):
                for name, fn in (("direct", through_direct), ("engine", through_engine)):
                    key = f"{name}_{'lora' if with_lora else 'base'}"
                    rates.setdefault(key, []).append(await run(fn, with_lora))
                    log(f"throughput {key}: {rates[key][-1]:,.0f} tokens/s")
    mean = {k: sum(v) / len(v) for k, v in rates.items()}
    result = dict(concurrency=concurrency, requests=len(prompts), max_tokens=max_tokens,
                  tokens_per_s={k: round(v, 1) for k, v in mean.items()},
                  engine_over_direct_base=round(mean["engine_base"] / mean["direct_base"], 4),
                  engine_over_direct_lora=round(mean["engine_lora"] / mean["direct_lora"], 4),
                  lora_tokens_per_s_ratio=round(mean["engine_lora"] / mean["engine_base"], 4),
                  direct_lora_tokens_per_s_ratio=round(mean["direct_lora"] / mean["direct_base"], 4))
    log(f"throughput: {result}")
    return result


async def phase_engine(args, work: Path) -> dict:
    from transformers import AutoTokenizer

    model = args.model_path
    root = work / "adapters"
    root.mkdir(parents=True)
    log("writing adapters (r16, all linear layers)")
    mild, _ = write_adapter(model, root / "mild", seed=1, scale=args.agreement_scale)
    strong, _ = write_adapter(model, root / "strong", seed=2, scale=0.02)
    worker = EngineWorker(model, root, args.backend, args.device, work / "engine-worker.log",
                          gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=args.enforce_eager)
    direct = DirectVLLM(model, gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=args.enforce_eager)
    try:
        started = time.monotonic()
        await asyncio.gather(worker.wait_serving(), direct.start())   # both start at once
        log(f"engine worker and direct AsyncLLM ready in {time.monotonic() - started:.0f} s")
        result = {"engine_start_s": round(time.monotonic() - started, 1)}
        result["agreement"] = await agreement(direct, model, args.adapter or mild, args.prompts, args.device)
        result["loads"] = await adapter_loads(worker, direct, strong, root, args.load_repeats)
        tokenizer = AutoTokenizer.from_pretrained(model)
        texts = long_text_prompts(tokenizer, args.requests)
        ids = [tokenizer(t)["input_ids"] for t in texts]
        result["throughput"] = await throughput(worker, direct, texts, ids, mild, root, args.concurrency,
                                                args.max_tokens, args.rounds)
        result["enforce_eager"] = args.enforce_eager
        return result
    finally:
        worker.stop()
        direct.close()


# --- phase: rollout ------------------------------------------------------------------------------------------------

def phase_rollout(args, work: Path) -> dict:
    import grpc
    from confluent_kafka import Producer

    from vllm_train.demo.components import DemoSettings, engine_flags, grpc_serving, module_classpath, write_properties
    from vllm_train.demo.processes import ProcessGroup, free_port
    from vllm_train.events import AvroCodec, topic
    from vllm_train.lora import adapter_sha256
    from vllm_train.proto.v1 import (adapter_pb2, adapter_pb2_grpc, common_pb2, engine_pb2, engine_pb2_grpc,
                                     inference_pb2, inference_pb2_grpc)
    from vllm_train.testing.stack import start_local_stack

    model = args.model_path
    root = work / "adapters"
    run = "swap-run"
    versions = args.versions
    log(f"writing {versions} adapter versions with distinct greedy fingerprints")
    made = {}
    for n in range(1, versions + 1):
        path, sha = write_adapter(model, root / run / f"v{n:06d}", seed=100 + n, scale=0.05)
        made[f"{run}/v{n:06d}"] = (n, path, sha)
    group = ProcessGroup(work / "logs")
    stack = start_local_stack(work / "stack", reuse_env=False)
    try:
        settings = DemoSettings(run_dir=work, model=Path(model), backend=args.backend, device=args.device,
                                gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=args.enforce_eager)
        engines = []
        for i in range(2):
            port = free_port()
            engines.append(f"127.0.0.1:{port}")
            group.start(f"engine-{i}", [sys.executable, "-m", "vllm_train.cli", "serve", "--model", model, "--port",
                                        str(port), "--adapter-root", str(root), "--replica", f"engine-{i}",
                                        "--max-loras", "8", *engine_flags(settings)])
        for child, address in zip(group.children, engines):
            group.wait_until(child, lambda a=address: grpc_serving(a), f"serving on {address}", timeout=900)
        # Fingerprints: each version's greedy answer on one engine, loaded and unloaded again; a version whose
        # fingerprint another already has is written again, moved further from the base model, until all differ.
        prompt = "Tell me something about the ocean."
        request = lambda **kw: common_pb2.SamplingParams(n=1, temperature=0.0, max_tokens=8, **kw)  # noqa: E731
        fingerprints = {}
        with grpc.insecure_channel(engines[0]) as ch:
            stub = engine_pb2_grpc.EngineServiceStub(ch)
            loads = iter(range(1, 10_000))

            def ask(vid: str | None) -> str:
                adapter = ""
                if vid is not None:
                    adapter = f"fp-{next(loads)}"
                    stub.LoadAdapter(engine_pb2.LoadAdapterRequest(name=adapter, uri=made[vid][1].as_uri(),
                                                                   sha256=made[vid][2]), timeout=120)
                text = stub.Generate(engine_pb2.EngineGenerateRequest(
                    prompt=common_pb2.Prompt(messages=[common_pb2.ChatMessage(role="user", content=prompt)]),
                    sampling=request(), adapter=adapter), timeout=120).completions[0].text
                if adapter:
                    stub.UnloadAdapter(engine_pb2.UnloadAdapterRequest(name=adapter), timeout=120)
                return text[:16]

            fingerprints["base"] = ask(None)
            for attempt in range(4):
                for vid in made:
                    if vid not in fingerprints:
                        fingerprints[vid] = ask(vid)
                taken: dict[str, str] = {}
                clashes = [vid for vid, fp in fingerprints.items() if taken.setdefault(fp, vid) != vid]
                if not clashes or attempt == 3:
                    break
                for vid in clashes:
                    n = made[vid][0]
                    shutil.rmtree(made[vid][1])
                    path, sha = write_adapter(model, made[vid][1], seed=1000 * (attempt + 1) + n,
                                              scale=0.05 * 2 ** (attempt + 1))
                    made[vid] = (n, path, sha)
                    del fingerprints[vid]
        keys = fingerprints
        distinct = len(set(keys.values())) == len(keys)
        log(f"fingerprints distinct: {distinct} ({len(set(keys.values()))} of {len(keys)})")

        inference_port = free_port()
        inference = group.start("inference", ["java", "-Xmx512m", "-cp", module_classpath("inference"),
                                              "io.vllmtrain.inference.InferenceMain", "--config", str(write_properties(
                                                  work / "conf" / "inference.properties", {
                                                      "kafka.bootstrap.servers": stack.bootstrap_servers,
                                                      "registry.url": stack.registry_url, "server.host": "127.0.0.1",
                                                      "server.port": inference_port, "metrics.enabled": "false",
                                                      "base.model": model, "engine.addresses": ",".join(engines),
                                                      "engine.health.interval.ms": 500, "rollout.keep": 3}))])
        address = f"127.0.0.1:{inference_port}"
        group.wait_until(inference, lambda: grpc_serving(address), "serving")

        stop = threading.Event()
        replies: list[tuple[float, str, str]] = []
        failures: list[str] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            with grpc.insecure_channel(address) as ch:
                stub = inference_pb2_grpc.InferenceServiceStub(ch)
                while not stop.is_set():
                    try:
                        reply = stub.Generate(inference_pb2.GenerateRequest(
                            prompt=common_pb2.Prompt(messages=[common_pb2.ChatMessage(role="user", content=prompt)]),
                            sampling=request(), user_id=f"swap-client-{i}"), timeout=120)
                        with lock:
                            replies.append((time.time(), reply.adapter_version or "base", reply.responses[0].text))
                    except grpc.RpcError as e:
                        with lock:
                            failures.append(f"{e.code().name}: {e.details()}")

        codec = AvroCodec(stack.settings)
        producer = Producer(stack.settings.producer_conf(**{"transactional.id": f"vllm-train-trainer-{run}"}))
        producer.init_transactions(30)
        pool = ThreadPoolExecutor(args.concurrency)
        for i in range(args.concurrency):
            pool.submit(client, i)
        time.sleep(3)
        timings = []
        with grpc.insecure_channel(address) as ch:
            adapters = adapter_pb2_grpc.AdapterServiceStub(ch)
            for vid, (n, path, sha) in made.items():
                record = {"version_id": vid, "run_id": run, "version": n, "base_model": model,
                          "uri": f"{run}/v{n:06d}", "sha256": sha, "rank": 16, "alpha": 32.0,
                          "target_modules": list(LORA_TARGETS), "use_rslora": False,
                          "parent_version": f"{run}/v{n - 1:06d}" if n > 1 else None,
                          "metrics": {"loss": 0.5, "reward_accuracy": 1.0, "reward_margin": 0.1, "steps": n,
                                      "pairs": 8 * n}, "batch_ids": [], "offsets": [],
                          "created_at": int(time.time() * 1000)}
                producer.begin_transaction()
                producer.produce(topic("adapter_versions"), key=vid.encode(),
                                 value=codec.encode("AdapterVersion", topic("adapter_versions"), record))
                producer.commit_transaction(30)
                committed = time.time()
                active_at = None
                deadline = committed + 60
                while time.time() < deadline:
                    if adapters.GetActive(adapter_pb2.GetActiveRequest(), timeout=5).version_id == vid:
                        active_at = time.time()
                        break
                    time.sleep(0.005)
                time.sleep(args.swap_interval)
                with lock:
                    served = [t for t, v, _ in replies if v == vid]
                first_reply = min(served) if served else None
                timings.append(dict(version=vid, record_to_active_s=None if active_at is None else
                                    round(active_at - committed, 3), record_to_first_reply_s=None if first_reply is None
                                    else round(first_reply - committed, 3)))
                log(f"swap {n}: {timings[-1]}")
        stop.set()
        pool.shutdown(wait=True)
        producer.flush(10)
        del producer  # before the broker stops, or librdkafka reports every failed reconnect
        mislabelled = [(v, text) for _, v, text in replies if keys.get(v) != text[:16]
                       and any(text[:16] == fp for other, fp in keys.items() if other != v)]
        unmatched = [(v, text) for _, v, text in replies if text[:16] not in keys.values()]
        active = [t["record_to_active_s"] for t in timings if t["record_to_active_s"] is not None]
        first = [t["record_to_first_reply_s"] for t in timings if t["record_to_first_reply_s"] is not None]
        result = dict(swaps=sum(t["record_to_active_s"] is not None for t in timings), versions_published=len(made),
                      concurrency=args.concurrency, replies=len(replies), failed_requests=len(failures),
                      failures=failures[:10], mislabelled_replies=len(mislabelled), mislabelled=mislabelled[:5],
                      unmatched_replies=len(unmatched), fingerprints_distinct=distinct,
                      record_to_serving_s_p50=round(p50(active), 3), record_to_first_reply_s_p50=round(p50(first), 3),
                      record_to_serving_s_max=round(max(active), 3) if active else None, timings=timings)
        log(f"rollout: { {k: v for k, v in result.items() if k != 'timings'} }")
        return result
    finally:
        group.stop_all()
        stack.stop()


# --- main ----------------------------------------------------------------------------------------------------------

def card(device: str) -> str:
    if device != "cuda":
        import platform

        return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    import torch

    return torch.cuda.get_device_name(0)


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("vllm", "torch", "transformers", "peft"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", choices=("engine", "rollout"), required=True)
    p.add_argument("--model", default="smollm2", help="model (default smollm2, converted first if needed)")
    p.add_argument("--backend", default="vllm", choices=("vllm", "hf"))
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--adapter", type=Path, help="adapter for the agreement test (default: a mild random one)")
    p.add_argument("--agreement-scale", type=float, default=0.002, help="B's standard deviation of that adapter")
    p.add_argument("--prompts", type=int, default=64, help="chat prompts of the agreement test (default 64)")
    p.add_argument("--load-repeats", type=int, default=10)
    p.add_argument("--requests", type=int, default=256, help="requests per throughput run (default 256)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2, help="throughput: rounds of the four runs (default 2)")
    p.add_argument("--versions", type=int, default=21, help="versions published in the rollout phase (default 21)")
    p.add_argument("--swap-interval", type=float, default=1.0, help="seconds between versions (after activation)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.25)
    p.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=False,
                   help="vLLM without CUDA graphs (starts faster, decodes slower; default: CUDA graphs on)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"results file to merge into (default {RESULTS})")
    p.add_argument("--work", type=Path, help="working folder (default: a temp folder, removed at the end)")
    args = p.parse_args(argv)

    from vllm_train.models import CATALOGUE, ensure_model, resolve_model

    if args.model in CATALOGUE:
        ensure_model(args.model)
    args.model_path = resolve_model(args.model)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if args.phase == "engine":
        result = asyncio.run(phase_engine(args, work))
    else:
        result = phase_rollout(args, work)
    result["seconds"] = round(time.monotonic() - started, 1)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    existing.update(card=card(args.device), model=Path(args.model_path).name, vllm_version=versions()["vllm"],
                    versions=versions(), date=time.strftime("%Y-%m-%d"))
    existing[args.phase] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({args.phase: {k: v for k, v in result.items() if k not in ("timings",)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
