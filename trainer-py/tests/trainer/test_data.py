"""From examples to tensors: chat template, prompt masking, truncation, collation, JSONL files."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from vllm_train.data import (
    PairTokenizer,
    PreferenceExample,
    SFTExample,
    collate_pairs,
    prompt_from_record,
    read_preference_jsonl,
    read_sft_jsonl,
    render_prompt,
)


@pytest.fixture(scope="module")
def tok(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_chat_prompts_use_the_chat_template_and_text_prompts_are_kept_as_is(tok):
    messages = [{"role": "user", "content": "hi"}]
    assert render_prompt(tok, messages) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(tok, "raw text") == "raw text"


def test_without_a_chat_template_messages_become_role_lines(tok):
    plain = AutoTokenizer.from_pretrained(tok.name_or_path)
    plain.chat_template = None
    assert render_prompt(plain, [{"role": "user", "content": "hi"}]) == "user: hi\nassistant: "


def test_a_pair_is_prompt_then_completion_then_eos(tok):
    pair = PairTokenizer(tok).pair(PreferenceExample("the sky is", " blue", " red", weight=0.5))
    assert list(pair.prompt_ids) == ids(tok, "the sky is")
    assert list(pair.chosen_ids) == ids(tok, " blue") + [tok.eos_token_id]
    assert list(pair.rejected_ids) == ids(tok, " red") + [tok.eos_token_id]
    assert (pair.weight, pair.truncated) == (0.5, False)


def test_long_prompts_lose_their_beginning_and_long_completions_their_end(tok):
    prompt = " ".join(["one", "two", "three", "four", "five", "six"])
    pair = PairTokenizer(tok, max_prompt_length=3, max_length=5).pair(
        PreferenceExample(prompt, " red blue green yellow", " cat"))
    assert list(pair.prompt_ids) == ids(tok, prompt)[-3:]
    assert list(pair.chosen_ids) == ids(tok, " red blue")
    assert list(pair.rejected_ids) == ids(tok, " cat") + [tok.eos_token_id]
    assert pair.truncated


def test_collated_pairs_put_chosen_rows_first_and_mask_only_completions(tok):
    t = PairTokenizer(tok)
    a = t.pair(PreferenceExample("the sky is", " blue", " very red today"))
    b = t.pair(PreferenceExample("a", " cat", " dog", weight=2.0))
    batch = collate_pairs([a, b], pad_id=tok.pad_token_id)
    assert batch.input_ids.shape[0] == 4
    rows = [(a.prompt_ids, a.chosen_ids), (b.prompt_ids, b.chosen_ids), (a.prompt_ids, a.rejected_ids),
            (b.prompt_ids, b.rejected_ids)]
    for r, (prompt, completion) in enumerate(rows):
        n = len(prompt) + len(completion)
        assert batch.input_ids[r, :n].tolist() == [*prompt, *completion]
        assert batch.attention_mask[r].tolist() == [1] * n + [0] * (batch.input_ids.shape[1] - n)
        assert batch.completion_mask[r].nonzero().flatten().tolist() == list(range(len(prompt), n))
        assert (batch.input_ids[r, n:] == tok.pad_token_id).all()
    assert batch.weights.tolist() == [1.0, 2.0]
    assert batch.num_tokens == a.num_tokens + b.num_tokens


def test_avro_prompt_records_become_text_or_messages():
    assert prompt_from_record({"messages": [], "text": "hello"}) == "hello"
    msgs = prompt_from_record({"messages": [{"role": "user", "content": "hi"}], "text": None})
    assert msgs == [{"role": "user", "content": "hi"}]


def test_avro_pair_record_keeps_weight_versions_and_edit_flags():
    record = {"pair_id": "p1", "prompt": {"messages": [], "text": "q"}, "chosen": "a", "rejected": "b",
              "weight": 0.5, "chosen_response_id": None, "rejected_response_id": "r2",
              "chosen_adapter_version": None, "rejected_adapter_version": "run/v000003"}
    ex = PreferenceExample.from_record(record)
    assert (ex.prompt, ex.chosen, ex.rejected, ex.weight, ex.pair_id) == ("q", "a", "b", 0.5, "p1")
    assert (ex.chosen_generated, ex.rejected_generated) == (False, True)
    assert ex.rejected_adapter_version == "run/v000003"


def test_jsonl_files_are_read_and_errors_name_the_line(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n\n" +
                    json.dumps({"messages": [{"role": "user", "content": "hi"}], "chosen": "c", "rejected": "d",
                                "weight": 2}) + "\n")
    pairs = read_preference_jsonl(good)
    assert [p.chosen for p in pairs] == ["a", "c"] and pairs[1].weight == 2.0
    assert pairs[1].prompt == [{"role": "user", "content": "hi"}]
    sft = tmp_path / "s.jsonl"
    sft.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    assert read_sft_jsonl(sft) == [SFTExample("q", "a")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing text field\(s\) \['rejected'\]"):
        read_preference_jsonl(bad)
