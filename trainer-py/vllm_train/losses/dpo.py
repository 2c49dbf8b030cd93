"""Direct Preference Optimization losses, as a pure function of summed completion log-probabilities.

With ``h = (log pi(y_w) - log pi(y_l)) - (log ref(y_w) - log ref(y_l))`` (policy log-ratio minus reference
log-ratio, per pair):

- ``sigmoid`` (Rafailov et al. 2023, with conservative label smoothing eps):
  ``-(1 - eps) log sigma(beta h) - eps log sigma(-beta h)``
- ``robust`` (Chowdhury et al. 2024, unbiased under label noise eps):
  ``(-(1 - eps) log sigma(beta h) + eps log sigma(-beta h)) / (1 - 2 eps)``
- ``ipo`` (Azar et al. 2023): ``(h - 1 / (2 beta))^2``
- ``hinge`` (SLiC, Zhao et al. 2023): ``max(0, 1 - beta h)``

Implicit rewards are ``beta (log pi(y) - log ref(y))`` for each side, detached: they are metrics, not loss terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             reference_chosen_logps: torch.Tensor, reference_rejected_logps: torch.Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO losses and implicit rewards.

    Inputs are ``[pairs]`` tensors of log-probabilities summed over each completion's tokens. Returns
    ``(losses, chosen_rewards, rejected_rewards)``, each ``[pairs]``; reduce the losses yourself (mean, or weighted).
    """
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; choose one of {list(DPO_LOSS_TYPES)}")
    if not beta > 0:
        raise ValueError(f"beta must be positive, not {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), not {label_smoothing}")
    h = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "robust":
        losses = ((-(1 - label_smoothing) * F.logsigmoid(beta * h) + label_smoothing * F.logsigmoid(-beta * h))
                  / (1 - 2 * label_smoothing))
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:  # hinge
        losses = torch.relu(1 - beta * h)
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards
