"""The broker + registry that Python tests run against.

``./pipeline test`` starts one stack and exports ``VT_KAFKA_BOOTSTRAP_SERVERS`` / ``VT_REGISTRY_URL``; those are
used when set. Otherwise :func:`start_local_stack` runs the project's LocalStack (a real Kafka broker in KRaft mode
and a real Apicurio Registry) on free ports in a temporary folder, and :meth:`LocalStackHandle.stop` stops it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vllm_train.events.settings import KafkaSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
STACK_JAR = REPO_ROOT / "stack" / "target" / "stack-0.1.0-SNAPSHOT.jar"


def java_classpath() -> str:
    if not STACK_JAR.exists():
        raise RuntimeError(f"{STACK_JAR} is missing: build the Java modules first (./pipeline setup)")
    return f"{STACK_JAR}:{STACK_JAR.parent / 'lib'}/*"


def run_java(main_class: str, *args: str, env: dict | None = None, timeout: float = 180) -> str:
    """Runs a main class of the stack module and returns its stdout; raises with its output when it fails."""
    proc = subprocess.run(["java", "-Dlog4j2.configurationFile=classpath:vllm_train/stack/log4j2-cli.properties", "-cp", java_classpath(), main_class,
                           *args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{main_class} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@dataclass
class LocalStackHandle:
    bootstrap_servers: str
    registry_url: str
    stack_dir: Path | None = None

    @property
    def settings(self) -> KafkaSettings:
        return KafkaSettings.of(self.bootstrap_servers, self.registry_url)

    @property
    def env(self) -> dict[str, str]:
        return {"VT_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, "VT_REGISTRY_URL": self.registry_url}

    def stop(self) -> None:
        if self.stack_dir is not None:
            run_java("io.vllmtrain.stack.LocalStack", "down", env={"VT_STACK_DIR": str(self.stack_dir)})


def start_local_stack(stack_dir: Path | None = None, reuse_env: bool = True) -> LocalStackHandle:
    """The stack named by ``VT_KAFKA_BOOTSTRAP_SERVERS``/``VT_REGISTRY_URL`` when set (and ``reuse_env``), else a
    fresh one (in-memory registry, free ports) with its state in ``stack_dir`` (a temp folder by default)."""
    bootstrap, registry = os.environ.get("VT_KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("VT_REGISTRY_URL")
    if reuse_env and bootstrap and registry:
        return LocalStackHandle(bootstrap, registry.rstrip("/"))
    stack_dir = stack_dir or Path(tempfile.mkdtemp(prefix="vt-pytest-stack-"))
    env = {"VT_STACK_DIR": str(stack_dir), "VT_STACK_KAFKA_PORT": "0", "VT_STACK_CONTROLLER_PORT": "0", "VT_STACK_REGISTRY_PORT": "0",
           "VT_STACK_REGISTRY_MANAGEMENT_PORT": "0", "VT_STACK_REGISTRY_STORAGE": "mem"}
    try:
        run_java("io.vllmtrain.stack.LocalStack", "up", env=env)
    except Exception:
        run_java("io.vllmtrain.stack.LocalStack", "down", env=env)
        raise
    values = {}
    for line in (stack_dir / "stack.env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = value
    return LocalStackHandle(values["VT_KAFKA_BOOTSTRAP_SERVERS"], values["VT_REGISTRY_URL"], stack_dir)
