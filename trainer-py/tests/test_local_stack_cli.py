"""`./pipeline up|down|status` (LocalStack): real processes start, answer, refuse taken ports, and all stop."""

import os
import socket
import subprocess

import pytest

from vllm_train.testing.stack import java_classpath

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def local_stack(command: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["java", "-Dlog4j2.configurationFile=classpath:vllm_train/stack/log4j2-cli.properties", "-cp", java_classpath(),
                           "io.vllmtrain.stack.LocalStack", command], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_up_status_down_leaves_nothing_running(tmp_path):
    ports = {"VT_STACK_KAFKA_PORT": free_port(), "VT_STACK_CONTROLLER_PORT": free_port(), "VT_STACK_REGISTRY_PORT": free_port(),
             "VT_STACK_REGISTRY_MANAGEMENT_PORT": free_port()}
    env = {"VT_STACK_DIR": str(tmp_path / "stack"), "VT_STACK_REGISTRY_STORAGE": "mem", **{k: str(v) for k, v in ports.items()}}
    pids = []
    try:
        up = local_stack("up", env)
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{ports['VT_STACK_KAFKA_PORT']}" in up.stdout
        assert f"http://127.0.0.1:{ports['VT_STACK_REGISTRY_PORT']}" in up.stdout
        pids = [int((tmp_path / "stack" / f"{name}.pid").read_text()) for name in ("kafka", "registry")]
        assert all(pid_alive(p) for p in pids)

        status = local_stack("status", env)
        assert status.returncode == 0 and "kafka     running" in status.stdout and "registry  running" in status.stdout

        # A second stack that wants the same broker port gets a clear error, and starts nothing.
        clash = local_stack("up", {**env, "VT_STACK_DIR": str(tmp_path / "other")})
        assert clash.returncode == 1
        assert f"port {ports['VT_STACK_KAFKA_PORT']} (Kafka broker) is already in use" in clash.stderr
        assert "VT_STACK_KAFKA_PORT" in clash.stderr
    finally:
        down = local_stack("down", env)
    assert down.returncode == 0
    assert not any(pid_alive(p) for p in pids)
    assert not any(port_open(p) for p in ports.values())
    after = local_stack("status", env)
    assert after.returncode == 3 and "stopped" in after.stdout
