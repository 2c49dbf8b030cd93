"""Shared fixtures: the real embedded stack (Kafka broker + schema registry) for tests marked ``stack``."""

import pytest

from vllm_train.testing.stack import start_local_stack


@pytest.fixture(scope="session")
def stack():
    """A running broker + registry with every topic of the topic table; shared by the whole session."""
    handle = start_local_stack()
    yield handle
    handle.stop()
