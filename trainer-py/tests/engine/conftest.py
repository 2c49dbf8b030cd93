"""Fixtures of the engine tests: the tiny model, adapters written by the trainer library, and a real engine server
(hf backend) on a local port. Helpers live in engine_testing.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine_testing import MadeAdapter, ServerThread, engine_config, make_adapter
from vllm_train.tiny_model import tiny_model_path

torch.set_num_threads(1)  # the machine is shared


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(tiny_model_path(0))


@pytest.fixture(scope="session")
def adapter_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="session")
def adapters(tiny_model, adapter_root) -> dict[str, MadeAdapter]:
    """Two different adapters of the tiny model inside the adapter root."""
    return {name: make_adapter(tiny_model, adapter_root / "run-1" / name, seed=seed)
            for name, seed in (("v000001", 1), ("v000002", 2))}


@pytest.fixture(scope="module")
def engine(tiny_model, adapter_root) -> ServerThread:
    server = ServerThread(engine_config(tiny_model, adapter_root))
    yield server
    server.stop()
