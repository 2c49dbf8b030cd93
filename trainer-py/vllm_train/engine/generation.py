"""What a generate request means, independent of backend and of gRPC: validated sampling parameters
(:class:`SamplingSpec`), the rendered prompt (:class:`PromptRenderer`), the unit a backend streams back
(:class:`CompletionDelta`) and the incremental detokenizer with stop strings the hf backend uses
(:class:`CompletionTracker`).

Semantics shared by both backends (they follow vLLM's): ``temperature`` 0 is greedy; ``top_p`` 1 and no top-k otherwise;
``seed`` makes sampling reproducible on one backend and device; a stop string ends a completion and is not part of its
text; ``finish_reason`` is ``stop`` (EOS or a stop string), ``length`` (``max_tokens`` reached) or ``abort``;
``completion_tokens`` counts every generated token including the EOS or the one that completed a stop string.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from vllm_train.engine.errors import FailedPrecondition, InvalidArgument
from vllm_train.engine.registry import AdapterRecord

CHAT_ROLES = ("system", "user", "assistant")
FINISH_STOP, FINISH_LENGTH, FINISH_ABORT = "stop", "length", "abort"


@dataclass(frozen=True)
class SamplingSpec:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 128
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class GenerationRequest:
    """One request as a backend sees it: token ids of the rendered prompt, sampling, and the adapter leased for it."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingSpec
    adapter: AdapterRecord | None
    stream: bool = True
    """False when the caller only wants the finished completions (unary Generate): a backend may then skip
    intermediate deltas and hand over each completion as one delta."""


@dataclass(frozen=True)
class CompletionDelta:
    """New text of completion ``index``; ``finish_reason`` is set on its last delta. ``completion_tokens`` is the
    running count of tokens generated for it."""

    index: int
    text: str
    finish_reason: str | None
    completion_tokens: int


def sampling_from_proto(sampling, *, max_n: int, default_max_tokens: int, max_tokens_limit: int,
                        max_stop_strings: int) -> SamplingSpec:
    """Validates a ``common_pb2.SamplingParams`` (unset fields take the documented defaults); INVALID_ARGUMENT with the
    field and its allowed range otherwise."""
    n = sampling.n or 1
    if not 1 <= n <= max_n:
        raise InvalidArgument(f"sampling.n must be 1..{max_n} on this engine, got {sampling.n}")
    temperature = sampling.temperature if sampling.HasField("temperature") else 1.0
    if not (math.isfinite(temperature) and temperature >= 0):
        raise InvalidArgument(f"sampling.temperature must be >= 0 (0 = greedy), got {temperature}")
    top_p = sampling.top_p if sampling.HasField("top_p") else 1.0
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise InvalidArgument(f"sampling.top_p must be in (0, 1], got {top_p}")
    max_tokens = sampling.max_tokens or default_max_tokens
    if not 1 <= max_tokens <= max_tokens_limit:
        raise InvalidArgument(f"sampling.max_tokens must be 1..{max_tokens_limit} on this engine, got "
                              f"{sampling.max_tokens}")
    seed = sampling.seed if sampling.HasField("seed") else None
    if seed is not None and not 0 <= seed < 2 ** 63:
        raise InvalidArgument(f"sampling.seed must be 0..2^63-1, got {seed}")
    stop = tuple(sampling.stop)
    if len(stop) > max_stop_strings:
        raise InvalidArgument(f"sampling.stop holds {len(stop)} strings; this engine accepts at most {max_stop_strings}")
    if any(not s for s in stop):
        raise InvalidArgument("sampling.stop must not contain empty strings")
    return SamplingSpec(n=n, temperature=float(temperature), top_p=float(top_p), max_tokens=max_tokens, seed=seed,
                        stop=stop)


class PromptRenderer:
    """Turns a ``common_pb2.Prompt`` into token ids with the base model's tokenizer: chat messages through its chat
    template (with the generation prompt appended), raw text as is. Both backends get the same ids."""

    def __init__(self, tokenizer, max_context: int):
        self.tokenizer = tokenizer
        self.max_context = max_context

    def render(self, prompt, max_tokens: int) -> list[int]:
        has_text, has_messages = bool(prompt.text), len(prompt.messages) > 0
        if has_text == has_messages:
            raise InvalidArgument("prompt must set exactly one of text and messages"
                                  + (" (both are set)" if has_text else " (both are empty)"))
        if has_messages:
            for i, m in enumerate(prompt.messages):
                if m.role not in CHAT_ROLES:
                    raise InvalidArgument(f"prompt.messages[{i}].role must be one of {', '.join(CHAT_ROLES)}, "
                                          f"got {m.role!r}")
            if not getattr(self.tokenizer, "chat_template", None):
                raise FailedPrecondition("this engine's model has no chat template; send prompt.text instead of "
                                         "prompt.messages")
            text = self.tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in prompt.messages],
                                                      tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(prompt.text)["input_ids"]
        if not ids:
            raise InvalidArgument("prompt is empty after tokenization")
        if len(ids) + max_tokens > self.max_context:
            raise InvalidArgument(f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the model's context "
                                  f"of {self.max_context} tokens; shorten the prompt or lower max_tokens")
        return list(ids)


class CompletionTracker:
    """Follows one completion token by token: incremental detokenization, stop strings, EOS and ``max_tokens``.

    :meth:`feed` returns the text that may be shown now. Text that could still turn out to be the start of a stop
    string, or an incomplete UTF-8 character, is held back until it is decided, so the concatenated deltas equal the
    final text exactly, with no stop string in it. Decoding works on a short window of recent tokens (the offsets
    technique of vLLM and TGI), so a completion of length L costs O(L), not O(L²).
    """

    def __init__(self, decode: Callable[[list[int]], str], *, stop: Iterable[str] = (), eos_token_ids=(),
                 max_tokens: int):
        self._decode = decode
        self._stop = tuple(stop)
        self._max_stop = max((len(s) for s in self._stop), default=0)
        self._eos = frozenset(eos_token_ids)
        self._max_tokens = max_tokens
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self._ids: list[int] = []  # generated ids to decode (EOS excluded)
        self._text = ""            # decoded so far (may run past what is handed out)
        self._emitted = 0          # characters of _text handed out
        self._prefix_offset = 0
        self._read_offset = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def text(self) -> str:
        """The text handed out so far (the final text once finished)."""
        return self._text[:self._emitted]

    def feed(self, token_id: int) -> str:
        if self.finished:
            return ""
        self.completion_tokens += 1
        if token_id in self._eos:
            return self._finish(FINISH_STOP)
        self._ids.append(int(token_id))
        self._decode_new(complete_only=True)
        if self._stop:
            # Held-back text guarantees no stop string starts before the emitted text's last max_stop-1 characters.
            start = max(self._emitted - self._max_stop + 1, 0)
            hits = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
            if hits:
                return self._finish(FINISH_STOP, end=min(hits))
        if self.completion_tokens >= self._max_tokens:
            return self._finish(FINISH_LENGTH)
        return self._emit(len(self._text) - self._held_back())

    def abort(self) -> None:
        """Ends it without handing out held-back text (nobody is listening any more)."""
        if not self.finished:
            self.finish_reason = FINISH_ABORT

    def _decode_new(self, complete_only: bool) -> None:
        prefix = self._decode(self._ids[self._prefix_offset:self._read_offset])
        full = self._decode(self._ids[self._prefix_offset:])
        # A trailing U+FFFD is half a multi-byte character: wait for the token that completes it (unless finishing).
        if len(full) > len(prefix) and not (complete_only and full.endswith("\ufffd")):
            self._text += full[len(prefix):]
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)

    def _held_back(self) -> int:
        """Length of the longest tail of the unsent text that is a proper prefix of a stop string."""
        tail = self._text[self._emitted:]
        for k in range(min(len(tail), self._max_stop - 1), 0, -1):
            if any(s.startswith(tail[-k:]) for s in self._stop):
                return k
        return 0

    def _finish(self, reason: str, end: int | None = None) -> str:
        """Ends the completion, handing out the text up to ``end`` (default: everything, half characters included)."""
        if end is None:
            self._decode_new(complete_only=False)
            end = len(self._text)
        self.finish_reason = reason
        return self._emit(end)

    def _emit(self, end: int) -> str:
        end = max(end, self._emitted)
        out = self._text[self._emitted:end]
        self._emitted = end
        return out
