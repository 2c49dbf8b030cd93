"""``vllm-train serve`` as a process: configuration errors, start-up to SERVING, graceful shutdown on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine_testing import text_request
from vllm_train.proto.v1 import engine_pb2_grpc


def serve(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vllm_train.cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def wait_for_line(process: subprocess.Popen, pattern: str, timeout: float = 120) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(seen)}")


def test_a_bad_configuration_exits_2_naming_every_problem(tmp_path):
    process = serve("--adapter-root", str(tmp_path / "missing"), env={"VT_ENGINE_MAX_LORA_RANK": "7"})
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "model is required" in output and "adapter_root must be an existing directory" in output
    assert "max_lora_rank must be one of" in output and "VT_ENGINE_MAX_LORA_RANK" in output


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(tiny_model, tmp_path):
    process = serve("--model", tiny_model, "--port", "0", "--adapter-root", str(tmp_path), "--device", "cpu",
                    env={"VT_ENGINE_SHUTDOWN_GRACE_S": "60"})
    try:
        port = int(wait_for_line(process, r"SERVING on port (\d+)").group(1))
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        stub = engine_pb2_grpc.EngineServiceStub(channel)
        stream = stub.GenerateStream(text_request("the red fox", max_tokens=1500))
        first = next(stream)

        process.send_signal(signal.SIGTERM)
        wait_for_line(process, r"shutting down \(1 requests in flight")
        refused = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            engine_pb2_grpc.EngineServiceStub(refused).Generate(text_request("the red fox"), timeout=10)
            raise AssertionError("a new request was accepted during shutdown")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            refused.close()

        chunks = [first, *stream]
        assert chunks[-1].finish_reason == "length" and chunks[-1].completion_tokens == 1500
        channel.close()
        assert process.wait(timeout=60) == 0
        wait_for_line(process, r"stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
