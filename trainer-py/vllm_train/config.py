"""``LoRATrainConfig``: every knob of LoRA training in one dataclass, checked when it is made.

Settings that vLLM would refuse to serve (DoRA, a bias other than ``"none"``, ``modules_to_save``, a rank outside the
ranks vLLM accepts) are refused here, at config time, rather than after hours of training. :meth:`from_mapping`
reads the same fields from flat string settings (a config file or ``VT_*`` environment variables).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from vllm_train.lora.adapter_dir import VLLM_LORA_RANKS

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")
SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")
DTYPES = ("auto", "float32", "bfloat16", "float16")
REFERENCES = ("base", "previous")
FAST_PATH = ("auto", "on", "off")
# vLLM applies LoRA to the decoder's linear layers; adapters on these would not load (or not do what was trained).
_UNSERVABLE_TARGETS = ("embed_tokens", "lm_head", "wte", "word_embeddings")


class ConfigError(ValueError):
    """A setting that cannot work, with the setting's name and what to do about it."""


@dataclass(frozen=True)
class LoRATrainConfig:
    """Everything that decides how a LoRA adapter is trained with DPO (or SFT) and how often it is published."""

    model: str
    """Base model: a Hugging Face model name, a local directory, or a short name of :mod:`vllm_train.models`
    (``smollm2``, ``tiny``), resolved to its folder."""

    # --- the adapter -------------------------------------------------------------------------------------------
    rank: int = 16
    """LoRA rank r; one of vLLM's ranks (1, 8, 16, 32, 64, 128, 256, 320, 512) so engines can load it."""
    alpha: float = 32.0
    """LoRA alpha; the update is scaled by alpha / r (alpha / sqrt(r) with rsLoRA)."""
    dropout: float = 0.0
    """Dropout on the LoRA input during training (0 keeps policy forwards deterministic)."""
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    """Names of the linear layers that get an adapter (default: all attention and MLP projections)."""
    use_rslora: bool = False
    """Rank-stabilised scaling alpha / sqrt(r); vLLM reads and honours it."""
    use_dora: bool = False
    """DoRA. vLLM cannot serve it, so True is refused; present so the refusal can say so."""
    bias: str = "none"
    """LoRA bias training. vLLM serves only "none"; anything else is refused."""
    modules_to_save: tuple[str, ...] = ()
    """Fully trained extra modules. vLLM cannot serve them; anything non-empty is refused."""

    # --- optimisation ------------------------------------------------------------------------------------------
    learning_rate: float = 5e-5
    """AdamW learning rate of the LoRA weights."""
    lr_schedule: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant_with_warmup"
    """Learning-rate schedule; linear and cosine decay to 0 at total_steps (continuous training wants constant)."""
    warmup_steps: int = 10
    """Steps of linear warm-up from 0 (schedules other than constant)."""
    total_steps: int | None = None
    """Length of a decaying schedule; required for linear and cosine, unused otherwise."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm to this (None: no clipping)."""
    seed: int = 0
    """Seed of the adapter's initial weights and of dropout."""

    # --- the loss ----------------------------------------------------------------------------------------------
    beta: float = 0.1
    """DPO temperature: how far the policy may move from the reference (higher = closer)."""
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    """DPO variant: sigmoid (the DPO paper), ipo, hinge (SLiC) or robust (noise-tolerant, uses label_smoothing)."""
    label_smoothing: float = 0.0
    """Assumed probability that a preference label is flipped (sigmoid and robust); in [0, 0.5)."""
    reference: Literal["base", "previous"] = "base"
    """Reference policy: the base model (adapter disabled; no second copy) or the last published adapter, frozen."""

    # --- data shape --------------------------------------------------------------------------------------------
    max_prompt_length: int = 512
    """Prompt tokens kept; longer prompts lose their beginning (the end is what the completion answers)."""
    max_length: int = 1024
    """Prompt + completion tokens kept; longer completions lose their end."""
    micro_batch_size: int = 4
    """Pairs per forward/backward pass (each pair is two sequences: chosen and rejected, in one forward)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step; a step sees micro_batch_size x this many pairs."""
    logprob_chunk_tokens: int = 2048
    """Tokens whose vocabulary log-softmax is computed at once; bounds memory to chunk x vocab floats."""

    # --- hardware ----------------------------------------------------------------------------------------------
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Base-model weights: auto = bfloat16 on a GPU that has it, else float32. LoRA weights stay float32."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1..."""
    cpu_threads: int | None = None
    """Threads torch uses on a CPU (torch.set_num_threads); None keeps torch's default. On a shared or busy CPU, 1 is
    often fastest: spinning threads of an oversubscribed machine can be 100x slower."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    fast_path: Literal["auto", "on", "off"] = "auto"
    """The GPU fast path (vllm_train.fast_path): LoRA computed in the base dtype, memory-lean RMSNorm and SwiGLU,
    LM-head gradient taken in the forward pass, no attention mask without padding. Same function within bf16
    rounding. auto = on for CUDA devices, off elsewhere."""
    compile_kernels: bool = False
    """With the fast path: fuse its elementwise kernels (RMSNorm, SwiGLU) with torch.compile; a few seconds of
    compiling per new shape."""

    # --- publishing (the service) ------------------------------------------------------------------------------
    publish_every_batches: int = 8
    """Publish a new adapter version after this many trained preference batches..."""
    publish_every_seconds: float = 300.0
    """...or this many seconds after the first batch since the last version, whichever comes first."""
    max_staleness_versions: int | None = 4
    """Drop pairs whose responses came from an adapter this many versions (or more) older than the one being
    trained; None keeps every pair."""

    def __post_init__(self):
        # Accept lists (and comma-separated text) as well as tuples; store tuples so the config stays immutable.
        for name in ("target_modules", "modules_to_save"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            object.__setattr__(self, name, tuple(value or ()))
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        if self.model:
            from vllm_train.models import ModelError, resolve_model

            try:
                object.__setattr__(self, "model", resolve_model(self.model))
            except ModelError as e:
                raise ConfigError(f"model: {e}") from None
        self.validate()

    def validate(self) -> None:
        """Raises :class:`ConfigError` naming the first setting that cannot work."""
        def fail(setting: str, why: str):
            raise ConfigError(f"{setting}: {why}")

        if not self.model:
            fail("model", "set the base model (a Hugging Face name or a local model directory)")
        if self.use_dora:
            fail("use_dora", "vLLM does not serve DoRA adapters; set use_dora=false")
        if self.bias != "none":
            fail("bias", f"{self.bias!r} is not servable; vLLM loads only LoRA adapters with bias 'none'")
        if self.modules_to_save:
            fail("modules_to_save", f"{list(self.modules_to_save)} cannot be served; vLLM loads adapters without "
                                    "fully trained modules only")
        if self.rank not in VLLM_LORA_RANKS:
            fail("rank", f"{self.rank} is not a rank vLLM serves; choose one of {list(VLLM_LORA_RANKS)}")
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            fail("alpha", f"must be a positive number, not {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", f"must be in [0, 1), not {self.dropout}")
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            fail("target_modules", "name at least one linear layer, e.g. q_proj,v_proj")
        bad = [t for t in self.target_modules if t in _UNSERVABLE_TARGETS]
        if bad:
            fail("target_modules", f"{bad}: vLLM applies LoRA to the decoder's linear layers only, not embeddings "
                                   "or the LM head")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            fail("learning_rate", f"must be positive, not {self.learning_rate}")
        if self.lr_schedule not in SCHEDULES:
            fail("lr_schedule", f"{self.lr_schedule!r} is not one of {list(SCHEDULES)}")
        if self.lr_schedule in ("linear", "cosine") and not self.total_steps:
            fail("total_steps", f"a {self.lr_schedule} schedule decays to 0 at total_steps; set it, or use "
                                "constant_with_warmup for continuous training")
        if self.warmup_steps < 0:
            fail("warmup_steps", "must be >= 0")
        if self.total_steps is not None and self.total_steps < 1:
            fail("total_steps", "must be >= 1")
        if self.weight_decay < 0:
            fail("weight_decay", "must be >= 0")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            fail("adam_betas", f"two numbers in [0, 1), not {self.adam_betas}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            fail("max_grad_norm", "must be positive (or unset for no clipping)")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            fail("beta", f"must be positive, not {self.beta}")
        if self.loss_type not in LOSS_TYPES:
            fail("loss_type", f"{self.loss_type!r} is not one of {list(LOSS_TYPES)}")
        if not 0.0 <= self.label_smoothing < 0.5:
            fail("label_smoothing", f"must be in [0, 0.5), not {self.label_smoothing}")
        if self.label_smoothing and self.loss_type not in ("sigmoid", "robust"):
            fail("label_smoothing", f"applies to the sigmoid and robust losses, not {self.loss_type}")
        if self.reference not in REFERENCES:
            fail("reference", f"{self.reference!r} is not one of {list(REFERENCES)}")
        if self.max_prompt_length < 1:
            fail("max_prompt_length", "must be >= 1")
        if self.max_length <= self.max_prompt_length:
            fail("max_length", f"must exceed max_prompt_length ({self.max_prompt_length}) to leave room for the "
                               "completion")
        for name in ("micro_batch_size", "gradient_accumulation_steps", "logprob_chunk_tokens",
                     "publish_every_batches"):
            if getattr(self, name) < 1:
                fail(name, "must be >= 1")
        if self.fast_path not in FAST_PATH:
            fail("fast_path", f"{self.fast_path!r} is not one of {list(FAST_PATH)}")
        if self.dtype not in DTYPES:
            fail("dtype", f"{self.dtype!r} is not one of {list(DTYPES)}")
        if not self.device or not (self.device in ("auto", "cpu", "mps") or self.device.startswith("cuda")):
            fail("device", f"{self.device!r}: use auto, cpu, cuda or cuda:<index>")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            fail("cpu_threads", "must be >= 1 (or unset for torch's default)")
        if not self.publish_every_seconds > 0:
            fail("publish_every_seconds", "must be positive")
        if self.max_staleness_versions is not None and self.max_staleness_versions < 1:
            fail("max_staleness_versions", "must be >= 1 (or unset to keep every pair)")

    @property
    def pairs_per_step(self) -> int:
        return self.micro_batch_size * self.gradient_accumulation_steps

    def replace(self, **changes) -> "LoRATrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], prefix: str = "") -> "LoRATrainConfig":
        """Builds a config from flat settings (strings as read from a properties/TOML file or the environment).

        Keys are the field names, optionally under ``prefix`` (``train.rank``); unknown keys under the prefix are an
        error, so that a typo cannot silently fall back to a default.
        """
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            if prefix and not key.startswith(prefix):
                continue
            name = key[len(prefix):].replace(".", "_").replace("-", "_")
            if name not in names:
                if prefix:
                    raise ConfigError(f"{key}: unknown setting; known: {', '.join(sorted(names))}")
                continue
            kwargs[name] = _coerce(key, raw, hints[name])
        if "model" not in kwargs:
            raise ConfigError(f"{prefix}model: set the base model (a Hugging Face name or a local model directory)")
        try:
            return cls(**kwargs)
        except ConfigError as e:  # name the key as the user wrote it
            raise ConfigError(f"{prefix}{e}") from None


def _coerce(key: str, raw: Any, hint: Any) -> Any:
    """Converts a setting read as text (or TOML value) to the field's type, or says which key is malformed."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if raw is None:
        return None
    optional = type(None) in args
    if optional:
        if isinstance(raw, str) and raw.strip().lower() in ("", "none", "null"):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if origin is Literal:
            value = str(raw)
            if value not in args:
                raise ValueError(f"one of {list(args)}")
            return value
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("true or false")
            return text in ("true", "1", "yes")
        if hint is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError("an integer")
            return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        if hint is float:
            return float(raw)
        if origin is tuple:
            items = raw if isinstance(raw, (list, tuple)) else [s.strip() for s in str(raw).split(",") if s.strip()]
            item_type = args[0]
            return tuple(item_type(i) for i in items)
        return str(raw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}: cannot read {raw!r} as {getattr(hint, '__name__', hint)} ({e})") from None
