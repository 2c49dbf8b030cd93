"""Engine worker benchmark (``./pipeline bench engine``): adapter load latency, generate throughput, and the cost of
the gRPC layer over a direct call, for the hf backend on the tiny model (CPU) or Qwen2.5-0.5B/1.5B shapes with random
weights (GPU).

It starts a real engine server in this process on a local port, writes rank-``--rank`` adapters with the trainer
library into a temporary adapter root, and measures:

- adapter load latency: LoadAdapter request → the new name served (a 1-token Generate on it returned), and the
  engine's own ``load_ms``;
- generate throughput: completion tokens per second and request latency with 1 and ``--concurrency`` clients, on the
  base model and on an adapter;
- layer costs per request (same prompt, greedy, ``--overhead-tokens`` tokens): raw ``model.generate`` on the model
  thread, the hf backend called directly (tracker, streaming plumbing), and the full gRPC Generate (channel, service
  validation, prompt rendering, lease). Interleaved, medians reported.

Prints readable lines as it goes; the last line is one JSON object with every number.

  python trainer-py/bench/engine.py                                   # tiny model, CPU
  python trainer-py/bench/engine.py --model qwen2.5-0.5b --device cuda --rank 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import torch

from vllm_train.engine.config import EngineConfig
from vllm_train.engine.generation import GenerationRequest, SamplingSpec
from vllm_train.engine.server import EngineServer
from vllm_train.proto.v1 import common_pb2, engine_pb2, engine_pb2_grpc

# Qwen2.5 shapes (config.json of the released models); weights are random here, no hub is needed.
QWEN_SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768),
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(message: str) -> None:
    print(message, flush=True)


# --- setup -------------------------------------------------------------------------------------------------------

def model_dir(name: str, work: Path, device: str) -> str:
    """The tiny model, a Qwen2.5 shape with random weights written to ``work``, or any model directory."""
    if name == "tiny":
        from vllm_train.tiny_model import tiny_model_path

        return str(tiny_model_path(0))
    if name not in QWEN_SHAPES:
        return name
    from transformers import AutoModelForCausalLM, Qwen2Config

    from vllm_train.tiny_model import EOS_TOKEN, PAD_TOKEN, build_tokenizer

    out = work / name
    tokenizer = build_tokenizer()  # any ids it produces are valid in the larger vocabulary
    pad_id, eos_id = tokenizer.convert_tokens_to_ids([PAD_TOKEN, EOS_TOKEN])
    config = Qwen2Config(**QWEN_SHAPES[name], tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=1e6,
                         pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=None, use_sliding_window=False,
                         architectures=["Qwen2ForCausalLM"])
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    return str(out)


def write_adapter(base: str, out: Path, rank: int, seed: int, device: str) -> tuple[Path, str]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from vllm_train.lora import save_lora

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LORA_TARGETS,
                                                  init_lora_weights=False, lora_dropout=0.0))
    info = save_lora(peft_model, out, base_model_name=base)
    del model, peft_model
    return out, info.sha256


class InProcessEngine:
    """The real EngineServer on its own event loop thread; ``stub`` is a gRPC client over a local port."""

    def __init__(self, config: EngineConfig):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = EngineServer(config)
        self.port = self.call(self.server.start())
        self.address = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.address)
        self.stub = engine_pb2_grpc.EngineServiceStub(self.channel)

    def call(self, coro, timeout=3600):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        self.channel.close()
        self.call(self.server.stop(5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def request(prompt: str, max_tokens: int, adapter: str = "", temperature: float = 0.0):
    return engine_pb2.EngineGenerateRequest(prompt=common_pb2.Prompt(text=prompt), adapter=adapter,
                                            sampling=common_pb2.SamplingParams(temperature=temperature,
                                                                               max_tokens=max_tokens))


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# --- measurements ------------------------------------------------------------------------------------------------

def adapter_load_latency(engine: InProcessEngine, adapters: list[tuple[Path, str]], repeats: int, prompt: str):
    request_to_served, engine_load = [], []
    for i in range(repeats):
        path, sha = adapters[i % len(adapters)]
        name = f"bench/load-{i}"
        started = time.perf_counter()
        reply = engine.stub.LoadAdapter(engine_pb2.LoadAdapterRequest(name=name, uri=path.as_uri(), sha256=sha))
        engine.stub.Generate(request(prompt, 1, adapter=name))
        request_to_served.append((time.perf_counter() - started) * 1000)
        engine_load.append(reply.load_ms)
        engine.stub.UnloadAdapter(engine_pb2.UnloadAdapterRequest(name=name))
    return {"request_to_served_ms_median": statistics.median(request_to_served),
            "request_to_served_ms_max": max(request_to_served),
            "engine_load_ms_median": statistics.median(engine_load), "samples": repeats}


def throughput(engine: InProcessEngine, prompt: str, max_tokens: int, requests: int, concurrency: int,
               adapter: str = ""):
    latencies, tokens = [], []

    def one(_):
        started = time.perf_counter()
        reply = engine.stub.Generate(request(prompt, max_tokens, adapter=adapter, temperature=1.0))
        latencies.append(time.perf_counter() - started)
        tokens.append(sum(c.completion_tokens for c in reply.completions))

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": requests, "adapter": adapter or "base",
            "completion_tokens": sum(tokens), "tokens_per_s": sum(tokens) / wall, "requests_per_s": requests / wall,
            "latency_ms_p50": percentile(latencies, 0.5) * 1000, "latency_ms_p95": percentile(latencies, 0.95) * 1000}


def layer_costs(engine: InProcessEngine, prompt: str, max_tokens: int, repeats: int):
    """Per-request latency of raw model.generate, the backend called directly, and gRPC Generate (interleaved)."""
    backend = engine.server.backend
    prompt_ids = tuple(backend.tokenizer(prompt)["input_ids"])
    spec = SamplingSpec(temperature=0.0, max_tokens=max_tokens)

    def raw_generate():
        # the same generation config the backend builds, without its per-token tracker, streaming and leases
        from transformers import GenerationConfig

        gen = GenerationConfig(do_sample=False, max_new_tokens=max_tokens, eos_token_id=list(backend._eos_ids),
                               pad_token_id=backend._pad_id, repetition_penalty=1.0)
        ids = torch.tensor([list(prompt_ids)], device=backend.device)
        with torch.inference_mode():
            backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen)

    async def direct_backend():
        generation = GenerationRequest("bench", prompt_ids, spec, None)
        async for _ in backend.generate(generation):
            pass

    modes = {
        "raw_model_generate": lambda: engine.call(backend._on_model_thread(raw_generate)),
        "backend_direct": lambda: engine.call(direct_backend()),
        "grpc_generate": lambda: engine.stub.Generate(request(prompt, max_tokens)),
    }
    samples = {mode: [] for mode in modes}
    for mode, run in modes.items():  # warm-up
        run()
    for _ in range(repeats):
        for mode, run in modes.items():
            started = time.perf_counter()
            run()
            samples[mode].append((time.perf_counter() - started) * 1000)
    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    return {"max_tokens": max_tokens, "repeats": repeats, **{f"{m}_ms_median": v for m, v in medians.items()},
            "grpc_overhead_ms": medians["grpc_generate"] - medians["backend_direct"],
            "backend_overhead_ms": medians["backend_direct"] - medians["raw_model_generate"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny, qwen2.5-0.5b, qwen2.5-1.5b (random weights) or a "
                                                        "model directory")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank of the benchmark adapters")
    parser.add_argument("--prompt-words", type=int, default=32, help="prompt length in words (≈ tokens)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per request in the throughput runs")
    parser.add_argument("--requests", type=int, default=24, help="requests per throughput run")
    parser.add_argument("--concurrency", type=int, default=8, help="clients in the concurrent throughput run")
    parser.add_argument("--load-repeats", type=int, default=5, help="adapter loads measured")
    parser.add_argument("--overhead-tokens", type=int, nargs="+", default=[1, 16], help="max_tokens of the "
                                                                                      "layer-cost runs")
    parser.add_argument("--overhead-repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: small models gain "
                                                               "nothing from more, and shared machines lose)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    results: dict = {"benchmark": "engine", "backend": "hf", "model": args.model, "device": args.device,
                     "rank": args.rank, "torch": torch.__version__, "python": platform.python_version(),
                     "cpu_threads": torch.get_num_threads(), "host_cpus": os.cpu_count()}
    if args.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        base = model_dir(args.model, work, args.device)
        root = work / "adapters"
        adapters = [write_adapter(base, root / "bench" / f"v{i:06d}", args.rank, seed=i, device=args.device)
                    for i in range(1, 3)]
        log(f"setup: model {args.model} and {len(adapters)} rank-{args.rank} adapters in "
            f"{time.perf_counter() - started:.1f} s")
        prompt = " ".join((["the", "red", "fox", "likes", "green", "tea"] * args.prompt_words)[:args.prompt_words])

        config = EngineConfig(model=base, backend="hf", device=args.device, port=0, adapter_root=root,
                              max_lora_rank=max(16, 1 << (args.rank - 1).bit_length()), max_loras=4,
                              replica="bench", max_tokens_limit=max(4096, args.max_tokens))
        started = time.perf_counter()
        engine = InProcessEngine(config)
        results["engine_start_s"] = time.perf_counter() - started
        log(f"engine: {args.model} on {args.device} SERVING in {results['engine_start_s']:.1f} s")
        try:
            engine.stub.Generate(request(prompt, 4))  # warm-up
            results["adapter_load"] = adapter_load_latency(engine, adapters, args.load_repeats, prompt)
            log("adapter load: request → served {request_to_served_ms_median:.1f} ms median "
                "(engine load_ms {engine_load_ms_median:.1f})".format(**results["adapter_load"]))

            path, sha = adapters[0]
            engine.stub.LoadAdapter(engine_pb2.LoadAdapterRequest(name="bench/served", uri=path.as_uri(),
                                                                  sha256=sha))
            results["throughput"] = []
            for adapter in ("", "bench/served"):
                for concurrency in (1, args.concurrency):
                    run = throughput(engine, prompt, args.max_tokens, args.requests, concurrency, adapter)
                    results["throughput"].append(run)
                    log("generate {adapter} ×{concurrency}: {tokens_per_s:.0f} tokens/s, {requests_per_s:.2f} "
                        "req/s, p50 {latency_ms_p50:.0f} ms, p95 {latency_ms_p95:.0f} ms".format(**run))

            results["layer_costs"] = []
            for tokens in args.overhead_tokens:
                costs = layer_costs(engine, prompt, tokens, args.overhead_repeats)
                results["layer_costs"].append(costs)
                log("{max_tokens} tokens: raw generate {raw_model_generate_ms_median:.2f} ms, backend "
                    "{backend_direct_ms_median:.2f} ms, gRPC {grpc_generate_ms_median:.2f} ms → gRPC layer "
                    "+{grpc_overhead_ms:.2f} ms, backend +{backend_overhead_ms:.2f} ms".format(**costs))
        finally:
            engine.stop()
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
