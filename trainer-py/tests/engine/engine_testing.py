"""Helpers of the engine tests: adapters made with the trainer library, an in-process engine server on a real local
port, request builders."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
import torch

from vllm_train.engine.backend import EngineBackend
from vllm_train.engine.config import EngineConfig
from vllm_train.engine.server import EngineServer
from vllm_train.proto.v1 import common_pb2, engine_pb2, engine_pb2_grpc


@dataclass(frozen=True)
class EngineTarget:
    """What the shared engine of the tests runs (tests/conftest.py's --engine-* options)."""

    backend: str = "hf"
    model: str = ""
    device: str = "cpu"

    @property
    def exact(self) -> bool:
        """Whether greedy outputs are bit-reproducible across batch compositions. The hf backend runs every request
        alone; vLLM batches them, and bf16 kernels of other batch shapes can flip near-ties (seen: SmolLM2 5 of 8
        32-token outputs identical to HF, first tokens 8 of 8)."""
        return self.backend == "hf"


@dataclass(frozen=True)
class MadeAdapter:
    path: Path
    sha256: str
    rank: int


def make_adapter(base_model: str, out: Path, *, seed: int, rank: int = 8, base_model_name: str | None = None,
                 target_modules=("q_proj", "v_proj")) -> MadeAdapter:
    """A LoRA adapter with random (non-zero) A and B, saved with the trainer library's ``save_lora``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from vllm_train.lora import save_lora

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(target_modules),
                                                  init_lora_weights=False, lora_dropout=0.0))
    info = save_lora(peft_model, out, base_model_name=base_model_name or base_model)
    return MadeAdapter(path=Path(out), sha256=info.sha256, rank=info.rank)


class ServerThread:
    """An EngineServer on its own event loop in a background thread; ``stub`` talks to it over a real channel."""

    def __init__(self, config: EngineConfig, load_model: bool = True, backend=None):
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="engine-loop", daemon=True)
        self.thread.start()
        self.server = EngineServer(config, backend)
        self.port = self.call(self.server.start() if load_model else self.server.bind())
        self.address = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.address)
        self.stub = engine_pb2_grpc.EngineServiceStub(self.channel)

    def call(self, coro, timeout: float = 600):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def service_state(self, adapter: str) -> str | None:
        """The registry state of an adapter (loading, ready, draining) or None when absent."""
        view = self.server.service.registry.get(adapter)
        return None if view is None else view.state.value

    def stop(self, grace: float = 5.0) -> None:
        self.channel.close()
        self.call(self.server.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class HoldingBackend(EngineBackend):
    """A real backend, except that a request whose id starts with ``hold`` stays in flight after its first delta
    until the test sets ``release``: its lease and stream stay open while the model is free for other work, which is
    how a long request looks to the service."""

    def __init__(self, inner: EngineBackend):
        self.inner = inner
        self.name = inner.name
        self.release = threading.Event()

    async def start(self) -> None:
        await self.inner.start()

    @property
    def max_context(self) -> int:
        return self.inner.max_context

    async def load_adapter(self, adapter) -> None:
        await self.inner.load_adapter(adapter)

    async def unload_adapter(self, adapter) -> None:
        await self.inner.unload_adapter(adapter)

    async def generate(self, request):
        first = True
        async for delta in self.inner.generate(request):
            yield delta
            while first and request.request_id.startswith("hold") and not self.release.is_set():
                await asyncio.sleep(0.005)
            first = False

    async def close(self) -> None:
        await self.inner.close()


def engine_config(target: EngineTarget | str, adapter_root: Path, **overrides) -> EngineConfig:
    """A test engine's config: ``target`` an :class:`EngineTarget`, or a model folder for the hf backend on CPU."""
    if isinstance(target, str):
        target = EngineTarget(model=target)
    values = dict(model=target.model, backend=target.backend, port=0, adapter_root=adapter_root,
                  replica="test-replica", device=target.device, max_loras=4, max_lora_rank=16, shutdown_grace_s=5.0)
    if target.backend == "vllm":
        # A small model on a shared GPU: a slice of its memory, no CUDA graphs (start in ~1 min instead of ~2.5).
        values.update(dtype="bfloat16", gpu_memory_utilization=0.3, enforce_eager=True, max_model_len=4096)
    values.update(overrides)
    return EngineConfig(**values)


def same_greedy(a: str, b: str, exact: bool) -> bool:
    """Whether two greedy completions of one request are the same answer: equal on an exact backend; on a batching
    backend (see :attr:`EngineTarget.exact`) equal for their first 16 characters, a fingerprint that tells adapters
    apart without depending on near-ties late in the text."""
    return a == b if exact else a[:16] == b[:16]


def text_request(text: str, *, adapter: str = "", max_tokens: int = 12, temperature: float = 0.0, n: int = 1,
                 seed: int | None = None, stop=(), request_id: str = "") -> engine_pb2.EngineGenerateRequest:
    sampling = common_pb2.SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, stop=list(stop))
    if seed is not None:
        sampling.seed = seed
    return engine_pb2.EngineGenerateRequest(request_id=request_id, prompt=common_pb2.Prompt(text=text),
                                            sampling=sampling, adapter=adapter)


def status_of(call) -> grpc.StatusCode:
    """The status a gRPC call ends with (OK if it succeeds); streams are read to the end."""
    try:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "ByteSize"):
            list(result)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def variant_adapter(source: MadeAdapter, out: Path, *, config_changes: dict | None = None,
                    tensors=None) -> MadeAdapter:
    """A copy of ``source`` with edited adapter_config.json fields and/or tensors (a function of the tensor dict),
    with its digest recomputed, so that exactly the edited property is what an engine can object to."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from vllm_train.lora import adapter_sha256

    shutil.copytree(source.path, out)
    if config_changes:
        config = json.loads((out / "adapter_config.json").read_text())
        config.update(config_changes)
        (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    if tensors is not None:
        weights = out / "adapter_model.safetensors"
        save_file(tensors(load_file(str(weights))), str(weights), metadata={"format": "pt"})
    return MadeAdapter(path=out, sha256=adapter_sha256(out), rank=source.rank)


def load(stub, name: str, adapter: MadeAdapter, uri: str | None = None, sha256: str | None = None):
    return stub.LoadAdapter(engine_pb2.LoadAdapterRequest(name=name, uri=uri or adapter.path.as_uri(),
                                                          sha256=sha256 or adapter.sha256))
