"""The vllm backend's translation of vLLM outputs into the engine's deltas, on a CPU.

vLLM cannot run here, so ``AsyncLLM`` is replaced by :class:`ScriptedAsyncLLM`, which produces outputs the way vLLM
0.26/0.33's output processor does for the kind a request asks for (read in ``vllm/v1/engine/output_processor.py``
and ``parallel_sampling.py``): ``DELTA`` yields each completion's new text and token ids per step, one completion per
output when n > 1; ``FINAL_ONLY`` yields one output holding all n completions, full text and ids, when the last one
finishes. The same backend code ran for real on a GPU (tests/engine with ``--engine-backend vllm``, GPU_E2E.md).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from vllm_train.engine.config import EngineConfig
from vllm_train.engine.errors import FailedPrecondition, Unavailable
from vllm_train.engine.generation import GenerationRequest, SamplingSpec
from vllm_train.engine.registry import AdapterRecord
from vllm_train.engine.vllm_backend import VLLMBackend


class RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


@dataclass
class Completion:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class Output:
    outputs: list[Completion]


@dataclass
class ScriptedAsyncLLM:
    """Each completion i of a request produces the words of ``scripts[i]`` as one token each, then finishes with
    ``finish[i]``."""

    scripts: list[list[str]]
    finish: list[str]
    calls: list[dict] = field(default_factory=list)
    add_lora_result: object = True

    async def generate(self, prompt, params, request_id, lora_request=None):
        self.calls.append(dict(prompt=prompt, params=params, request_id=request_id, lora=lora_request))
        kind = params["output_kind"]
        n = params["n"]
        steps = max(len(s) for s in self.scripts[:n])
        for step in range(steps):
            await asyncio.sleep(0)
            for i in range(n):
                words = self.scripts[i]
                if step >= len(words):
                    continue
                done = step == len(words) - 1
                if kind is RequestOutputKind.DELTA:
                    yield Output([Completion(i, words[step], [100 + step], self.finish[i] if done else None)])
        if kind is RequestOutputKind.FINAL_ONLY:
            yield Output([Completion(i, "".join(self.scripts[i]), list(range(len(self.scripts[i]))), self.finish[i])
                          for i in range(n)])

    async def add_lora(self, request):
        if isinstance(self.add_lora_result, Exception):
            raise self.add_lora_result
        return self.add_lora_result


def backend_with(llm: ScriptedAsyncLLM, tmp_path: Path) -> VLLMBackend:
    backend = VLLMBackend(EngineConfig(model="some/model", backend="vllm", adapter_root=tmp_path, port=0))
    backend._api = SimpleNamespace(version="scripted", RequestOutputKind=RequestOutputKind,
                                   SamplingParams=lambda **kw: kw, LoRARequest=lambda **kw: kw)
    backend._llm = llm
    return backend


def run(backend: VLLMBackend, request: GenerationRequest):
    async def collect():
        return [d async for d in backend.generate(request)]
    return asyncio.run(collect())


def request(n: int, stream: bool, adapter: AdapterRecord | None = None) -> GenerationRequest:
    return GenerationRequest("r1", (1, 2, 3), SamplingSpec(n=n, max_tokens=16), adapter, stream=stream)


ADAPTER = AdapterRecord(name="run/v000001", int_id=7, path=Path("/adapters/run/v000001"), uri="", sha256="0" * 64,
                        rank=8)
SCRIPTS = [["The ", "sky ", "is ", "blue."], ["Grass ", "is ", "green."]]


def test_a_stream_asks_for_deltas_and_passes_them_through_with_running_token_counts(tmp_path):
    llm = ScriptedAsyncLLM(SCRIPTS, ["stop", "length"])
    deltas = run(backend_with(llm, tmp_path), request(2, stream=True))
    assert llm.calls[0]["params"]["output_kind"] is RequestOutputKind.DELTA
    for i, words in enumerate(SCRIPTS):
        mine = [d for d in deltas if d.index == i]
        assert "".join(d.text for d in mine) == "".join(words)
        assert [d.completion_tokens for d in mine] == list(range(1, len(words) + 1))
        assert [d.finish_reason for d in mine] == [None] * (len(words) - 1) + [["stop", "length"][i]]


def test_a_unary_request_asks_for_final_outputs_only_and_gets_one_delta_per_completion(tmp_path):
    llm = ScriptedAsyncLLM(SCRIPTS, ["stop", "stop"])
    deltas = run(backend_with(llm, tmp_path), request(2, stream=False, adapter=ADAPTER))
    assert llm.calls[0]["params"]["output_kind"] is RequestOutputKind.FINAL_ONLY
    assert [(d.index, d.text, d.finish_reason, d.completion_tokens) for d in deltas] == [
        (0, "The sky is blue.", "stop", 4), (1, "Grass is green.", "stop", 3)]
    assert llm.calls[0]["lora"] == dict(lora_name="run/v000001", lora_int_id=7, lora_path="/adapters/run/v000001")
    assert llm.calls[0]["prompt"] == {"prompt_token_ids": [1, 2, 3]}
    assert llm.calls[0]["request_id"].startswith("r1-")  # made unique: clients may repeat ids


def test_vllms_request_level_error_is_unavailable_so_the_client_retries(tmp_path):
    llm = ScriptedAsyncLLM([["x"]], ["error"])
    with pytest.raises(Unavailable, match="retryable"):
        run(backend_with(llm, tmp_path), request(1, stream=True))


def test_finish_reasons_map_to_the_engines(tmp_path):
    for vllm_reason, ours in (("stop", "stop"), ("length", "length"), ("abort", "abort"), ("repetition", "stop")):
        deltas = run(backend_with(ScriptedAsyncLLM([["a ", "b"]], [vllm_reason]), tmp_path), request(1, stream=False))
        assert deltas[-1].finish_reason == ours


@pytest.mark.parametrize("result, match", [(False, "did not add"), (ValueError("bad rank"), "bad rank")])
def test_an_adapter_vllm_refuses_is_a_failed_precondition(tmp_path, result, match):
    backend = backend_with(ScriptedAsyncLLM([], [], add_lora_result=result), tmp_path)
    with pytest.raises(FailedPrecondition, match=match):
        asyncio.run(backend.load_adapter(ADAPTER))
