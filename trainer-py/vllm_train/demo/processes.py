"""The demo's child processes: started with their output in log files, watched, and always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class _gone:
    """Ignores ProcessLookupError: the process group is already gone."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is ProcessLookupError


class DemoError(RuntimeError):
    """Something the demo needs did not start; the message says what and where its log is."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inherited_env() -> dict[str, str]:
    """The caller's environment without VT_* settings: each child gets only this run's configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VT_")}


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path


@dataclass
class ProcessGroup:
    """Named child processes, each in its own session so that one signal stops it and its children."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**inherited_env(), **(env or {})}, cwd=cwd, start_new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def check(self) -> None:
        for c in self.children:
            if c.proc.poll() is not None:
                raise DemoError(f"{c.name} exited with code {c.proc.returncode}; last lines of {c.log}:\n{tail(c.log)}")

    def wait_until(self, child: Child, ready, what: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                raise DemoError(f"{child.name} exited before {what} (code {child.proc.returncode}); last lines of "
                                f"{child.log}:\n{tail(child.log)}")
            if ready():
                return
            time.sleep(0.3)
        raise DemoError(f"{child.name}: not {what} after {timeout:.0f} s; see {child.log}:\n{tail(child.log)}")

    def stop(self, name: str, grace: float = 20.0) -> None:
        """SIGTERM to one child (then SIGKILL after ``grace``); it is no longer watched."""
        for c in [c for c in self.children if c.name == name]:
            if c.proc.poll() is None:
                with _gone():
                    os.killpg(c.proc.pid, signal.SIGTERM)
                try:
                    c.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    with _gone():
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    c.proc.wait(timeout=10)
            self.children.remove(c)

    def stop_all(self, grace: float = 20.0) -> None:
        """SIGTERM to every child (newest first, so clients stop before the servers they use), then SIGKILL."""
        for c in reversed(self.children):
            if c.proc.poll() is None:
                try:
                    os.killpg(c.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    c.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
        for c in self.children:
            if c.proc.poll() is None:
                try:
                    os.killpg(c.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                c.proc.wait(timeout=10)
        self.children.clear()
