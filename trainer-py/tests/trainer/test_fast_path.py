"""The GPU fast path computes the same DPO step as the plain implementation (checked on the CPU, tiny model).

Exact to float32 rounding when the model is float32, within bf16 rounding when it is bfloat16; its pieces (frozen-head
log-probabilities, RMSNorm, SwiGLU, bf16 LoRA) are checked one by one against the modules they replace.
"""

import math

import pytest
import torch

from vllm_train.config import ConfigError, LoRATrainConfig
from vllm_train.data import PreferenceExample
from vllm_train.fast_path import apply_fast_path, remove_fast_path
from vllm_train.losses import sequence_logprobs, token_logprobs
from vllm_train.trainer import HybridTrainer

Q = [{"role": "user", "content": "What is your favorite color?"}]
# Different lengths: the micro-batches are padded, so the masked attention path is covered too.
PAIRS = [PreferenceExample(Q, " I like red and blue", " I like the cat"),
         PreferenceExample(Q, " green and gold", " a dog and a fox", weight=2.0),
         PreferenceExample("Tell me about the sky", " the sky is blue", " the sky is a bird"),
         PreferenceExample(Q, " pink", " owl")]
# Equal lengths within each micro-batch of 2: no padding, so the fast path drops the attention mask.
EQUAL = [PreferenceExample(Q, " red blue", " cat dog"), PreferenceExample(Q, " pink gold", " owl cow"),
         PreferenceExample(Q, " one two", " three four"), PreferenceExample(Q, " happy sad", " bread milk")]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def make(tiny_model, fast: str, dtype: str = "float32", **kw) -> HybridTrainer:
    config = LoRATrainConfig(model=tiny_model, rank=8, alpha=16, learning_rate=5e-3, lr_schedule="constant",
                             micro_batch_size=2, device="cpu", dtype=dtype, fast_path=fast, max_grad_norm=None,
                             logprob_chunk_tokens=16, **kw)
    return HybridTrainer(config)


def one_step(trainer: HybridTrainer, pairs) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and LoRA gradients of one DPO step (captured just before the optimizer applies them)."""
    grads, step = {}, trainer.optimizer.step

    def capture(*args, **kwargs):
        grads.update({n: p.grad.detach().clone() for n, p in trainer._lora_params.items()})
        return step(*args, **kwargs)

    trainer.optimizer.step = capture
    try:
        return trainer.dpo_step(pairs).loss, grads
    finally:
        trainer.optimizer.step = step


def adapter_after_two_steps(tiny_model) -> dict[str, torch.Tensor]:
    """A non-trivial adapter (B != 0, so every LoRA gradient is live), from two plain float32 steps."""
    t = make(tiny_model, "off")
    for _ in range(2):
        t.dpo_step(PAIRS)
    return t.lora_weights()


def trained_pair(tiny_model, dtype: str):
    """A plain and a fast trainer holding the same non-trivial adapter."""
    weights = adapter_after_two_steps(tiny_model)
    plain, fast = make(tiny_model, "off", dtype), make(tiny_model, "on", dtype)
    plain.load_lora_weights(weights)
    fast.load_lora_weights(weights)
    return plain, fast


@pytest.mark.parametrize("pairs", [PAIRS, EQUAL], ids=["padded", "unpadded"])
def test_fast_step_equals_the_plain_step_in_float32(tiny_model, pairs):
    plain, fast = trained_pair(tiny_model, "float32")
    assert fast.fast_path and not plain.fast_path
    loss_plain, g_plain = one_step(plain, pairs)
    loss_fast, g_fast = one_step(fast, pairs)
    assert loss_plain != pytest.approx(math.log(2), abs=1e-3)  # the adapter is live
    assert loss_fast == pytest.approx(loss_plain, rel=1e-6)
    assert set(g_fast) == set(g_plain)
    for name, g in g_plain.items():
        assert g.abs().max() > 0, name
        assert rel_err(g_fast[name], g) < 2e-5, name


@pytest.mark.parametrize("pairs", [PAIRS, EQUAL], ids=["padded", "unpadded"])
def test_fast_step_in_bf16_is_as_close_to_float32_as_the_plain_bf16_step(tiny_model, pairs):
    """Within bf16 tolerance, measured: against a float32 step on the same adapter, the fast bf16 step's loss and
    whole gradient are off by no more than the plain bf16 step's (plus a little), and each tensor by at most 3%."""
    weights = adapter_after_two_steps(tiny_model)
    results = {}
    for name, fast, dtype in (("ref", "off", "float32"), ("plain", "off", "bfloat16"), ("fast", "on", "bfloat16")):
        t = make(tiny_model, fast, dtype)
        t.load_lora_weights(weights)
        results[name] = one_step(t, pairs)
    (loss_ref, g_ref), (loss_plain, g_plain), (loss_fast, g_fast) = results["ref"], results["plain"], results["fast"]
    assert abs(loss_fast - loss_ref) <= 1.5 * abs(loss_plain - loss_ref) + 2e-3
    for name, g in g_ref.items():
        assert rel_err(g_fast[name], g) < 3e-2, name
    flat = lambda gs: torch.cat([gs[n].flatten().double() for n in sorted(gs)])
    err_fast, err_plain = rel_err(flat(g_fast), flat(g_ref)), rel_err(flat(g_plain), flat(g_ref))
    assert err_fast <= 1.5 * err_plain + 2e-3, (err_fast, err_plain)


def test_fast_path_drops_the_mask_only_when_nothing_is_padded(tiny_model):
    from vllm_train.data import collate_pairs

    fast = make(tiny_model, "on")
    prepare = lambda pairs: fast._prepare(collate_pairs(fast.tokenize(pairs), fast.tokenizer.pad_token_id))
    unpadded, padded = prepare(EQUAL), prepare(PAIRS)
    assert unpadded.attention_mask == {"full_attention": None}  # per layer type: transformers builds no mask
    assert torch.is_tensor(padded.attention_mask) and not bool(padded.attention_mask.all())
    rows, positions = padded.scored
    assert torch.equal(padded.batch.completion_mask[rows, positions + 1], torch.ones_like(rows, dtype=torch.bool))
    assert len(rows) == int(padded.batch.completion_mask[:, 1:].sum())


def test_fast_trainer_trains_like_the_plain_one_over_several_steps(tiny_model):
    plain, fast = make(tiny_model, "off"), make(tiny_model, "on")
    for _ in range(4):
        a, b = plain.dpo_step(PAIRS), fast.dpo_step(PAIRS)
        assert b.loss == pytest.approx(a.loss, rel=1e-4)
        assert b.reward_accuracy == a.reward_accuracy and b.tokens == a.tokens
    for name, w in plain.lora_weights().items():
        assert rel_err(fast.lora_weights()[name], w) < 1e-4, name


def test_reference_with_the_fast_path_is_the_base_model(tiny_model):
    plain, fast = trained_pair(tiny_model, "float32")
    for adapter in ("base", "current"):
        a, b = plain.pair_logps(PAIRS, adapter=adapter), fast.pair_logps(PAIRS, adapter=adapter)
        assert torch.allclose(a.chosen, b.chosen, atol=1e-4) and torch.allclose(a.rejected, b.rejected, atol=1e-4)


def test_fast_path_patches_every_lora_layer_norm_and_mlp_and_is_removable(tiny_model):
    fast = make(tiny_model, "on")
    report = fast.fast_path_report
    layers = fast.model.get_base_model().config.num_hidden_layers
    assert report.lora_linears == 7 * layers  # the default targets: all attention and MLP projections
    assert report.rms_norms == 2 * layers + 1 and report.swiglu_mlps == layers
    before = fast.pair_logps(PAIRS)
    assert remove_fast_path(fast.model) == report.lora_linears + report.rms_norms + report.swiglu_mlps
    fast.fast_path = False
    after = fast.pair_logps(PAIRS)
    assert torch.allclose(before.chosen, after.chosen, atol=1e-4)
    assert apply_fast_path(fast.model) == report  # and it can be applied again


def test_fast_path_is_auto_on_cuda_only_and_validated(tiny_model):
    assert not make(tiny_model, "auto").fast_path  # this machine is a CPU
    with pytest.raises(ConfigError, match="fast_path"):
        LoRATrainConfig(model=tiny_model, fast_path="fast")
    assert LoRATrainConfig.from_mapping({"model": "m", "fast_path": "off", "compile_kernels": "true"}).compile_kernels


# --- the pieces -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("softcap, with_bias", [(None, False), (30.0, False), (None, True)])
def test_frozen_head_logprobs_and_gradient_equal_the_checkpointed_ones(softcap, with_bias):
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(37, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, dtype=torch.float64)
    bias = torch.randn(50, generator=g, dtype=torch.float64) if with_bias else None
    targets = torch.randint(0, 50, (37,), generator=g)
    upstream = torch.randn(37, generator=g, dtype=torch.float64)
    results = []
    for fused in (False, True):
        hidden.grad = None
        out = token_logprobs(hidden, weight, targets, bias=bias, chunk_tokens=8, softcap=softcap, fused=fused)
        (out.double() * upstream).sum().backward()
        results.append((out.detach(), hidden.grad.clone()))
    (v0, g0), (v1, g1) = results
    assert rel_err(v1, v0) < 1e-6  # float32 log-softmax in both
    assert rel_err(g1, g0) < 1e-6


def test_frozen_head_logprobs_fall_back_for_a_trained_head():
    hidden = torch.randn(5, 4, requires_grad=True)
    weight = torch.randn(7, 4, requires_grad=True)
    out = token_logprobs(hidden, weight, torch.arange(5), fused=True)
    out.sum().backward()
    assert weight.grad is not None and hidden.grad is not None


def test_sequence_logprobs_fused_sums_only_completion_tokens():
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(2, 6, 8, generator=g, requires_grad=True)
    weight = torch.randn(11, 8, generator=g)
    ids = torch.randint(0, 11, (2, 6), generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    (a, na), (b, nb) = (sequence_logprobs(hidden, weight, ids, mask, fused=f) for f in (False, True))
    assert torch.equal(na, nb) and torch.allclose(a, b, atol=1e-5)
    # positions picked on the host give the same sums
    c, nc = sequence_logprobs(hidden, weight, ids, mask, fused=True, scored_index=mask[:, 1:].nonzero(as_tuple=True))
    assert torch.equal(na, nc) and torch.allclose(a, c, atol=1e-5)


def _tiny_modules(tiny_model, dtype):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=dtype)
    layer = model.model.layers[0]
    return layer.input_layernorm, layer.mlp


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_rms_norm_and_swiglu_equal_the_eager_modules(tiny_model, dtype):
    norm, mlp = _tiny_modules(tiny_model, dtype)
    for module in (norm, mlp):
        module.requires_grad_(False)
        with torch.no_grad():
            if module is norm:
                module.weight.uniform_(0.5, 1.5)  # not all ones, so the weight's part of the gradient is exercised
        x = torch.randn(3, 5, norm.weight.shape[0], dtype=dtype) * 3
        upstream = torch.randn_like(module(x))
        outs = []
        for patched in (False, True):
            if patched:
                apply_fast_path(module)
            xi = x.clone().requires_grad_(True)
            y = module(xi)
            (y.float() * upstream.float()).sum().backward()
            outs.append((y.detach(), xi.grad))
        (y0, g0), (y1, g1) = outs
        assert torch.equal(y0, y1)  # the forward arithmetic is the eager one, op for op
        assert rel_err(g1, g0) < (1e-6 if dtype == torch.float32 else 1e-2)
        remove_fast_path(module)


def test_bf16_lora_layer_saves_no_float32_copy_of_its_input(tiny_model):
    """The point of patch 1: the activations kept for the backward are the bf16 ones."""
    fast = make(tiny_model, "on", "bfloat16")
    plain = make(tiny_model, "off", "bfloat16")
    batch_pairs = fast.tokenize(EQUAL[:2])

    def saved_float32_bytes(trainer):
        from vllm_train.data import collate_pairs

        prepared = trainer._prepare(collate_pairs(batch_pairs, trainer.tokenizer.pad_token_id))
        total = 0

        def pack(t):
            nonlocal total
            if t.dtype == torch.float32 and t.dim() >= 2 and t.shape[-1] >= 64:
                total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            trainer._completion_logps(prepared)
        return total

    assert saved_float32_bytes(fast) < saved_float32_bytes(plain) / 4
