"""Picks the :class:`~vllm_train.engine.backend.EngineBackend` an engine config names (kept apart from the contract,
so that backend modules import the contract and nothing imports back)."""

from __future__ import annotations

from vllm_train.engine.backend import EngineBackend
from vllm_train.engine.config import EngineConfig


def create_backend(config: EngineConfig) -> EngineBackend:
    if config.backend == "hf":
        from vllm_train.engine.hf_backend import HFBackend

        return HFBackend(config)
    if config.backend == "vllm":
        from vllm_train.engine.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")
