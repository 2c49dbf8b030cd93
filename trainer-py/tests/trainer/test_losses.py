"""DPO and causal-LM losses, checked with numbers against independent float64 formulas written here."""

import math

import pytest
import torch
import torch.nn.functional as F

from vllm_train.losses import causal_lm_loss, dpo_loss, sequence_logprobs, token_logprobs


def reference_dpo(pc, pr, rc, rr, beta, loss_type, eps):
    """The DPO family from the papers, one pair at a time, in float64 with math only."""
    out = []
    for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist()):
        h = (a - b) - (c - d)
        log_sig = lambda x: -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))
        if loss_type == "sigmoid":
            out.append(-(1 - eps) * log_sig(beta * h) - eps * log_sig(-beta * h))
        elif loss_type == "robust":
            out.append((-(1 - eps) * log_sig(beta * h) + eps * log_sig(-beta * h)) / (1 - 2 * eps))
        elif loss_type == "ipo":
            out.append((h - 1 / (2 * beta)) ** 2)
        elif loss_type == "hinge":
            out.append(max(0.0, 1 - beta * h))
    return torch.tensor(out, dtype=torch.float64)


def logps(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return [(-30 * torch.rand(n, generator=g, dtype=torch.float64)) for _ in range(4)]


def test_first_step_sigmoid_loss_is_ln2_when_policy_equals_reference():
    pc, pr, _, _ = logps(0)
    losses, chosen, rejected = dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    assert torch.allclose(losses, torch.full_like(losses, math.log(2)), atol=1e-12)
    assert float(losses.mean()) == pytest.approx(0.693147, abs=1e-6)
    assert torch.equal(chosen, torch.zeros_like(chosen)) and torch.equal(rejected, torch.zeros_like(rejected))


@pytest.mark.parametrize("loss_type, eps", [("sigmoid", 0.0), ("sigmoid", 0.1), ("robust", 0.2), ("ipo", 0.0),
                                            ("hinge", 0.0)])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_values_and_gradients_match_the_float64_reference(loss_type, eps, beta):
    pc, pr, rc, rr = logps(1)
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=beta, loss_type=loss_type, label_smoothing=eps)
    expected = reference_dpo(pc.detach(), pr.detach(), rc, rr, beta, loss_type, eps)
    assert torch.allclose(losses.detach(), expected, rtol=1e-10, atol=1e-12)
    losses.sum().backward()
    # Gradient by central differences of the float64 reference, per element.
    step = 1e-6
    for tensor in (pc, pr):
        numeric = torch.zeros_like(tensor)
        for i in range(tensor.numel()):
            up, down = tensor.detach().clone(), tensor.detach().clone()
            up[i] += step
            down[i] -= step
            args_up = (up, pr.detach(), rc, rr) if tensor is pc else (pc.detach(), up, rc, rr)
            args_dn = (down, pr.detach(), rc, rr) if tensor is pc else (pc.detach(), down, rc, rr)
            numeric[i] = (reference_dpo(*args_up, beta, loss_type, eps).sum()
                          - reference_dpo(*args_dn, beta, loss_type, eps).sum()) / (2 * step)
        assert torch.allclose(tensor.grad, numeric, rtol=1e-5, atol=1e-7)
    assert torch.allclose(chosen, beta * (pc.detach() - rc))
    assert torch.allclose(rejected, beta * (pr.detach() - rr))


def test_rewards_carry_no_gradient():
    pc, pr, rc, rr = logps(2)
    pc.requires_grad_(True)
    _, chosen, rejected = dpo_loss(pc, pr, rc, rr)
    assert not chosen.requires_grad and not rejected.requires_grad


def test_preferring_chosen_more_than_the_reference_lowers_the_sigmoid_loss():
    zero = torch.zeros(1, dtype=torch.float64)
    better, *_ = dpo_loss(zero + 1.0, zero - 1.0, zero, zero)
    worse, *_ = dpo_loss(zero - 1.0, zero + 1.0, zero, zero)
    assert float(better) < math.log(2) < float(worse)


@pytest.mark.parametrize("kwargs, words", [({"loss_type": "kto"}, "unknown DPO loss_type"), ({"beta": 0.0}, "beta"),
                                           ({"label_smoothing": 0.5}, "label_smoothing")])
def test_bad_arguments_are_refused(kwargs, words):
    x = torch.zeros(2)
    with pytest.raises(ValueError, match=words):
        dpo_loss(x, x, x, x, **kwargs)


def _head_problem(seed=0, rows=3, width=7, hidden=16, vocab=50):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(rows, width, hidden, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(vocab, hidden, generator=g, dtype=torch.float64)
    ids = torch.randint(0, vocab, (rows, width), generator=g)
    mask = torch.zeros(rows, width, dtype=torch.bool)
    mask[0, 3:] = True
    mask[1, 5:6] = True
    mask[2, 2:5] = True  # row 2 has padding after its completion
    return h, w, ids, mask


@pytest.mark.parametrize("chunk", [1, 2, 4, 1000])
def test_chunked_sequence_logprobs_equal_a_full_log_softmax_with_gradients(chunk):
    h, w, ids, mask = _head_problem()
    got, counts = sequence_logprobs(h, w, ids, mask, chunk_tokens=chunk)
    full = torch.log_softmax(h @ w.t(), dim=-1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    expected = (full * mask[:, 1:]).sum(dim=1)
    assert counts.tolist() == [4, 1, 3]
    assert torch.allclose(got.double(), expected, rtol=1e-6)
    (g_got,) = torch.autograd.grad(got.sum(), h)
    (g_exp,) = torch.autograd.grad(expected.sum(), h)
    assert torch.allclose(g_got, g_exp, rtol=1e-5, atol=1e-7)


def test_prompt_and_padding_positions_do_not_affect_the_logprobs():
    h, w, ids, mask = _head_problem()
    before, _ = sequence_logprobs(h.detach(), w, ids, mask)
    ids2 = ids.clone()
    ids2[2, 5:] = 0   # change padding
    ids2[0, 0:3] = 1  # change prompt tokens (their hidden states are given, so only the ids matter)
    after, _ = sequence_logprobs(h.detach(), w, ids2, mask)
    assert torch.equal(before, after)


def test_softcap_is_applied_before_the_softmax():
    h, w, ids, mask = _head_problem()
    t = token_logprobs(h[0, :3].detach(), w, ids[0, 1:4], softcap=2.0)
    logits = 2.0 * torch.tanh((h[0, :3].detach() @ w.t()) / 2.0)
    expected = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:4, None]).squeeze(-1)
    assert torch.allclose(t.double(), expected, rtol=1e-6)


def test_causal_lm_loss_equals_cross_entropy_on_completion_tokens():
    h, w, ids, mask = _head_problem()
    loss = causal_lm_loss(h, w, ids, mask, chunk_tokens=3)
    logits = (h @ w.t())[:, :-1]
    targets = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    assert torch.allclose(loss.double(), expected, rtol=1e-6)


def test_causal_lm_loss_refuses_a_batch_without_completion_tokens():
    h, w, ids, mask = _head_problem()
    with pytest.raises(ValueError, match="no completion tokens"):
        causal_lm_loss(h, w, ids, torch.zeros_like(mask))
