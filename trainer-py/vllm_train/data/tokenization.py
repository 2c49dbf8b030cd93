"""From examples to token ids: chat-template rendering, prompt/completion split and truncation.

The prompt is rendered the way the engine renders it for generation (chat template with the generation prompt for
messages, the text as is otherwise), tokenised on its own, and the completion is tokenised after it followed by the
end-of-sequence token, so training sees exactly the token sequence the model produced or should produce.
"""

from __future__ import annotations

from dataclasses import dataclass

from vllm_train.data.examples import PreferenceExample, PromptInput, SFTExample


def render_prompt(tokenizer, prompt: PromptInput) -> str:
    """The prompt as the text the model reads. Messages go through the tokenizer's chat template (with the assistant
    turn opened); a tokenizer without one gets ``role: content`` lines. Text is used as is."""
    if isinstance(prompt, str):
        return prompt
    messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
    if not messages:
        raise ValueError("a chat prompt needs at least one message")
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "


def encode_prompt(tokenizer, prompt: PromptInput) -> list[int]:
    text = render_prompt(tokenizer, prompt)
    # A chat template writes its own special tokens; raw text gets the tokenizer's usual ones (e.g. BOS).
    return list(tokenizer(text, add_special_tokens=isinstance(prompt, str))["input_ids"])


def encode_completion(tokenizer, completion: str) -> list[int]:
    ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


@dataclass(frozen=True)
class TokenizedPair:
    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    weight: float = 1.0
    truncated: bool = False
    """Whether the prompt lost its beginning or a completion its end."""

    @property
    def num_tokens(self) -> int:
        """Tokens in the concatenated forward: the prompt twice, both completions."""
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


@dataclass(frozen=True)
class TokenizedSequence:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    truncated: bool = False


def _truncate(prompt: list[int], completions: list[list[int]], max_prompt_length: int, max_length: int):
    truncated = len(prompt) > max_prompt_length
    prompt = prompt[-max_prompt_length:]  # keep the end: that is what the completion answers
    budget = max_length - len(prompt)
    cut = []
    for c in completions:
        truncated |= len(c) > budget
        cut.append(c[:budget])
    return prompt, cut, truncated


class PairTokenizer:
    """Tokenises preference and SFT examples for a model, with the config's length limits."""

    def __init__(self, tokenizer, max_prompt_length: int = 512, max_length: int = 1024):
        if max_length <= max_prompt_length:
            raise ValueError(f"max_length ({max_length}) must exceed max_prompt_length ({max_prompt_length})")
        self.tokenizer = tokenizer
        self.max_prompt_length = max_prompt_length
        self.max_length = max_length

    def pair(self, example: PreferenceExample) -> TokenizedPair:
        prompt, (chosen, rejected), truncated = _truncate(
            encode_prompt(self.tokenizer, example.prompt),
            [encode_completion(self.tokenizer, example.chosen), encode_completion(self.tokenizer, example.rejected)],
            self.max_prompt_length, self.max_length)
        return TokenizedPair(tuple(prompt), tuple(chosen), tuple(rejected), float(example.weight), truncated)

    def sequence(self, example: SFTExample) -> TokenizedSequence:
        prompt, (completion,), truncated = _truncate(
            encode_prompt(self.tokenizer, example.prompt), [encode_completion(self.tokenizer, example.completion)],
            self.max_prompt_length, self.max_length)
        return TokenizedSequence(tuple(prompt), tuple(completion), truncated)
