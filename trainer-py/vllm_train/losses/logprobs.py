"""Log-probabilities of given tokens without materialising float32 logits over the whole vocabulary for a batch.

Only the positions that are scored (completion tokens) are projected through the LM head, a chunk of
``chunk_tokens`` positions at a time; each chunk's logits are upcast to float32 for the log-softmax and, when gradients
are needed, recomputed in the backward pass (activation checkpointing) instead of being kept. Peak memory for this
step is therefore ``chunk_tokens x vocab`` floats, whatever the batch size or sequence length.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _chunk_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                    softcap: float | None) -> torch.Tensor:
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    logits = logits.float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                   bias: torch.Tensor | None = None, chunk_tokens: int = 2048,
                   softcap: float | None = None, fused: bool = False) -> torch.Tensor:
    """``log softmax(hidden @ weight.T + bias)[target]`` for each row, in float32.

    ``hidden``: ``[N, H]`` final hidden states at the positions that predict ``targets`` (``[N]`` token ids);
    ``weight``: the LM head ``[V, H]``. ``softcap`` applies ``c tanh(logits / c)`` for models that cap logits.
    ``fused``: with a frozen head, take the gradient in the forward pass instead of recomputing the logits in the
    backward (:mod:`vllm_train.losses.fused_logprobs`); a trainable head ignores it.
    """
    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.float32)
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    head_frozen = not weight.requires_grad and (bias is None or not bias.requires_grad)
    if fused and needs_grad and head_frozen:
        from vllm_train.losses.fused_logprobs import frozen_head_token_logprobs

        return frozen_head_token_logprobs(hidden, weight, targets, bias=bias, chunk_tokens=chunk_tokens,
                                          softcap=softcap)
    parts = []
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, t = hidden[start:start + chunk_tokens], targets[start:start + chunk_tokens]
        if needs_grad:
            parts.append(checkpoint(_chunk_logprobs, h, weight, bias, t, softcap, use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(h, weight, bias, t, softcap))
    return torch.cat(parts)


def sequence_logprobs(hidden: torch.Tensor, weight: torch.Tensor, input_ids: torch.Tensor,
                      completion_mask: torch.Tensor, *, bias: torch.Tensor | None = None, chunk_tokens: int = 2048,
                      softcap: float | None = None, fused: bool = False,
                      scored_index: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of the completion tokens of each sequence.

    ``hidden``: ``[B, T, H]`` final hidden states; ``input_ids`` and ``completion_mask`` ``[B, T]``, the mask true on
    completion tokens (never on prompt or padding). Position t predicts token t + 1, so the first token of a
    sequence is never scored. Returns ``(logps [B] float32, token_counts [B])``. ``fused``: see
    :func:`token_logprobs`. ``scored_index``: ``completion_mask[:, 1:].nonzero(as_tuple=True)`` worked out
    beforehand (e.g. on the host), so that selecting the positions needs no device-to-host sync.
    """
    if scored_index is not None:
        rows, positions = scored_index
        per_token = token_logprobs(hidden[rows, positions], weight, input_ids[rows, positions + 1], bias=bias,
                                   chunk_tokens=chunk_tokens, softcap=softcap, fused=fused)
        zeros = lambda dtype: torch.zeros(input_ids.shape[0], dtype=dtype, device=hidden.device)  # noqa: E731
        return zeros(torch.float32).index_add(0, rows, per_token), zeros(torch.long).index_add(0, rows,
                                                                                              torch.ones_like(rows))
    scored = completion_mask[:, 1:].bool()
    rows = torch.arange(input_ids.shape[0], device=input_ids.device).unsqueeze(1).expand_as(scored)[scored]
    per_token = token_logprobs(hidden[:, :-1][scored], weight, input_ids[:, 1:][scored], bias=bias,
                               chunk_tokens=chunk_tokens, softcap=softcap, fused=fused)
    logps = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=hidden.device).index_add(0, rows, per_token)
    return logps, scored.sum(dim=1)
