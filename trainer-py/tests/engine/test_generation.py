"""Request semantics shared by both backends: sampling validation, prompt rendering, and the incremental detokenizer
with stop strings (CompletionTracker)."""

import pytest
from transformers import AutoTokenizer

from vllm_train.engine.errors import InvalidArgument
from vllm_train.engine.generation import CompletionTracker, PromptRenderer, sampling_from_proto
from vllm_train.proto.v1 import common_pb2

# A toy vocabulary: token i is VOCAB[i]; EOS is 0.
VOCAB = ["<eos>", "Hel", "lo", " wor", "ld", "\n", "EN", "D", "!", "ab", "c"]
EOS = 0


def decode(ids):
    return "".join(VOCAB[i] for i in ids if i != EOS)


def run(tokens, **kw):
    tracker = CompletionTracker(decode, eos_token_ids=[EOS], **{"max_tokens": 100, **kw})
    deltas = [tracker.feed(t) for t in tokens]
    return tracker, deltas


def test_deltas_concatenate_to_the_decoded_text():
    tracker, deltas = run([1, 2, 3, 4, 0])
    assert "".join(deltas) == "Hello world" == tracker.text
    assert tracker.finish_reason == "stop" and tracker.completion_tokens == 5  # EOS counts


def test_a_stop_string_ends_the_completion_and_is_not_in_its_text():
    tracker, deltas = run([1, 2, 6, 7, 3, 4], stop=["END"])
    assert tracker.text == "Hello" and "".join(deltas) == "Hello"
    assert tracker.finish_reason == "stop" and tracker.completion_tokens == 4
    assert deltas[4:] == ["", ""]  # fed after the finish: ignored


def test_text_that_may_start_a_stop_string_is_held_back_until_decided():
    tracker, deltas = run([1, 6, 8, 4], stop=["END"])
    assert deltas == ["Hel", "", "EN!", "ld"]  # "EN" waited: it could have become "END"
    assert tracker.finish_reason is None


def test_a_stop_string_split_over_several_tokens_is_found():
    tracker, deltas = run([9, 10, 1], stop=["bc"])
    assert tracker.text == "a" and tracker.finish_reason == "stop"


def test_max_tokens_ends_with_length_and_flushes_held_back_text():
    tracker, deltas = run([1, 6], stop=["END"], max_tokens=2)
    assert tracker.text == "HelEN" and tracker.finish_reason == "length" and tracker.completion_tokens == 2


def test_the_earliest_of_several_stop_strings_wins():
    tracker, _ = run([1, 2, 5, 3, 8], stop=["!", "\n"])
    assert tracker.text == "Hello"


def test_abort_hands_out_nothing_more():
    tracker, deltas = run([1, 6], stop=["END"])
    tracker.abort()
    assert tracker.finish_reason == "abort" and tracker.text == "Hel" and tracker.feed(2) == ""


def test_half_characters_wait_for_the_token_that_completes_them(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = tokenizer("héllo wörld ✓ 🙂")["input_ids"]
    tracker = CompletionTracker(lambda t: tokenizer.decode(t, skip_special_tokens=True), max_tokens=len(ids))
    deltas = [tracker.feed(t) for t in ids]
    assert "".join(deltas) == "héllo wörld ✓ 🙂"
    assert all("\ufffd" not in d for d in deltas)


def sampling(**fields):
    return sampling_from_proto(common_pb2.SamplingParams(**fields), max_n=4, default_max_tokens=128,
                               max_tokens_limit=512, max_stop_strings=2)


def test_unset_sampling_fields_take_the_documented_defaults():
    spec = sampling()
    assert (spec.n, spec.temperature, spec.top_p, spec.max_tokens, spec.seed, spec.stop) == (1, 1.0, 1.0, 128,
                                                                                          None, ())
    assert sampling(temperature=0.0).greedy and sampling(seed=0).seed == 0


@pytest.mark.parametrize("fields, message", [
    (dict(n=5), "sampling.n must be 1..4"),
    (dict(temperature=-0.1), "temperature must be >= 0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(max_tokens=513), "max_tokens must be 1..512"),
    (dict(max_tokens=-1), "max_tokens must be 1..512"),
    (dict(seed=-1), "seed must be"),
    (dict(stop=["a", "b", "c"]), "at most 2"),
    (dict(stop=[""]), "empty strings"),
])
def test_out_of_range_sampling_is_invalid_argument(fields, message):
    with pytest.raises(InvalidArgument, match=message):
        sampling(**fields)


@pytest.fixture(scope="module")
def renderer(tiny_model):
    return PromptRenderer(AutoTokenizer.from_pretrained(tiny_model), max_context=64)


def test_chat_messages_are_rendered_with_the_chat_template(renderer):
    prompt = common_pb2.Prompt(messages=[common_pb2.ChatMessage(role="user", content="hello")])
    ids = renderer.render(prompt, max_tokens=8)
    assert renderer.tokenizer.decode(ids) == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"


def test_text_prompts_are_tokenized_as_is(renderer):
    ids = renderer.render(common_pb2.Prompt(text="the red cat"), max_tokens=8)
    assert renderer.tokenizer.decode(ids) == "the red cat"


@pytest.mark.parametrize("prompt, max_tokens, message", [
    (common_pb2.Prompt(), 8, "exactly one of text and messages"),
    (common_pb2.Prompt(text="hi", messages=[common_pb2.ChatMessage(role="user", content="hi")]), 8, "both are set"),
    (common_pb2.Prompt(messages=[common_pb2.ChatMessage(role="robot", content="hi")]), 8, "role must be one of"),
    (common_pb2.Prompt(text="the red cat"), 62, "exceeds the model's context of 64"),
])
def test_unusable_prompts_are_invalid_argument(renderer, prompt, max_tokens, message):
    with pytest.raises(InvalidArgument, match=message):
        renderer.render(prompt, max_tokens)
