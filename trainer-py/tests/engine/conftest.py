"""Fixtures of the engine tests: the tiny model, adapters written by the trainer library, and a real engine server
(hf backend) on a local port, run in a thread of this process with its own event loop."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import torch

from vllm_train.engine.config import EngineConfig
from vllm_train.engine.server import EngineServer
from vllm_train.proto.v1 import common_pb2, engine_pb2, engine_pb2_grpc
from vllm_train.tiny_model import tiny_model_path

torch.set_num_threads(1)  # the machine is shared


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(tiny_model_path(0))


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


@pytest.fixture(scope="session")
def adapter_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="session")
def adapters(tiny_model, adapter_root) -> dict[str, MadeAdapter]:
    """Two different adapters of the tiny model inside the adapter root."""
    return {name: make_adapter(tiny_model, adapter_root / "run-1" / name, seed=seed)
            for name, seed in (("v000001", 1), ("v000002", 2))}


class ServerThread:
    """An EngineServer on its own event loop in a background thread; ``stub`` talks to it over a real channel."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="engine-loop", daemon=True)
        self.thread.start()
        self.server = EngineServer(config)
        self.port = self.call(self.server.start())
        self.address = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.address)
        self.stub = engine_pb2_grpc.EngineServiceStub(self.channel)

    def call(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float = 5.0) -> None:
        self.channel.close()
        self.call(self.server.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def engine_config(tiny_model: str, adapter_root: Path, **overrides) -> EngineConfig:
    values = dict(model=tiny_model, backend="hf", port=0, adapter_root=adapter_root, replica="test-replica",
                  device="cpu", max_loras=4, max_lora_rank=16, shutdown_grace_s=5.0)
    values.update(overrides)
    return EngineConfig(**values)


@pytest.fixture(scope="module")
def engine(tiny_model, adapter_root) -> ServerThread:
    server = ServerThread(engine_config(tiny_model, adapter_root))
    yield server
    server.stop()


def text_request(text: str, *, adapter: str = "", max_tokens: int = 12, temperature: float = 0.0, n: int = 1,
                 seed: int | None = None, stop=(), request_id: str = "") -> engine_pb2.EngineGenerateRequest:
    sampling = common_pb2.SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, stop=list(stop))
    if seed is not None:
        sampling.seed = seed
    return engine_pb2.EngineGenerateRequest(request_id=request_id, prompt=common_pb2.Prompt(text=text),
                                            sampling=sampling, adapter=adapter)


def load(stub, name: str, adapter: MadeAdapter, uri: str | None = None, sha256: str | None = None):
    return stub.LoadAdapter(engine_pb2.LoadAdapterRequest(name=name, uri=uri or adapter.path.as_uri(),
                                                          sha256=sha256 or adapter.sha256))
