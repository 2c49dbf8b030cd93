"""The trainer's fast path: the same model function with fewer bytes moved and fewer activations kept.

:func:`apply_fast_path` patches a PEFT LoRA model in place (instances only; :func:`remove_fast_path` undoes it):

1. **LoRA in the base dtype, one autograd function per layer.** PEFT keeps float32 LoRA weights (as this trainer
   wants: float32 master weights) and therefore casts every LoRA layer's *input* to float32: a float32 copy of each
   of the seven inputs per decoder layer is made, kept for the backward pass, and the adapter's sum is formed in
   float32 over the whole output. The fast path casts the tiny ``A``/``B`` matrices to the activations' dtype instead
   (gradients still reach the float32 masters) and folds the adapter's product into the base product's epilogue,
   forward and backward. At the 7B shape the saved float32 copies alone are ~160 KB per token and layer.
2. **RMSNorm** as one autograd function that keeps its (bf16) input and the float32 ``rstd`` per row; the eager
   module keeps a float32 copy of its input. Forward arithmetic is HF's, op for op.
3. **SwiGLU** (``down(silu(gate) * up)``): one autograd function keeping ``gate`` and ``up``; the eager module also
   keeps ``silu(gate)``. Forward and backward arithmetic are PyTorch's own ops, so results match eager exactly.

With ``compile=True`` the elementwise work of 2 and 3 runs through ``torch.compile`` (one fused kernel each way,
float32 inside: differs from eager by bf16 rounding only); compiling takes a few seconds per new shape, once.

Only the forward of modules the patch understands is replaced (PEFT ``lora.Linear`` without DoRA/variants, RMSNorm
modules with ``weight`` and ``variance_epsilon``, gated-SiLU MLPs with ``gate_proj``/``up_proj``/``down_proj``); a
disabled or merged adapter, dropout, or several active adapters fall back to PEFT's own forward at call time.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_PLAIN_FORWARD = "_vllm_train_plain_forward"


# --- elementwise kernels (eager; optionally compiled) -----------------------------------------------------------------

def _rms_norm_forward(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    xf = x.float()
    rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * (xf * rstd).to(x.dtype), rstd


def _rms_norm_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    # y = w * xhat with xhat = x * rstd:  dx = rstd * (g' - xhat * mean(g' * xhat)),  g' = g * w (in the output dtype,
    # as eager autograd forms it).
    gw = (grad * weight).float()
    xhat = x.float() * rstd
    return (rstd * (gw - xhat * (gw * xhat).mean(-1, keepdim=True))).to(x.dtype)


def _swiglu_forward(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def _swiglu_backward(grad: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ops.aten.silu_backward(grad * up, gate), grad * F.silu(gate)


@dataclass
class _Kernels:
    rms_forward: object = _rms_norm_forward
    rms_backward: object = _rms_norm_backward
    swiglu_forward: object = _swiglu_forward
    swiglu_backward: object = _swiglu_backward


_EAGER = _Kernels()
_COMPILED: _Kernels | None = None


def _compiled_kernels() -> _Kernels:
    global _COMPILED
    if _COMPILED is None:
        c = lambda fn: torch.compile(fn, dynamic=True, fullgraph=True)
        _COMPILED = _Kernels(c(_rms_norm_forward), c(_rms_norm_backward), c(_swiglu_forward), c(_swiglu_backward))
    return _COMPILED


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, kernels):
        y, rstd = kernels.rms_forward(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        ctx.kernels = kernels
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, rstd = ctx.saved_tensors
        return ctx.kernels.rms_backward(grad.contiguous(), x, weight, rstd), None, None, None


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up, kernels):
        ctx.save_for_backward(gate, up)
        ctx.kernels = kernels
        return kernels.swiglu_forward(gate, up)

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        d_gate, d_up = ctx.kernels.swiglu_backward(grad.contiguous(), gate, up)
        return d_gate, d_up, None


class _LoRALinear(torch.autograd.Function):
    """``x W^T + bias + s (x A^T) B^T`` for a frozen ``W``/``bias`` and float32 ``A``/``B``, computed in ``x``'s dtype.

    The adapter's product is formed first and read by the base product's epilogue (``addmm``); in the backward the
    adapter's share of ``dx`` likewise goes into the base ``dx`` product. That saves the separate read-add-write over
    the ``[tokens, out]`` output (and ``[tokens, in]`` input gradient) that adding two results costs.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling):
        a = lora_a.to(x.dtype)
        b = lora_b.to(x.dtype) * scaling
        x2 = x.reshape(-1, x.shape[-1])
        xa = x2 @ a.t()
        lora = torch.addmm(bias.to(x.dtype), xa, b.t()) if bias is not None else xa @ b.t()
        out = torch.addmm(lora, x2, weight.t())
        ctx.save_for_backward(x2, weight, xa, a, b)
        ctx.scaling = scaling
        ctx.dtypes = (lora_a.dtype, lora_b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x2, weight, xa, a, b = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).to(x2.dtype)
        g_xa = g @ b                                      # [N, r]: gradient at the adapter's bottleneck
        grad_a = (g_xa.t() @ x2).to(ctx.dtypes[0]) if ctx.needs_input_grad[3] else None
        grad_b = (g.t() @ xa).mul_(ctx.scaling).to(ctx.dtypes[1]) if ctx.needs_input_grad[4] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.addmm(g_xa @ a, g, weight).view(*grad.shape[:-1], x2.shape[-1])
        return grad_x, None, None, grad_a, grad_b, None


# --- patched forwards -------------------------------------------------------------------------------------------------

def _lora_linear_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapters = self.active_adapters
    name = adapters[0] if len(adapters) == 1 else None
    if (args or kwargs or name is None or self.disable_adapters or self.merged or name not in self.lora_A
            or name in getattr(self, "lora_variant", {}) or not isinstance(self.lora_dropout[name], nn.Identity)
            or self.base_layer.weight.requires_grad
            or (self.base_layer.bias is not None and self.base_layer.bias.requires_grad)):
        return getattr(self, _PLAIN_FORWARD)(x, *args, **kwargs)
    base = self.base_layer
    return _LoRALinear.apply(x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight,
                             self.scaling[name])


def _rms_norm_module_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    if self.weight.requires_grad:  # the patch covers frozen norms (LoRA); a trained one keeps autograd's version
        return getattr(self, _PLAIN_FORWARD)(hidden_states)
    return _RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon, self._vllm_train_kernels)


def _swiglu_mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(_SwiGLU.apply(self.gate_proj(x), self.up_proj(x), self._vllm_train_kernels))


def _is_lora_linear(module: nn.Module) -> bool:
    try:
        from peft.tuners.lora import Linear as LoraLinear
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(module, LoraLinear) and isinstance(getattr(module, "base_layer", None), nn.Linear)


def _is_rms_norm(module: nn.Module) -> bool:
    return (type(module).__name__.endswith("RMSNorm") and isinstance(getattr(module, "weight", None), nn.Parameter)
            and hasattr(module, "variance_epsilon") and module.weight.dim() == 1)


def _is_swiglu_mlp(module: nn.Module) -> bool:
    if not all(hasattr(module, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn")):
        return False
    act = module.act_fn
    return isinstance(act, nn.SiLU) or type(act).__name__ == "SiLUActivation"


@dataclass(frozen=True)
class FastPathReport:
    """What :func:`apply_fast_path` patched."""

    lora_linears: int
    rms_norms: int
    swiglu_mlps: int
    compiled: bool


def _patch(module: nn.Module, forward, kernels: _Kernels | None = None) -> None:
    if _PLAIN_FORWARD not in module.__dict__:
        setattr(module, _PLAIN_FORWARD, module.forward)
    module.forward = types.MethodType(forward, module)
    if kernels is not None:
        module._vllm_train_kernels = kernels


def apply_fast_path(model: nn.Module, *, compile: bool = False) -> FastPathReport:
    """Patches ``model`` (a PEFT model, or any module holding LoRA layers) in place; see the module docstring."""
    kernels = _compiled_kernels() if compile else _EAGER
    counts = {"lora": 0, "norm": 0, "mlp": 0}
    for module in model.modules():
        if _is_lora_linear(module):
            _patch(module, _lora_linear_forward)
            counts["lora"] += 1
        elif _is_rms_norm(module):
            _patch(module, _rms_norm_module_forward, kernels)
            counts["norm"] += 1
        elif _is_swiglu_mlp(module):
            _patch(module, _swiglu_mlp_forward, kernels)
            counts["mlp"] += 1
    return FastPathReport(counts["lora"], counts["norm"], counts["mlp"], compile)


def remove_fast_path(model: nn.Module) -> int:
    """Puts every patched module's own forward back; returns how many were restored."""
    restored = 0
    for module in model.modules():
        if _PLAIN_FORWARD in module.__dict__:
            del module.__dict__["forward"]
            delattr(module, _PLAIN_FORWARD)
            module.__dict__.pop("_vllm_train_kernels", None)
            restored += 1
    return restored
