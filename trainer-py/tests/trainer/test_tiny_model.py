"""The tiny model is an ordinary HF model directory, identical for a seed, with a usable tokenizer and chat template."""

import hashlib

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from vllm_train import tiny_model
from vllm_train.tiny_model import WORD_CLASSES, create_tiny_model, tiny_model_path


def _digests(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = _digests(create_tiny_model(tmp_path / "a", seed=3))
    b = _digests(create_tiny_model(tmp_path / "b", seed=3))
    assert a == b
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(a)


def test_another_seed_gives_other_weights_and_the_same_tokenizer(tmp_path):
    a = _digests(create_tiny_model(tmp_path / "a", seed=0))
    b = _digests(create_tiny_model(tmp_path / "b", seed=1))
    assert a["model.safetensors"] != b["model.safetensors"]
    assert a["tokenizer.json"] == b["tokenizer.json"]


def test_creating_the_model_leaves_the_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    create_tiny_model(tmp_path / "m", seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_loads_with_auto_classes_and_generates(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is your favorite color?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 5) or tok.eos_token_id in out[0, ids.shape[1]:].tolist()
    assert model.config.vocab_size >= len(tok)


def test_chat_template_renders_roles_and_generation_prompt(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_every_class_word_is_one_token_and_any_text_round_trips(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for word in (w for words in WORD_CLASSES.values() for w in words):
        assert len(tok(" " + word, add_special_tokens=False)["input_ids"]) == 1, word
    text = "Zebras ünïcode 😀 and the blue sky."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_cached_copy_is_built_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_TRAIN_CACHE", str(tmp_path))
    first = tiny_model_path(seed=5)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_path(seed=5) == first == tmp_path / "tiny-model-5"
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-model-5"]  # no temp dirs left behind


def test_cli_writes_the_model(tmp_path, capsys):
    assert tiny_model.main(["--out", str(tmp_path / "cli"), "--seed", "2"]) == 0
    assert _digests(tmp_path / "cli") == _digests(create_tiny_model(tmp_path / "lib", seed=2))
    assert "written to" in capsys.readouterr().out
