"""The vllm backend: vLLM's ``AsyncLLM`` on a GPU, through vLLM's public API only, every name from
:func:`vllm_train.compat.vllm_api` (the one place vLLM is imported, behind the version gate).

- Start: ``AsyncLLM.from_engine_args(AsyncEngineArgs(model, enable_lora=True, max_loras, max_lora_rank,
  max_cpu_loras, ...))``. ``max_cpu_loras`` is the engine's ``max_loras`` (adapters loaded at once), so vLLM never
  evicts an adapter behind the registry's back; vLLM's ``max_loras`` (adapters in one GPU batch) is
  ``max_loras_per_batch``.
- LoadAdapter: ``add_lora(LoRARequest(name, int_id, path))`` preloads the verified directory; every request on it
  carries the same ``LoRARequest``. Each load has a new ``int_id`` (the registry never reuses one), so vLLM's
  adapter and prefix caches can never mix two versions.
- UnloadAdapter: ``remove_lora(int_id)``, once no request uses it.
- Generate: ``generate({"prompt_token_ids": ids}, SamplingParams(...), request_id, lora_request=...)``: the prompt
  is rendered and tokenized by the service with the model's HF tokenizer (the one vLLM loads for HF models; the same
  ids as the hf backend), passed as a ``TokensPrompt``-shaped dict. Streams ask vLLM for ``DELTA`` outputs, unary
  requests for ``FINAL_ONLY`` (see :data:`OUTPUT_KINDS`). Closing the stream early aborts the vLLM request (vLLM
  does that when its generator is closed).

Every keyword and field used is produced by the small functions below, which the conformance test
(tests/engine/test_vllm_conformance.py) checks against the pinned vLLM wheel's source, since vLLM cannot be
installed on a CPU machine.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, AsyncIterator

from vllm_train.engine.backend import EngineBackend
from vllm_train.engine.config import EngineConfig
from vllm_train.engine.errors import FailedPrecondition, Unavailable
from vllm_train.engine.generation import CompletionDelta, GenerationRequest, SamplingSpec
from vllm_train.engine.registry import AdapterRecord

log = logging.getLogger(__name__)

# The AsyncLLM methods this backend calls (the conformance test also scans this file for any others).
ASYNC_LLM_METHODS = ("from_engine_args", "list_loras", "generate", "add_lora", "remove_lora", "shutdown")
# Fields read from vLLM's outputs.
REQUEST_OUTPUT_FIELDS = ("outputs",)
COMPLETION_OUTPUT_FIELDS = ("index", "text", "token_ids", "finish_reason")
# vLLM's finish reasons → the engine's (stop, length, abort). "repetition" only occurs when repetition detection is
# requested, which this backend never does; "error" is vLLM's retryable request-level failure, answered UNAVAILABLE.
FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "abort", "repetition": "stop"}
VLLM_RETRYABLE_ERROR = "error"
# GenerationRequest.stream -> the RequestOutputKind asked for. A stream takes DELTA outputs (only new text and token
# ids per step, merged by vLLM when the reader falls behind); unary Generate takes FINAL_ONLY (one output with every
# completion when all are done), so no per-token Python work runs for it at all.
OUTPUT_KINDS = {True: "DELTA", False: "FINAL_ONLY"}


def engine_args_kwargs(config: EngineConfig) -> dict[str, Any]:
    """Keyword arguments of ``AsyncEngineArgs`` for this engine."""
    kwargs: dict[str, Any] = dict(
        model=config.model,
        served_model_name=config.served_model_name,
        dtype=config.dtype,
        seed=config.seed,
        enable_lora=True,
        max_lora_rank=config.max_lora_rank,
        max_loras=config.max_loras_per_batch,
        max_cpu_loras=config.max_loras,
        gpu_memory_utilization=config.gpu_memory_utilization,
        enforce_eager=config.enforce_eager,
        disable_log_stats=True,
    )
    if config.max_model_len:
        kwargs["max_model_len"] = config.max_model_len
    return kwargs


def sampling_params_kwargs(spec: SamplingSpec, output_kind: Any = None) -> dict[str, Any]:
    """Keyword arguments of ``SamplingParams`` for one request (vLLM's own semantics are the engine's: see
    :mod:`vllm_train.engine.generation`); ``output_kind`` a ``RequestOutputKind`` member (see OUTPUT_KINDS)."""
    kwargs = dict(n=spec.n, temperature=spec.temperature, top_p=spec.top_p, max_tokens=spec.max_tokens,
                  seed=spec.seed, stop=list(spec.stop) or None)
    if output_kind is not None:
        kwargs["output_kind"] = output_kind
    return kwargs


def lora_request_kwargs(adapter: AdapterRecord) -> dict[str, Any]:
    """Keyword arguments of ``LoRARequest`` for an adapter: the same for its preload and for every request on it."""
    return dict(lora_name=adapter.name, lora_int_id=adapter.int_id, lora_path=str(adapter.path))


def tokens_prompt(prompt_token_ids) -> dict[str, Any]:
    """A ``vllm.inputs.TokensPrompt`` (a TypedDict, so a plain dict is one)."""
    return {"prompt_token_ids": list(prompt_token_ids)}


class VLLMBackend(EngineBackend):
    name = "vllm"

    def __init__(self, config: EngineConfig):
        self.config = config
        self._api = None
        self._llm = None
        self._max_context = 0

    async def start(self) -> None:
        from transformers import AutoConfig

        from vllm_train.compat import VLLMUnavailableError, vllm_api

        try:
            self._api = vllm_api()
        except VLLMUnavailableError as e:
            raise Unavailable(f"the vllm backend cannot start: {e}; use --backend hf on machines without vLLM") from e
        model_config = AutoConfig.from_pretrained(self.config.model)
        self._max_context = self.config.max_model_len or int(model_config.max_position_embeddings)
        engine_args = self._api.AsyncEngineArgs(**engine_args_kwargs(self.config))
        # Built off the event loop so that health keeps answering during a load of minutes. Built without a running
        # loop, AsyncLLM starts its output tasks lazily: the first call on the loop starts them and proves that the
        # engine core answers.
        self._llm = await asyncio.to_thread(self._api.AsyncLLM.from_engine_args, engine_args)
        await self._llm.list_loras()
        log.info("vllm backend: %s (vLLM %s)", self.config.model, self._api.version)

    @property
    def max_context(self) -> int:
        return self._max_context

    async def load_adapter(self, adapter: AdapterRecord) -> None:
        request = self._api.LoRARequest(**lora_request_kwargs(adapter))
        try:
            added = await self._llm.add_lora(request)
        except (ValueError, RuntimeError, KeyError) as e:
            raise FailedPrecondition(f"vLLM refused adapter {adapter.name!r} from {adapter.path}: {e}") from e
        if not added:
            raise FailedPrecondition(f"vLLM did not add adapter {adapter.name!r} from {adapter.path}")

    async def unload_adapter(self, adapter: AdapterRecord) -> None:
        await self._llm.remove_lora(adapter.int_id)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[CompletionDelta]:
        kind = getattr(self._api.RequestOutputKind, OUTPUT_KINDS[request.stream])
        params = self._api.SamplingParams(**sampling_params_kwargs(request.sampling, output_kind=kind))
        lora = self._api.LoRARequest(**lora_request_kwargs(request.adapter)) if request.adapter else None
        # vLLM needs ids unique among requests in flight; clients may repeat theirs (retries, A/B).
        vllm_request_id = f"{request.request_id}-{uuid.uuid4().hex[:12]}"
        tokens = [0] * request.sampling.n
        finished = [False] * request.sampling.n
        async for output in self._llm.generate(tokens_prompt(request.prompt_token_ids), params, vllm_request_id,
                                               lora_request=lora):
            for completion in output.outputs:
                index = completion.index
                if finished[index]:
                    continue
                # DELTA: the text and token ids since the last output; FINAL_ONLY: all of them, once.
                tokens[index] += len(completion.token_ids)
                reason = completion.finish_reason
                if reason == VLLM_RETRYABLE_ERROR:
                    raise Unavailable(f"vLLM failed request {vllm_request_id} with a retryable error; retry it")
                reason = None if reason is None else FINISH_REASONS.get(str(reason), str(reason))
                finished[index] = reason is not None
                if completion.text or reason is not None:
                    yield CompletionDelta(index, completion.text, reason, tokens[index])

    async def close(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
