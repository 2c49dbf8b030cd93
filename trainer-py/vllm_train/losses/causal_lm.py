"""The causal language-modelling (SFT) loss: mean negative log-likelihood of the completion tokens."""

from __future__ import annotations

import torch

from vllm_train.losses.logprobs import sequence_logprobs


def causal_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, input_ids: torch.Tensor,
                   completion_mask: torch.Tensor, *, bias: torch.Tensor | None = None, chunk_tokens: int = 2048,
                   softcap: float | None = None) -> torch.Tensor:
    """Mean NLL per completion token over the batch (prompt and padding excluded), float32 scalar.

    Same arguments as :func:`vllm_train.losses.logprobs.sequence_logprobs`; equal to
    ``F.cross_entropy(logits[:, :-1], input_ids[:, 1:])`` restricted to completion tokens, without full logits.
    """
    logps, counts = sequence_logprobs(hidden, weight, input_ids, completion_mask, bias=bias,
                                      chunk_tokens=chunk_tokens, softcap=softcap)
    total = counts.sum()
    if int(total) == 0:
        raise ValueError("no completion tokens to score: every completion is empty or masked")
    return -logps.sum() / total
