"""Fixtures of the trainer tests: the cached tiny model and a modest CPU footprint (the machine is shared)."""

import pytest
import torch

from vllm_train.tiny_model import tiny_model_path

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """Path of the cached tiny model (seed 0), built on first use."""
    return str(tiny_model_path(0))
