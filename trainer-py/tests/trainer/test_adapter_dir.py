"""Adapter directories: what save_lora writes, its digest, and what validate_adapter_dir refuses (and why)."""

import hashlib
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from vllm_train.lora import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterFormatError,
    adapter_sha256,
    same_base_model,
    save_lora,
    validate_adapter_dir,
)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _peft_model(tiny_model, r=8, **kw):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=16, target_modules=TARGETS, task_type="CAUSAL_LM", **kw))
    with torch.no_grad():  # B starts at zero; give the adapter an effect so reload tests can see it
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model


@pytest.fixture
def saved(tiny_model, tmp_path):
    model = _peft_model(tiny_model)
    info = save_lora(model, tmp_path / "v000001", base_model_name="tiny-model-0")
    return model, info


def test_save_writes_exactly_the_two_files_vllm_loads(saved):
    _, info = saved
    assert sorted(p.name for p in info.path.iterdir()) == [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
    keys = load_file(info.path / ADAPTER_WEIGHTS).keys()
    assert keys and all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    assert len(keys) == 2 * len(TARGETS) * 2  # A and B, per target, per layer
    cfg = json.loads((info.path / ADAPTER_CONFIG).read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["target_modules"]) == (8, 16, sorted(TARGETS))
    assert (cfg["use_dora"], cfg["bias"], cfg["modules_to_save"]) == (False, "none", None)
    assert cfg["base_model_name_or_path"] == "tiny-model-0"
    assert (info.rank, info.alpha, info.scaling) == (8, 16.0, 2.0)


def test_saved_adapter_reloads_in_peft_with_identical_logits(saved, tiny_model):
    model, info = saved
    ids = torch.tensor([[1, 5, 300, 42, 7, 2]])
    with torch.no_grad():
        expected = model(ids).logits
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(info.path))
        got = reloaded(ids).logits
    assert torch.equal(got, expected)
    with torch.no_grad(), reloaded.disable_adapter():
        assert not torch.allclose(reloaded(ids).logits, expected)  # the adapter does change the output


def test_same_weights_give_the_same_bytes_and_digest(saved, tmp_path):
    model, info = saved
    again = save_lora(model, tmp_path / "again", base_model_name="tiny-model-0")
    assert again.sha256 == info.sha256 == adapter_sha256(info.path)


def test_digest_is_sha256_of_sorted_path_nul_bytes(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"second")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c").write_bytes(b"")
    (tmp_path / "a.json").write_bytes(b"first")
    expected = hashlib.sha256(b"a.json\0first" b"b.txt\0second" b"sub/c\0").hexdigest()
    assert adapter_sha256(tmp_path) == expected


def test_digest_changes_when_any_byte_or_name_changes(saved, tmp_path):
    _, info = saved
    before = adapter_sha256(info.path)
    (info.path / "README.md").write_text("x")
    assert adapter_sha256(info.path) != before


def test_saving_over_an_existing_adapter_is_refused(saved):
    model, info = saved
    with pytest.raises(FileExistsError, match="immutable"):
        save_lora(model, info.path)


def test_validation_returns_what_the_directory_holds(saved):
    _, info = saved
    checked = validate_adapter_dir(info.path, base_model_name="/models/tiny-model-0", max_rank=8,
                                   expected_sha256=info.sha256)
    assert checked == info


def _edit_config(path, **changes):
    cfg = json.loads((path / ADAPTER_CONFIG).read_text())
    cfg.update(changes)
    (path / ADAPTER_CONFIG).write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes, reason, words", [
    ({"use_dora": True}, "dora", "DoRA"),
    ({"bias": "all"}, "bias", "bias"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save", "modules_to_save"),
    ({"lora_bias": True}, "bias", "lora_bias"),
    ({"init_lora_weights": "pissa"}, "unsupported_feature", "init_lora_weights"),
    ({"use_qalora": True}, "unsupported_feature", "QALoRA"),
    ({"rank_pattern": {"q_proj": 4}}, "unsupported_feature", "rank_pattern"),
    ({"r": 0}, "bad_config", "positive integer"),
    ({"target_modules": []}, "bad_config", "target_modules"),
    ({"r": 4}, "bad_weights", "do not match rank 4"),
    ({"target_modules": ["gate_proj"]}, "bad_weights", "not among target_modules"),
])
def test_config_that_vllm_would_refuse_is_refused_with_a_reason(saved, changes, reason, words):
    _, info = saved
    _edit_config(info.path, **changes)
    with pytest.raises(AdapterFormatError, match=words) as e:
        validate_adapter_dir(info.path)
    assert e.value.reason == reason


def test_rank_above_the_engines_limit_is_refused(saved):
    _, info = saved
    with pytest.raises(AdapterFormatError, match="above this engine's max LoRA rank 1") as e:
        validate_adapter_dir(info.path, max_rank=1)
    assert e.value.reason == "rank"


def test_adapter_of_another_base_model_is_refused(saved):
    _, info = saved
    with pytest.raises(AdapterFormatError, match="trained on 'tiny-model-0'") as e:
        validate_adapter_dir(info.path, base_model_name="Qwen/Qwen2.5-0.5B")
    assert e.value.reason == "base_model"


def test_altered_or_torn_copy_is_refused_by_digest(saved):
    _, info = saved
    weights = info.path / ADAPTER_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(AdapterFormatError) as e:
        validate_adapter_dir(info.path, expected_sha256=info.sha256, check_finite=False)
    assert e.value.reason == "sha256_mismatch"


@pytest.mark.parametrize("mutate, reason", [
    (lambda t: {**t, "base_model.model.lm_head.weight": torch.zeros(2, 2)}, "bad_weights"),
    (lambda t: {k: v for k, v in t.items() if "layers.0.self_attn.q_proj.lora_B" not in k}, "bad_weights"),
    (lambda t: {k: v.fill_(float("nan")) if "q_proj.lora_A" in k else v for k, v in t.items()}, "non_finite"),
])
def test_weights_that_are_not_a_clean_lora_are_refused(saved, mutate, reason):
    _, info = saved
    weights = info.path / ADAPTER_WEIGHTS
    save_file(mutate(load_file(weights)), str(weights))
    with pytest.raises(AdapterFormatError) as e:
        validate_adapter_dir(info.path)
    assert e.value.reason == reason


def test_missing_files_and_dirs_are_refused(saved, tmp_path):
    _, info = saved
    with pytest.raises(AdapterFormatError) as e:
        validate_adapter_dir(tmp_path / "nowhere")
    assert e.value.reason == "not_found"
    (info.path / ADAPTER_WEIGHTS).unlink()
    with pytest.raises(AdapterFormatError, match="adapter_model.safetensors") as e:
        validate_adapter_dir(info.path)
    assert e.value.reason == "missing_file"


def test_symlinks_are_refused(saved, tmp_path):
    _, info = saved
    (tmp_path / "elsewhere").write_text("x")
    (info.path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AdapterFormatError) as e:
        adapter_sha256(info.path)
    assert e.value.reason == "unexpected_file"


def test_peft_models_vllm_cannot_serve_are_refused_at_save(tiny_model, tmp_path):
    model = _peft_model(tiny_model, use_dora=True)
    with pytest.raises(AdapterFormatError) as e:
        save_lora(model, tmp_path / "dora")
    assert e.value.reason == "dora"
    assert not (tmp_path / "dora").exists()


def test_base_model_names_match_by_last_path_component():
    assert same_base_model("Qwen/Qwen2.5-0.5B", "/models/Qwen2.5-0.5B/")
    assert not same_base_model("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-1.5B")
    assert not same_base_model(None, "x")
