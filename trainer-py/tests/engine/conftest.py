"""Fixtures of the engine tests: the tiny model, adapters written by the trainer library, and a real engine server on
a local port: the hf backend on the tiny model by default, or what ``--engine-backend/--engine-model/--engine-device``
choose (e.g. ``--engine-backend vllm --engine-model smollm2`` on a GPU). Helpers live in engine_testing.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine_testing import EngineTarget, HoldingBackend, MadeAdapter, ServerThread, engine_config, make_adapter
from vllm_train.engine.factory import create_backend
from vllm_train.models import resolve_model
from vllm_train.tiny_model import tiny_model_path

torch.set_num_threads(1)  # the machine is shared


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(tiny_model_path(0))


@pytest.fixture(scope="session")
def target(request, tiny_model) -> EngineTarget:
    """The backend, model and device the shared engine runs (command-line options; the hf tiny model by default)."""
    backend = request.config.getoption("--engine-backend")
    model = request.config.getoption("--engine-model")
    return EngineTarget(backend=backend, model=resolve_model(model) if model else tiny_model,
                        device=request.config.getoption("--engine-device"))


@pytest.fixture(scope="session")
def base_model(target) -> str:
    return target.model


@pytest.fixture(scope="session")
def adapter_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="session")
def adapters(base_model, adapter_root) -> dict[str, MadeAdapter]:
    """Two different adapters of the engine's model inside the adapter root."""
    return {name: make_adapter(base_model, adapter_root / "run-1" / name, seed=seed)
            for name, seed in (("v000001", 1), ("v000002", 2))}


@pytest.fixture(scope="module")
def engine(target, adapter_root) -> ServerThread:
    """The module's engine; requests whose id starts with ``hold`` stay in flight until ``engine.backend.release``
    is set (see :class:`HoldingBackend`)."""
    config = engine_config(target, adapter_root)
    server = ServerThread(config, backend=HoldingBackend(create_backend(config)))
    yield server
    server.stop()
