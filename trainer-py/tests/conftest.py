"""Shared fixtures: the real embedded stack (Kafka broker + schema registry) for tests marked ``stack``."""

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("vllm-train engine")
    group.addoption("--engine-backend", default="hf", choices=("hf", "vllm"),
                    help="backend of the shared engine in tests/engine/test_engine_server.py (default hf; vllm needs "
                         "a GPU and vLLM)")
    group.addoption("--engine-model", default=None,
                    help="its base model (default: the tiny model; e.g. smollm2 with --engine-backend vllm)")
    group.addoption("--engine-device", default="cpu", help="hf backend device (default cpu)")

from vllm_train.testing.stack import start_local_stack


@pytest.fixture(scope="session")
def stack():
    """A running broker + registry with every topic of the topic table; shared by the whole session."""
    handle = start_local_stack()
    yield handle
    handle.stop()
