"""Token log-probabilities through a frozen LM head with the gradient taken while the logits exist (the fast path).

Same values as :func:`vllm_train.losses.logprobs.token_logprobs`; cheaper backward. The checkpointed version keeps
nothing and recomputes each chunk's logits in the backward pass: three ``[chunk, H] x [H, V]`` matrix products per
scored token (forward, recompute, gradient). Here, while a chunk's float32 logits exist in the forward pass, the
derivative of each token's log-probability with respect to its hidden state is also computed,

    d logp_t / d h_t = (onehot(target_t) - softmax(z_t)) * dz/dlogits @ W      (dz/dlogits = 1 - tanh^2 with softcap)

and stored as one ``[N, H]`` tensor in the hidden states' dtype; the backward pass only scales its rows by the
incoming per-token gradient. Two products per token instead of three, and still only ``chunk x vocab`` float32
logits at any time. It needs a head that is not trained (the LoRA case: vLLM does not serve adapters on the head);
a trainable head or bias falls back to the checkpointed version.
"""

from __future__ import annotations

import torch


class _FrozenHeadTokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                chunk_tokens: int, softcap: float | None) -> torch.Tensor:
        n = hidden.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=hidden.device)
        dlogp_dh = torch.empty_like(hidden)
        rows = torch.arange(min(n, chunk_tokens), device=hidden.device)
        for start in range(0, n, chunk_tokens):
            h, t = hidden[start:start + chunk_tokens], targets[start:start + chunk_tokens]
            logits = h @ weight.t()
            if bias is not None:
                logits = logits + bias
            z = logits.float()
            del logits
            capped = None
            if softcap:
                capped = torch.tanh(z / softcap)
                z = softcap * capped
            lse = torch.logsumexp(z, dim=-1)
            r = rows[:h.shape[0]]
            out[start:start + h.shape[0]] = z[r, t] - lse
            # z becomes softmax(z) - onehot(target) in place: minus the derivative of logp with respect to z.
            probs = z.sub_(lse.unsqueeze(-1)).exp_()
            probs[r, t] -= 1.0
            if capped is not None:
                probs.mul_(1.0 - capped.square_())
            torch.matmul(probs.to(weight.dtype), weight, out=dlogp_dh[start:start + h.shape[0]])
            del probs, z, capped
        dlogp_dh.neg_()
        ctx.save_for_backward(dlogp_dh)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (dlogp_dh,) = ctx.saved_tensors
        grad_hidden = (dlogp_dh.float() * grad_out.unsqueeze(-1)).to(dlogp_dh.dtype)
        return grad_hidden, None, None, None, None, None


def frozen_head_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                               bias: torch.Tensor | None = None, chunk_tokens: int = 2048,
                               softcap: float | None = None) -> torch.Tensor:
    """``log softmax(hidden @ weight.T + bias)[target]`` per row in float32, differentiable in ``hidden`` only.

    Raises ``ValueError`` if ``weight`` or ``bias`` requires a gradient (use ``token_logprobs`` for a trained head).
    """
    if weight.requires_grad or (bias is not None and bias.requires_grad):
        raise ValueError("frozen_head_token_logprobs needs a frozen LM head (weight and bias without gradients)")
    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.float32)
    return _FrozenHeadTokenLogprobs.apply(hidden, weight, bias, targets, chunk_tokens, softcap)
