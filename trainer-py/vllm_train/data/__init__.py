"""Training data: examples, tokenisation (chat template, truncation), collation, JSONL files."""

from vllm_train.data.collate import SequenceBatch, collate_pairs, collate_sequences
from vllm_train.data.examples import PreferenceExample, PromptInput, SFTExample, prompt_from_record
from vllm_train.data.jsonl import read_preference_jsonl, read_sft_jsonl
from vllm_train.data.tokenization import (
    PairTokenizer,
    TokenizedPair,
    TokenizedSequence,
    encode_completion,
    encode_prompt,
    render_prompt,
)

__all__ = [
    "PairTokenizer", "PreferenceExample", "PromptInput", "SFTExample", "SequenceBatch", "TokenizedPair",
    "TokenizedSequence", "collate_pairs", "collate_sequences", "encode_completion", "encode_prompt",
    "prompt_from_record", "read_preference_jsonl", "read_sft_jsonl", "render_prompt",
]
