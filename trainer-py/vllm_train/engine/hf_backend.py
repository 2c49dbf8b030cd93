"""The hf backend: transformers + PEFT on CPU or GPU, the embedded default and what the tests run.

One base model is loaded once. The first adapter wraps it in a ``PeftModel`` (LoRA layers injected in place); later
adapters are added with ``load_adapter`` under an internal name per load (``a<int_id>``: PEFT keys adapters by
``nn.ModuleDict`` names, which may not contain dots, and engine names may); when the last adapter is unloaded the
LoRA layers are removed again and the plain model is back.

Concurrency, and its trade-off: PEFT's active adapter (``set_adapter``/``disable_adapter``) is global state of the
model, and its mixed-batch ``adapter_names`` works through forward hooks that are global too. So every model
operation — generate, load, unload — runs on ONE model thread, in arrival order (a single-worker executor): a request
selects its adapter, generates its n completions as one batch, and nothing else touches the model meanwhile.
Correct by construction, fair (FIFO, so a LoadAdapter waits for at most the requests queued before it), and on a
CPU no slower than parallel calls would be (one generate already uses every core). On a GPU it leaves throughput on
the table (no batching across requests): that is what the vllm backend, with continuous batching, is for.

Tokens flow to the caller from inside ``generate`` through a stopping criterion that feeds one
:class:`CompletionTracker` per completion (text deltas, stop strings, EOS, max_tokens) and tells ``generate`` which
rows are done; deltas cross to the event loop with ``call_soon_threadsafe``. Closing the stream early (client gone)
sets a flag the same criterion reads, so the model thread stops within one token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable

from vllm_train.engine.backend import EngineBackend
from vllm_train.engine.config import EngineConfig
from vllm_train.engine.errors import FailedPrecondition
from vllm_train.engine.generation import (FINISH_ABORT, FINISH_LENGTH, CompletionDelta, CompletionTracker,
                                          GenerationRequest)
from vllm_train.engine.registry import AdapterRecord

log = logging.getLogger(__name__)

_DONE = object()


def peft_adapter_name(adapter: AdapterRecord) -> str:
    """The name an adapter has inside PEFT: unique per load and a valid ``nn.ModuleDict`` key."""
    return f"a{adapter.int_id}"


class HFBackend(EngineBackend):
    name = "hf"

    def __init__(self, config: EngineConfig):
        self.config = config
        # The one thread that touches the model (see the module doc).
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-model")
        self._model = None        # the transformers model (LoRA layers injected while adapters are loaded)
        self._peft = None         # the PeftModel wrapping it while at least one adapter is loaded
        self._tokenizer = None
        self._eos_ids: tuple[int, ...] = ()
        self._pad_id: int | None = None
        self.device = None

    # --- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._on_model_thread(self._load_base)

    def _load_base(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.config.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device == "cuda" else "float32"
        self.device = torch.device(device)
        self._tokenizer = AutoTokenizer.from_pretrained(self.config.model)
        model = AutoModelForCausalLM.from_pretrained(self.config.model, dtype=getattr(torch, dtype))
        self._model = model.to(self.device).eval()
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = self._tokenizer.eos_token_id
        self._eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else ((eos,) if eos is not None else ())
        pad = model.generation_config.pad_token_id
        if pad is None:
            pad = self._tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (self._eos_ids[0] if self._eos_ids else 0)
        log.info("hf backend: %s on %s (%s)", self.config.model, device, dtype)

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def max_context(self) -> int:
        config = self._model.config
        return int(getattr(config, "max_position_embeddings", None) or self._tokenizer.model_max_length)

    @property
    def model(self):
        """The model generate runs on: the PeftModel while adapters are loaded, else the plain model. Model thread only."""
        return self._peft if self._peft is not None else self._model

    async def close(self) -> None:
        self._model_thread.shutdown(wait=True, cancel_futures=True)

    # --- adapters ------------------------------------------------------------------------------------------------

    async def load_adapter(self, adapter: AdapterRecord) -> None:
        await self._on_model_thread(self._load_adapter, adapter)

    def _load_adapter(self, adapter: AdapterRecord) -> None:
        from peft import PeftModel

        name = peft_adapter_name(adapter)
        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self._model, str(adapter.path), adapter_name=name,
                                                       is_trainable=False)
            else:
                self._peft.load_adapter(str(adapter.path), adapter_name=name, is_trainable=False)
        except (ValueError, RuntimeError, KeyError) as e:
            # The service verified files, config and shapes; what PEFT still refuses does not fit this model.
            with contextlib.suppress(Exception):
                self._remove_peft_adapter(name)
            raise FailedPrecondition(f"PEFT could not load adapter {adapter.name!r} from {adapter.path} into this "
                                     f"engine's model: {e}") from e
        self._peft.eval()

    async def unload_adapter(self, adapter: AdapterRecord) -> None:
        await self._on_model_thread(self._unload_adapter, adapter)

    def _unload_adapter(self, adapter: AdapterRecord) -> None:
        self._remove_peft_adapter(peft_adapter_name(adapter))

    def _remove_peft_adapter(self, name: str) -> None:
        if self._peft is None or name not in self._peft.peft_config:
            return
        self._peft.delete_adapter(name)
        if not self._peft.peft_config:
            # PEFT cannot run (not even disable_adapter) with no adapter left: take the LoRA layers out again.
            self._model = self._peft.unload()
            self._peft = None

    # --- generation ----------------------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[CompletionDelta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def sink(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job = loop.run_in_executor(self._model_thread, self._generate_on_model_thread, request, sink, cancelled)
        try:
            while (item := await queue.get()) is not _DONE:
                yield item
            await job  # re-raises what failed on the model thread
        finally:
            cancelled.set()

    def _generate_on_model_thread(self, request: GenerationRequest, sink: Callable, cancelled: threading.Event) -> None:
        try:
            if not cancelled.is_set():
                self._generate(request, sink, cancelled)
        finally:
            sink(_DONE)

    def _generate(self, request: GenerationRequest, sink: Callable, cancelled: threading.Event) -> None:
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        sampling = request.sampling
        tokenizer = self._tokenizer

        def decode(ids: list[int]) -> str:
            return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

        trackers = [CompletionTracker(decode, stop=sampling.stop, eos_token_ids=self._eos_ids,
                                      max_tokens=sampling.max_tokens) for _ in range(sampling.n)]
        device = self.device

        class FeedTrackers(StoppingCriteria):
            """Called once per decoding step with every row's newest token: the streaming and stopping hook."""

            def __call__(self, input_ids, scores, **kwargs):
                newest = input_ids[:, -1].tolist()
                for index, (tracker, token) in enumerate(zip(trackers, newest)):
                    if tracker.finished:
                        continue
                    if cancelled.is_set():
                        tracker.abort()
                    else:
                        text = tracker.feed(token)
                        if text or tracker.finished:
                            sink(CompletionDelta(index, text, tracker.finish_reason, tracker.completion_tokens))
                return torch.tensor([t.finished for t in trackers], dtype=torch.bool, device=input_ids.device)

        if sampling.greedy:
            gen = GenerationConfig(do_sample=False)
        else:
            # top_k 0 and neutral penalties: the request's temperature/top_p alone shape sampling (vLLM's semantics),
            # whatever the model's generation_config suggests.
            gen = GenerationConfig(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        gen.max_new_tokens = sampling.max_tokens
        gen.num_return_sequences = sampling.n
        gen.eos_token_id = list(self._eos_ids) or None
        gen.pad_token_id = self._pad_id
        gen.repetition_penalty = 1.0

        input_ids = torch.tensor([list(request.prompt_token_ids)], device=device)
        model = self.model
        if request.adapter is not None:
            self._peft.set_adapter(peft_adapter_name(request.adapter), inference_mode=True)
            selection = contextlib.nullcontext()
        elif self._peft is not None:
            selection = self._peft.disable_adapter()
        else:
            selection = contextlib.nullcontext()
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)  # global RNG, but only this thread samples
        with torch.inference_mode(), selection:
            model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=gen,
                           stopping_criteria=StoppingCriteriaList([FeedTrackers()]))
        for index, tracker in enumerate(trackers):
            if not tracker.finished:  # generate stopped without telling us why: cancelled, or a limit of its own
                if cancelled.is_set():
                    tracker.abort()
                    reason, text = FINISH_ABORT, ""
                else:
                    reason, text = FINISH_LENGTH, ""
                    tracker.finish_reason = reason
                sink(CompletionDelta(index, text, reason, tracker.completion_tokens))

    async def _on_model_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, fn, *args)
