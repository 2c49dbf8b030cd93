"""Losses as pure functions of tensors: DPO and its variants, the causal-LM (SFT) loss, and the memory-lean
per-token log-probabilities both are built on."""

from vllm_train.losses.causal_lm import causal_lm_loss
from vllm_train.losses.dpo import DPO_LOSS_TYPES, dpo_loss
from vllm_train.losses.logprobs import sequence_logprobs, token_logprobs

__all__ = ["DPO_LOSS_TYPES", "causal_lm_loss", "dpo_loss", "sequence_logprobs", "token_logprobs"]
