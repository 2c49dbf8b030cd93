"""Starts each component of the loop as the user would, with a config file written for this run."""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vllm_train.demo.processes import DemoError, ProcessGroup, free_port
from vllm_train.testing.stack import REPO_ROOT, LocalStackHandle, start_local_stack

def module_classpath(module: str) -> str:
    """The module's jar and its dependencies (copied to target/lib by the Maven build)."""
    target = REPO_ROOT / module / "target"
    for jar in (target / f"{module}.jar", target / f"{module}-0.1.0-SNAPSHOT.jar"):
        if jar.exists():
            return f"{jar}:{target / 'lib'}/*"
    raise DemoError(f"no {module} jar in {target}: build the Java modules first (./pipeline setup)")


def grpc_serving(address: str) -> bool:
    try:
        with grpc.insecure_channel(address) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            return r.status == 200
    except OSError:
        return False


def write_properties(path: Path, values: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


@dataclass
class DemoSettings:
    """The knobs of one demo run. The defaults make the tiny model learn within minutes on 2 cores;
    :func:`real_model_settings` holds those of a real chat model (:mod:`vllm_train.demo.__main__` picks)."""

    run_dir: Path
    model: Path
    engines: int = 2
    backend: str = "hf"                 # engine backend: hf (CPU or GPU) or vllm (GPU)
    device: str = "cpu"                 # engines (hf) and trainer
    batch_size: int = 8
    batch_max_wait_s: float = 5.0
    publish_every_batches: int = 4
    publish_every_seconds: float = 20.0
    learning_rate: float = 3e-3
    rank: int = 8
    beta: float = 0.1
    max_prompt_length: int = 64         # trainer: prompt tokens kept (the chat template included)
    max_length: int = 128               # trainer: prompt + completion tokens kept
    gpu_memory_utilization: float = 0.25  # vllm: each engine's share of the GPU
    enforce_eager: bool = True          # vllm: no CUDA graphs (engines start in ~1 min instead of ~2.5)


@dataclass
class Endpoints:
    inference: str
    engines: list[str]
    trainer_metrics: str
    streams_metrics: str


def real_model_settings(run_dir: Path, model: Path, backend: str, device: str) -> DemoSettings:
    """A real chat model (e.g. SmolLM2-135M-Instruct) learning the ``concise`` preference: longer prompts (its chat
    template carries a system prompt) and answers, LoRA r16, a version every 2 batches. On a GPU feedback comes ~10x
    faster than on a CPU, so the learning rate is lower there (2e-5 against 1e-4: about the same distance moved per
    minute; trainer-py/bench/GPU_E2E.md has the runs)."""
    gpu = device == "cuda"
    return DemoSettings(run_dir=run_dir, model=model, backend=backend, device=device, batch_size=8,
                        batch_max_wait_s=3.0 if gpu else 5.0, publish_every_batches=2,
                        publish_every_seconds=10.0 if gpu else 30.0, learning_rate=2e-5 if gpu else 1e-4, rank=16,
                        beta=0.1, max_prompt_length=128, max_length=320)


def engine_flags(s: DemoSettings) -> list[str]:
    """The backend-specific flags of ``vllm-train serve`` for this run."""
    if s.backend == "vllm":
        return ["--backend", "vllm", "--dtype", "bfloat16", "--gpu-memory-utilization", str(s.gpu_memory_utilization),
                "--max-model-len", "2048", "--max-lora-rank", str(max(16, s.rank)),
                "--enforce-eager" if s.enforce_eager else "--no-enforce-eager"]
    return ["--backend", "hf", "--device", s.device]


def start_stack(run_dir: Path) -> LocalStackHandle:
    """The demo's own broker + registry (fresh, in-memory registry, free ports), never a stack from the caller's
    environment: the demo's counts and topics must be its own."""
    try:
        return start_local_stack(run_dir / "stack", reuse_env=False)
    except RuntimeError as e:
        raise DemoError(f"the local stack did not start: {e}") from None


def start_components(group: ProcessGroup, s: DemoSettings, stack: LocalStackHandle, say) -> Endpoints:
    conf = s.run_dir / "conf"
    adapters = s.run_dir / "adapters"
    adapters.mkdir(parents=True, exist_ok=True)
    model = str(s.model)
    kafka = {"kafka.bootstrap.servers": stack.bootstrap_servers, "registry.url": stack.registry_url}
    # Only this run's settings reach the children: no VT_* from the caller's shell leaks into their config.
    clean_env = {"VT_KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers, "VT_REGISTRY_URL": stack.registry_url}

    streams_metrics = free_port()
    say("streams    starting (Kafka Streams: pairs + batches)")
    group.start("streams", ["java", "-Xmx384m", "-cp", module_classpath("streams"),
                                      "io.vllmtrain.streams.StreamsApp", "--config", str(write_properties(
                                          conf / "streams.properties", {
                                              **kafka, "streams.application.id": f"demo-{s.run_dir.name}",
                                              "streams.state.dir": s.run_dir / "streams-state",
                                              "streams.batch.size": s.batch_size,
                                              "streams.batch.max.wait": f"{int(s.batch_max_wait_s * 1000)}ms",
                                              "streams.metrics.port": streams_metrics}))], env=clean_env)

    engine_addresses = []
    engine_children = []
    for i in range(s.engines):
        port = free_port()
        engine_addresses.append(f"127.0.0.1:{port}")
        say(f"engine-{i}   starting ({s.backend} backend, {Path(model).name}) on 127.0.0.1:{port}")
        engine_children.append(group.start(f"engine-{i}", [
            sys.executable, "-m", "vllm_train.cli", "serve", "--model", model, "--port", str(port),
            "--adapter-root", str(adapters), "--replica", f"engine-{i}", *engine_flags(s)],
            env={**clean_env, "OMP_NUM_THREADS": "1"}))
    for child, address in zip(engine_children, engine_addresses):
        group.wait_until(child, lambda a=address: grpc_serving(a), f"serving on {address}",
                         timeout=600 if s.backend == "vllm" else 180)

    inference_port = free_port()
    say(f"inference  starting (public gRPC API) on 127.0.0.1:{inference_port}")
    inference = group.start("inference", ["java", "-Xmx384m", "-cp", module_classpath("inference"),
                                          "io.vllmtrain.inference.InferenceMain", "--config", str(write_properties(
                                              conf / "inference.properties", {
                                                  **kafka, "server.host": "127.0.0.1", "server.port": inference_port,
                                                  "metrics.enabled": "false", "base.model": model,
                                                  "engine.addresses": ",".join(engine_addresses),
                                                  "engine.health.interval.ms": 500, "rollout.keep": 3}))],
                            env=clean_env)
    group.wait_until(inference, lambda: grpc_serving(f"127.0.0.1:{inference_port}"), "serving")

    trainer_metrics = free_port()
    say(f"trainer    starting (continuous DPO on a LoRA adapter, {s.device})")
    trainer_conf = conf / "trainer.toml"
    trainer_conf.write_text("\n".join([
        f'run.id = "demo-{s.run_dir.name}"', f'adapter.root = "{adapters}"', f"metrics.port = {trainer_metrics}",
        'metrics.host = "127.0.0.1"', f'kafka.bootstrap.servers = "{stack.bootstrap_servers}"',
        f'registry.url = "{stack.registry_url}"', "gate.margin = 0.25", "gate.min.pairs = 4", "heldout.percent = 10",
        "[train]", f'model = "{model}"', f"rank = {s.rank}", f"alpha = {2 * s.rank}", f"learning_rate = {s.learning_rate}",
        'lr_schedule = "constant"', "warmup_steps = 0", f"beta = {s.beta}", f"micro_batch_size = {s.batch_size}",
        f"max_prompt_length = {s.max_prompt_length}", f"max_length = {s.max_length}", f'device = "{s.device}"',
        f'dtype = "{"float32" if s.device == "cpu" else "auto"}"', "cpu_threads = 1",
        f"publish_every_batches = {s.publish_every_batches}", f"publish_every_seconds = {s.publish_every_seconds}",
        ""]))
    trainer = group.start("trainer", [sys.executable, "-m", "vllm_train.cli", "trainer", "--config", str(trainer_conf)],
                          env={**clean_env, "OMP_NUM_THREADS": "1"})
    group.wait_until(trainer, lambda: http_ok(f"http://127.0.0.1:{trainer_metrics}/metrics"), "exporting metrics")
    group.check()
    return Endpoints(f"127.0.0.1:{inference_port}", engine_addresses, f"http://127.0.0.1:{trainer_metrics}/metrics",
                     f"http://127.0.0.1:{streams_metrics}/metrics")
