"""``EngineService``: the gRPC face of one engine. Validates, leases, delegates to a backend, answers refusals with
their precise status; it knows nothing of the server bootstrap (:mod:`vllm_train.engine.server`).

Lifecycles the service guarantees:

- Generate / GenerateStream take a lease on their adapter (or the base model) before the first token and return it
  after the last, also when the client goes away; a request always finishes on the adapter it started with.
- LoadAdapter verifies (see :mod:`vllm_train.engine.adapter_checks`), then loads, then makes the name servable; only
  once it has returned can requests use the name. A load runs to the end even if its caller gives up, so a retry
  sees ALREADY_EXISTS (and ListAdapters shows the adapter) rather than a half-loaded engine.
- UnloadAdapter stops new requests on the adapter at once, waits for the ones in flight, then frees it. Concurrent
  unloads of one name wait for the same unload; like a load, it completes even if the caller gives up.
- Before the model is loaded and during shutdown, requests are refused with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid

import grpc

from vllm_train.engine.adapter_checks import (ModelShapes, check_adapter_name, check_sha256, resolve_adapter_uri,
                                              validate_adapter)
from vllm_train.engine.backend import EngineBackend
from vllm_train.engine.config import EngineConfig
from vllm_train.engine.errors import EngineError, FailedPrecondition, InvalidArgument, Unavailable
from vllm_train.engine.generation import GenerationRequest, PromptRenderer, sampling_from_proto
from vllm_train.engine.registry import AdapterRecord, AdapterRegistry, AdapterState, Lease
from vllm_train.lora import ADAPTER_WEIGHTS, same_base_model
from vllm_train.proto.v1 import common_pb2, engine_pb2, engine_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = engine_pb2.DESCRIPTOR.services_by_name["EngineService"].full_name


def _answers_refusals(method):
    """Unary RPCs: an EngineError becomes its gRPC status; anything unexpected becomes INTERNAL (and is logged)."""

    @functools.wraps(method)
    async def rpc(self, request, context):
        try:
            return await method(self, request, context)
        except EngineError as e:
            await context.abort(grpc.StatusCode[e.status], e.message)
        except Exception as e:  # noqa: BLE001 - the edge: log it, answer it
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed: {type(e).__name__}: {e}")

    return rpc


class EngineService(engine_pb2_grpc.EngineServiceServicer):
    """EngineService over one :class:`EngineBackend`; call :meth:`start` to load the model."""

    def __init__(self, config: EngineConfig, backend: EngineBackend):
        self.config = config
        self.backend = backend
        self.registry = AdapterRegistry(config.max_loras)
        self._renderer: PromptRenderer | None = None
        self._shapes: ModelShapes | None = None
        self._ready = False
        self._closing = False
        self._drained: dict[str, asyncio.Event] = {}
        self._unloads: dict[str, asyncio.Task] = {}
        self._background: set[asyncio.Task] = set()

    @property
    def ready(self) -> bool:
        return self._ready and not self._closing

    async def start(self) -> None:
        """Loads the model; the service answers UNAVAILABLE until this returns."""
        from transformers import AutoTokenizer

        await self.backend.start()
        # Its own tokenizer: a fast tokenizer is not safe to share with the backend's threads (it mutates its
        # truncation/padding state on every call).
        tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.config.model)
        self._renderer = PromptRenderer(tokenizer, self.backend.max_context)
        self._shapes = await asyncio.to_thread(ModelShapes.from_pretrained, self.config.model)
        self._ready = True

    def begin_shutdown(self) -> None:
        """New requests are refused from now on; those in flight go on."""
        self._closing = True

    # --- generation ----------------------------------------------------------------------------------------------

    @_answers_refusals
    async def Generate(self, request, context):
        generation, lease = self._admit(request, stream=False)
        try:
            texts: dict[int, list[str]] = {i: [] for i in range(generation.sampling.n)}
            finish: dict[int, str] = {}
            tokens: dict[int, int] = {}
            async with contextlib.aclosing(self.backend.generate(generation)) as deltas:
                async for delta in deltas:
                    texts[delta.index].append(delta.text)
                    tokens[delta.index] = delta.completion_tokens
                    if delta.finish_reason:
                        finish[delta.index] = delta.finish_reason
            completions = [common_pb2.Completion(index=i, text="".join(parts), finish_reason=finish.get(i, "abort"),
                                                 completion_tokens=tokens.get(i, 0))
                           for i, parts in sorted(texts.items())]
            return engine_pb2.EngineGenerateResponse(completions=completions,
                                                     prompt_tokens=len(generation.prompt_token_ids),
                                                     adapter=request.adapter, replica=self.config.replica)
        finally:
            self._release(lease)

    async def GenerateStream(self, request, context):
        try:
            generation, lease = self._admit(request)
        except EngineError as e:
            await context.abort(grpc.StatusCode[e.status], e.message)
        try:
            prompt_tokens = len(generation.prompt_token_ids)
            async with contextlib.aclosing(self.backend.generate(generation)) as deltas:
                async for delta in deltas:
                    yield engine_pb2.EngineGenerateChunk(index=delta.index, text_delta=delta.text,
                                                         finish_reason=delta.finish_reason or "",
                                                         completion_tokens=delta.completion_tokens,
                                                         prompt_tokens=prompt_tokens)
        except EngineError as e:
            await context.abort(grpc.StatusCode[e.status], e.message)
        except Exception as e:  # noqa: BLE001 - the edge: log it, answer it
            log.exception("GenerateStream failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"GenerateStream failed: {type(e).__name__}: {e}")
        finally:
            self._release(lease)

    def _admit(self, request, stream: bool = True) -> tuple[GenerationRequest, Lease]:
        """Validates a generate request and leases its adapter; everything that can be refused is refused here."""
        self._require_ready()
        sampling = sampling_from_proto(request.sampling, max_n=self.config.max_n,
                                       default_max_tokens=self.config.default_max_tokens,
                                       max_tokens_limit=self.config.max_tokens_limit,
                                       max_stop_strings=self.config.max_stop_strings)
        prompt_ids = self._renderer.render(request.prompt, sampling.max_tokens)
        lease = self.registry.acquire(request.adapter)
        request_id = request.request_id or uuid.uuid4().hex
        return GenerationRequest(request_id, tuple(prompt_ids), sampling, lease.record, stream=stream), lease

    def _release(self, lease: Lease) -> None:
        if self.registry.release(lease):
            event = self._drained.get(lease.record.name)
            if event is not None:
                event.set()

    # --- adapters ------------------------------------------------------------------------------------------------

    @_answers_refusals
    async def LoadAdapter(self, request, context):
        self._require_ready()
        started = time.perf_counter()
        name = check_adapter_name(request.name)
        sha256 = check_sha256(request.sha256)
        path = resolve_adapter_uri(request.uri, self.config.adapter_root)
        record = self.registry.begin_load(name, path, request.uri, sha256)
        record = await self._run_to_completion(self._load(record))
        return engine_pb2.LoadAdapterResponse(adapter=self._adapter_info(record, 0),
                                              load_ms=(time.perf_counter() - started) * 1000.0)

    async def _load(self, record: AdapterRecord) -> AdapterRecord:
        try:
            info = await asyncio.to_thread(validate_adapter, record.path, expected_sha256=record.sha256,
                                           base_model_name=None, max_rank=self.config.max_lora_rank)
            self._check_base_model(info.base_model, record)
            await asyncio.to_thread(self._shapes.check, record.path / ADAPTER_WEIGHTS)
            await self.backend.load_adapter(record)
        except BaseException:
            self.registry.abort_load(record.name)
            raise
        log.info("adapter %s loaded from %s (rank %d, id %d)", record.name, record.path, info.rank, record.int_id)
        return self.registry.finish_load(record.name, rank=info.rank)

    def _check_base_model(self, adapter_base: str | None, record: AdapterRecord) -> None:
        # An adapter that names no base model is accepted (the trainer library's rule); the shape check still runs.
        if adapter_base and not (same_base_model(adapter_base, self.config.served_model_name)
                                 or same_base_model(adapter_base, self.config.model)):
            raise FailedPrecondition(f"adapter {record.name!r} was trained on {adapter_base!r}, but this engine "
                                     f"serves {self.config.served_model_name!r}; load it on an engine of that model")

    @_answers_refusals
    async def UnloadAdapter(self, request, context):
        self._require_ready()
        name = request.name
        if not name:
            raise InvalidArgument("name is empty: give the adapter to unload")
        task = self._unloads.get(name)
        if task is None:
            drained = asyncio.Event()
            if self.registry.begin_unload(name):
                drained.set()
            self._drained[name] = drained
            task = self._unloads[name] = self._background_task(self._unload(name, drained))
        await asyncio.shield(task)
        return engine_pb2.UnloadAdapterResponse(unloaded=True)

    async def _unload(self, name: str, drained: asyncio.Event) -> None:
        try:
            await drained.wait()
            record = self.registry.get(name).record
            try:
                await self.backend.unload_adapter(record)
            except Exception:  # noqa: BLE001 - no request can reach it any more; forget it regardless
                log.exception("backend failed to free adapter %s; forgetting it anyway", name)
            self.registry.finish_unload(name)
            log.info("adapter %s unloaded", name)
        finally:
            self._unloads.pop(name, None)
            self._drained.pop(name, None)

    @_answers_refusals
    async def ListAdapters(self, request, context):
        return engine_pb2.ListAdaptersResponse(adapters=[
            self._adapter_info(view.record, view.in_flight) for view in self.registry.adapters()
            if view.state is AdapterState.READY])

    @_answers_refusals
    async def Health(self, request, context):
        return engine_pb2.EngineHealthResponse(
            ready=self.ready, model=self.config.served_model_name, backend=self.config.backend,
            max_lora_rank=self.config.max_lora_rank, max_loras=self.config.max_loras,
            in_flight=self.registry.in_flight, replica=self.config.replica)

    # --- helpers -------------------------------------------------------------------------------------------------

    def _require_ready(self) -> None:
        if self._closing:
            raise Unavailable("this engine is shutting down; send the request to another replica")
        if not self._ready:
            raise Unavailable("this engine is still loading its model; retry once gRPC health reports SERVING")

    async def _run_to_completion(self, coro):
        """Awaits ``coro`` as a task the caller's cancellation cannot stop (committed changes finish)."""
        return await asyncio.shield(self._background_task(coro))

    def _background_task(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even if nobody awaits it
        return task

    @staticmethod
    def _adapter_info(record: AdapterRecord, in_flight: int) -> engine_pb2.AdapterInfo:
        return engine_pb2.AdapterInfo(name=record.name, uri=record.uri, sha256=record.sha256, rank=record.rank,
                                      in_flight=in_flight)
