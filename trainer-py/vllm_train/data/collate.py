"""Padding tokenised examples into tensors: chosen and rejected of every pair in one batch for one forward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from vllm_train.data.tokenization import TokenizedPair, TokenizedSequence


@dataclass
class SequenceBatch:
    """Right-padded sequences. For a pair batch of P pairs, rows 0..P-1 are the chosen sequences and rows P..2P-1
    the rejected ones, in the same order."""

    input_ids: torch.Tensor       # [rows, T] long
    attention_mask: torch.Tensor  # [rows, T] long, 1 on real tokens
    completion_mask: torch.Tensor  # [rows, T] bool, true on completion tokens
    weights: torch.Tensor         # [pairs] float32 (pair batches) or [rows] (SFT)

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device) -> "SequenceBatch":
        return SequenceBatch(self.input_ids.to(device), self.attention_mask.to(device),
                             self.completion_mask.to(device), self.weights.to(device))


def _pad(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> tuple[torch.Tensor, ...]:
    width = max(len(p) + len(c) for p, c in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    completion = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, (prompt, comp) in enumerate(sequences):
        n = len(prompt) + len(comp)
        ids[row, :n] = torch.tensor([*prompt, *comp], dtype=torch.long)
        attention[row, :n] = 1
        completion[row, len(prompt):n] = True
    return ids, attention, completion


def collate_pairs(pairs: Sequence[TokenizedPair], pad_id: int) -> SequenceBatch:
    if not pairs:
        raise ValueError("cannot collate an empty list of pairs")
    rows = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    ids, attention, completion = _pad(rows, pad_id)
    return SequenceBatch(ids, attention, completion, torch.tensor([p.weight for p in pairs], dtype=torch.float32))


def collate_sequences(sequences: Sequence[TokenizedSequence], pad_id: int) -> SequenceBatch:
    if not sequences:
        raise ValueError("cannot collate an empty list of sequences")
    ids, attention, completion = _pad([(s.prompt_ids, s.completion_ids) for s in sequences], pad_id)
    return SequenceBatch(ids, attention, completion, torch.ones(len(sequences), dtype=torch.float32))
