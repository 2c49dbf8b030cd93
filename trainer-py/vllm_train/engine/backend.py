"""The contract between the engine service and a model runtime: :class:`EngineBackend` (the factory that picks one is
:mod:`vllm_train.engine.factory`).

A backend runs the model and nothing else: the service has already validated the request, rendered the prompt,
verified the adapter and taken a lease on it, so a backend never sees a name it was not told to load, and is never
asked to unload an adapter a request is still using.
"""

from __future__ import annotations

import abc
from typing import AsyncIterator

from vllm_train.engine.generation import CompletionDelta, GenerationRequest
from vllm_train.engine.registry import AdapterRecord


class EngineBackend(abc.ABC):
    """One base model with hot-loadable LoRA adapters. All methods are called from the server's event loop."""

    name: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Loads the base model; the engine reports SERVING only after this returns."""

    @property
    @abc.abstractmethod
    def max_context(self) -> int:
        """Longest prompt + completion, in tokens."""

    @abc.abstractmethod
    async def load_adapter(self, adapter: AdapterRecord) -> None:
        """Makes a verified adapter directory servable under ``adapter``; raises an EngineError to refuse it."""

    @abc.abstractmethod
    async def unload_adapter(self, adapter: AdapterRecord) -> None:
        """Frees an adapter no request uses any more."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[CompletionDelta]:
        """Streams the deltas of the request's n completions; closing the iterator early aborts the request."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Releases the model and any worker threads or processes."""

