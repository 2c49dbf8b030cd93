"""The engine worker end to end: a real gRPC server on a local port (hf backend and the tiny model by default; any
backend and model with ``--engine-backend/--engine-model``, e.g. vllm on a GPU), adapters written by the trainer
library, clients on real channels."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from engine_testing import (ServerThread, engine_config, load, make_adapter, same_greedy, status_of, text_request,
                            variant_adapter)
from vllm_train.proto.v1 import common_pb2, engine_pb2

PROMPT = "tell me about the red fox"
OK, INVALID, NOT_FOUND, EXISTS, PRECONDITION, DENIED, UNAVAILABLE = (
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAVAILABLE)


@pytest.fixture(scope="module")
def served(engine, adapters):
    """The module's engine with both adapters loaded as run-1/v000001 and run-1/v000002."""
    for name, adapter in adapters.items():
        load(engine.stub, f"run-1/{name}", adapter)
    return engine


def direct_peft_greedy(base_model, adapter_path, prompt: str, max_tokens: int) -> str:
    """What PEFT itself generates (greedy, float32 on CPU as the engine runs it) for the base model, or with the
    adapter at ``adapter_path``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32).eval()
    if adapter_path is not None:
        model = PeftModel.from_pretrained(model, str(adapter_path)).eval()
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_tokens, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def greedy(stub, adapter: str = "", max_tokens: int = 16, prompt: str = PROMPT) -> str:
    return stub.Generate(text_request(prompt, adapter=adapter, max_tokens=max_tokens)).completions[0].text


def streamed(stub, request) -> dict[int, tuple[str, str, int]]:
    """index -> (text, finish_reason, completion_tokens) assembled from GenerateStream."""
    texts, finish, tokens = {}, {}, {}
    for chunk in stub.GenerateStream(request):
        texts[chunk.index] = texts.get(chunk.index, "") + chunk.text_delta
        tokens[chunk.index] = chunk.completion_tokens
        if chunk.finish_reason:
            assert chunk.index not in finish, "a completion finished twice"
            finish[chunk.index] = chunk.finish_reason
    return {i: (texts[i], finish.get(i, ""), tokens[i]) for i in texts}


# --- lifecycle ---------------------------------------------------------------------------------------------------

def only_exact(target, why: str) -> None:
    if not target.exact:
        pytest.skip(f"{why} (exact only on a backend that runs each request alone; {target.backend} batches them)")


def tokens(model: str, prompt: str | None = None, chat: list | None = None) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if chat is not None:
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return len(tokenizer(prompt)["input_ids"])


def test_health_says_not_serving_and_requests_are_unavailable_until_the_model_is_loaded(target, adapter_root):
    server = ServerThread(engine_config(target, adapter_root), load_model=False)
    try:
        health = health_pb2_grpc.HealthStub(server.channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert status_of(lambda: server.stub.Generate(text_request(PROMPT))) == UNAVAILABLE
        assert server.stub.Health(engine_pb2.EngineHealthRequest()).ready is False
        server.call(server.server.load())
        for service in ("", "vllm_train.proto.v1.EngineService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
                health_pb2.HealthCheckResponse.SERVING
        assert server.stub.Health(engine_pb2.EngineHealthRequest()).ready is True
    finally:
        server.stop()


def test_reflection_lists_the_engine_and_health_services(engine):
    reflection = reflection_pb2_grpc.ServerReflectionStub(engine.channel)
    reply = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in reply.list_services_response.service}
    assert {"vllm_train.proto.v1.EngineService", "grpc.health.v1.Health"} <= names


def test_engine_health_describes_the_replica(engine, target):
    health = engine.stub.Health(engine_pb2.EngineHealthRequest())
    assert (health.ready, health.model, health.backend, health.max_lora_rank, health.max_loras, health.replica) == \
        (True, target.model, target.backend, 16, 4, "test-replica")


# --- generation --------------------------------------------------------------------------------------------------

def test_base_and_adapter_outputs_differ_and_match_a_direct_peft_call(served, adapters, target):
    outputs = {"": greedy(served.stub)}
    for name in adapters:
        outputs[name] = greedy(served.stub, adapter=f"run-1/{name}")
    assert len(set(outputs.values())) == 3, outputs
    only_exact(target, "equality with PEFT on CPU float32 (vLLM vs HF agreement is measured by bench/gpu_e2e.py)")
    assert outputs[""] == direct_peft_greedy(target.model, None, PROMPT, 16)
    for name, adapter in adapters.items():
        assert outputs[name] == direct_peft_greedy(target.model, adapter.path, PROMPT, 16)


def test_the_reply_names_adapter_replica_and_token_counts(served, base_model):
    reply = served.stub.Generate(text_request(PROMPT, adapter="run-1/v000001", max_tokens=5))
    assert (reply.adapter, reply.replica, reply.prompt_tokens) == ("run-1/v000001", "test-replica",
                                                                   tokens(base_model, PROMPT))
    completion = reply.completions[0]
    assert completion.finish_reason in ("length", "stop") and 1 <= completion.completion_tokens <= 5


def test_streaming_delivers_the_same_completions_as_unary(served):
    request = text_request(PROMPT, adapter="run-1/v000002", max_tokens=20, n=3, temperature=1.0, seed=7)
    unary = served.stub.Generate(request)
    stream = streamed(served.stub, request)
    assert {c.index: (c.text, c.finish_reason, c.completion_tokens) for c in unary.completions} == stream


def test_seeded_sampling_is_reproducible_and_n_completions_differ(served):
    request = text_request(PROMPT, max_tokens=24, n=4, temperature=1.0, seed=1234)
    first = [c.text for c in served.stub.Generate(request).completions]
    again = [c.text for c in served.stub.Generate(request).completions]
    other = [c.text for c in served.stub.Generate(text_request(PROMPT, max_tokens=24, n=4, temperature=1.0,
                                                               seed=4321)).completions]
    assert first == again and first != other
    assert len(set(first)) > 1


def test_a_stop_string_cuts_the_completion_before_it(served):
    full = greedy(served.stub, max_tokens=24)
    stop = full[len(full) // 2: len(full) // 2 + 3]
    assert stop.strip(), f"pick a visible stop string from {full!r}"
    reply = served.stub.Generate(text_request(PROMPT, max_tokens=24, stop=[stop])).completions[0]
    assert reply.text == full[:full.index(stop)] and reply.finish_reason == "stop"


def test_chat_prompts_are_served(served, base_model):
    request = engine_pb2.EngineGenerateRequest(
        prompt=common_pb2.Prompt(messages=[common_pb2.ChatMessage(role="user", content="hello")]),
        sampling=common_pb2.SamplingParams(temperature=0.0, max_tokens=4))
    reply = served.stub.Generate(request)
    # the model's chat template, e.g. <|im_start|> user \n hello <|im_end|> \n <|im_start|> assistant \n
    assert reply.prompt_tokens == tokens(base_model, chat=[{"role": "user", "content": "hello"}])
    assert reply.completions[0].completion_tokens >= 1


# --- refusals ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_fields, status", [
    (dict(adapter="run-9/v000001"), NOT_FOUND),
    (dict(n=99), INVALID),
    (dict(max_tokens=100_000), INVALID),
    (dict(text=""), INVALID),
])
def test_bad_generate_requests_are_refused_with_their_status(served, request_fields, status):
    text = request_fields.pop("text", PROMPT)
    assert status_of(lambda: served.stub.Generate(text_request(text, **request_fields))) == status
    assert status_of(lambda: served.stub.GenerateStream(text_request(text, **request_fields))) == status


@pytest.fixture(scope="module")
def bad_adapters(adapters, adapter_root, base_model):
    """Adapter directories inside the root, each wrong in exactly one way (digest recomputed)."""
    good = adapters["v000001"]
    bad = adapter_root / "bad"
    bad.mkdir()

    def renamed_key(tensors):
        key = next(iter(tensors))
        return {**{k: v for k, v in tensors.items() if k != key}, key.replace("lora_A", "lora_X"): tensors[key]}

    def wrong_in_features(tensors):
        return {k: (torch.zeros(v.shape[0], v.shape[1] + 1) if "lora_A" in k else v) for k, v in tensors.items()}

    return {
        "dora": variant_adapter(good, bad / "dora", config_changes=dict(use_dora=True)),
        "bias": variant_adapter(good, bad / "bias", config_changes=dict(bias="lora_only")),
        "modules_to_save": variant_adapter(good, bad / "mts", config_changes=dict(modules_to_save=["lm_head"])),
        "other_base": variant_adapter(good, bad / "other", config_changes=dict(
            base_model_name_or_path="Qwen/Qwen2.5-0.5B")),
        "bad_key": variant_adapter(good, bad / "key", tensors=renamed_key),
        "wrong_shape": variant_adapter(good, bad / "shape", tensors=wrong_in_features),
        "rank_32": make_adapter(base_model, bad / "rank32", seed=3, rank=32),
    }


@pytest.mark.parametrize("case, status, message", [
    (dict(name="bad name"), INVALID, "adapter name"),
    (dict(sha256="abc"), INVALID, "64 hex digits"),
    (dict(uri="s3://bucket/run-1/v000001"), INVALID, "scheme 's3'"),
    (dict(uri="../../etc"), DENIED, "outside this engine's adapter root"),
    (dict(uri="file:///etc"), DENIED, "outside this engine's adapter root"),
    (dict(uri="run-1/v999999"), NOT_FOUND, "does not exist"),
    (dict(sha256="0" * 64), PRECONDITION, "sha256 is"),
    (dict(adapter="other_base"), PRECONDITION, "Qwen/Qwen2.5-0.5B"),
    (dict(adapter="rank_32"), PRECONDITION, "rank 32 is above"),
    (dict(adapter="wrong_shape"), PRECONDITION, "another model"),
    (dict(adapter="dora"), INVALID, "DoRA"),
    (dict(adapter="bias"), INVALID, "bias"),
    (dict(adapter="modules_to_save"), INVALID, "modules_to_save"),
    (dict(adapter="bad_key"), INVALID, "lora_X"),
    (dict(name="run-1/v000001"), EXISTS, "already ready"),
])
def test_every_load_refusal_has_its_status_and_an_actionable_message(served, adapters, bad_adapters, case, status,
                                                                     message):
    adapter = bad_adapters[case["adapter"]] if "adapter" in case else adapters["v000002"]
    request = engine_pb2.LoadAdapterRequest(name=case.get("name", "refused"),
                                            uri=case.get("uri", adapter.path.as_uri()),
                                            sha256=case.get("sha256", adapter.sha256))
    with pytest.raises(grpc.RpcError) as refusal:
        served.stub.LoadAdapter(request)
    assert refusal.value.code() == status
    assert message in refusal.value.details()
    assert "refused" not in {a.name for a in served.stub.ListAdapters(engine_pb2.ListAdaptersRequest()).adapters}


def test_a_full_engine_refuses_loads_until_one_is_unloaded(target, adapter_root, adapters):
    if target.backend != "hf":
        pytest.skip("starts an engine of its own (a vLLM start takes a minute); the limit is the registry's, the same "
                    "code for every backend")
    server = ServerThread(engine_config(target, adapter_root, max_loras=1))
    try:
        load(server.stub, "first", adapters["v000001"])
        assert status_of(lambda: load(server.stub, "second", adapters["v000002"])) == PRECONDITION
        server.stub.UnloadAdapter(engine_pb2.UnloadAdapterRequest(name="first"))
        load(server.stub, "second", adapters["v000002"])
        # the name "first" is bound to its digest: other content under it is refused, the same content is not
        assert status_of(lambda: load(server.stub, "first", adapters["v000002"])) == EXISTS
    finally:
        server.stop()


def test_unloading_what_is_not_loaded_is_refused(served):
    assert status_of(lambda: served.stub.UnloadAdapter(engine_pb2.UnloadAdapterRequest(name="run-9/v1"))) == NOT_FOUND
    assert status_of(lambda: served.stub.UnloadAdapter(engine_pb2.UnloadAdapterRequest(name=""))) == INVALID


# --- adapters changing under load --------------------------------------------------------------------------------

def test_loading_and_unloading_during_generation_breaks_no_in_flight_request(engine, adapters, target):
    server, backend = engine, engine.server.backend
    load(server.stub, "v1", adapters["v000001"])
    expected = {adapter: greedy(server.stub, adapter, max_tokens=32) for adapter in ("v1", "")}
    streams = {adapter: server.stub.GenerateStream(text_request(PROMPT, adapter=adapter, max_tokens=32,
                                                                request_id=f"hold-{adapter}"))
               for adapter in ("v1", "")}
    first = {adapter: next(stream).text_delta for adapter, stream in streams.items()}  # both in flight now

    load(server.stub, "v2", adapters["v000002"])           # a new version arrives mid-generation
    assert server.stub.Health(engine_pb2.EngineHealthRequest()).in_flight == 2
    unloaded = threading.Event()
    unloader = threading.Thread(target=lambda: (server.stub.UnloadAdapter(
        engine_pb2.UnloadAdapterRequest(name="v1")), unloaded.set()))
    unloader.start()
    deadline = time.monotonic() + 30
    while server.service_state("v1") != "draining" and time.monotonic() < deadline:
        time.sleep(0.005)
    # v1 takes no new requests once its unload began; the one in flight goes on and the unload waits for it
    assert status_of(lambda: server.stub.Generate(text_request(PROMPT, adapter="v1"))) == PRECONDITION
    assert not unloaded.wait(0.3), "unload returned while a request still used the adapter"

    backend.release.set()
    for adapter, stream in streams.items():
        # finished, each on the adapter it started with
        text = first[adapter] + "".join(chunk.text_delta for chunk in stream)
        assert same_greedy(text, expected[adapter], target.exact), (adapter, text, expected[adapter])
    unloader.join(30)
    assert unloaded.is_set()
    assert status_of(lambda: server.stub.Generate(text_request(PROMPT, adapter="v1"))) == NOT_FOUND
    assert greedy(server.stub, "v2") != greedy(server.stub, "")
    server.stub.UnloadAdapter(engine_pb2.UnloadAdapterRequest(name="v2"))


def test_a_client_that_goes_away_returns_its_lease(engine, adapters):
    load(engine.stub, "gone", adapters["v000001"])
    stream = engine.stub.GenerateStream(text_request(PROMPT, adapter="gone", max_tokens=2000))
    next(stream)
    assert {a.name: a.in_flight for a in engine.stub.ListAdapters(engine_pb2.ListAdaptersRequest()).adapters
            }["gone"] == 1
    stream.cancel()
    engine.stub.UnloadAdapter(engine_pb2.UnloadAdapterRequest(name="gone"), timeout=30)  # would wait forever
    assert engine.stub.Health(engine_pb2.EngineHealthRequest()).in_flight == 0


def test_sixteen_concurrent_clients_get_correct_answers_without_errors(served, adapters, target):
    adapters_used = ["", "run-1/v000001", "run-1/v000002"]
    expected = {adapter: greedy(served.stub, adapter, max_tokens=12) for adapter in adapters_used}

    def client(i: int) -> list[tuple[str, str]]:
        channel = grpc.insecure_channel(served.address)  # each client its own connection
        stub = type(served.stub)(channel)
        seen = []
        try:
            for j in range(3):
                adapter = adapters_used[(i + j) % 3]
                if (i + j) % 2:
                    seen.append((adapter, greedy(stub, adapter, max_tokens=12)))
                else:
                    seen.append((adapter, streamed(stub, text_request(PROMPT, adapter=adapter, max_tokens=12))[0][0]))
        finally:
            channel.close()
        return seen

    with ThreadPoolExecutor(16) as pool:
        results = [r for rs in pool.map(client, range(16)) for r in rs]
    assert len(results) == 48
    assert all(same_greedy(text, expected[adapter], target.exact) for adapter, text in results), results
