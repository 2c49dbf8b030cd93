"""Saving a PEFT LoRA model as an adapter directory vLLM loads, and loading one back for training or evaluation."""

from __future__ import annotations

import os
from pathlib import Path

from vllm_train.lora.adapter_dir import AdapterFormatError, AdapterInfo, adapter_config_dict, write_adapter_dir


def _lora_config_of(model, adapter_name: str):
    """The PEFT LoraConfig of ``adapter_name``, refused early if vLLM could not serve it."""
    cfg = model.peft_config[adapter_name]
    if str(getattr(cfg.peft_type, "value", cfg.peft_type)) != "LORA":
        raise AdapterFormatError("bad_config", f"adapter {adapter_name!r} is {cfg.peft_type}, not LoRA")
    if getattr(cfg, "use_dora", False):
        raise AdapterFormatError("dora", f"adapter {adapter_name!r} uses DoRA, which vLLM does not serve")
    if getattr(cfg, "modules_to_save", None):
        raise AdapterFormatError("modules_to_save", f"adapter {adapter_name!r} has modules_to_save "
                                                    f"{cfg.modules_to_save}, which vLLM does not serve")
    if getattr(cfg, "bias", "none") != "none":
        raise AdapterFormatError("bias", f"adapter {adapter_name!r} has bias {cfg.bias!r}; vLLM serves only 'none'")
    if getattr(cfg, "rank_pattern", None) or getattr(cfg, "alpha_pattern", None):
        raise AdapterFormatError("rank", f"adapter {adapter_name!r} uses rank/alpha patterns, which vLLM ignores")
    return cfg


def save_lora(model, path: str | os.PathLike, *, base_model_name: str | None = None, adapter_name: str = "default",
              dtype=None) -> AdapterInfo:
    """Writes the LoRA weights of a PEFT model to a new adapter directory (see :mod:`vllm_train.lora.adapter_dir`).

    ``base_model_name`` is recorded as ``base_model_name_or_path`` (default: the one PEFT knows); ``dtype`` casts
    the saved tensors (default: as trained). Returns the validated :class:`AdapterInfo` with the directory's sha256.
    """
    from peft import get_peft_model_state_dict

    cfg = _lora_config_of(model, adapter_name)
    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    config = adapter_config_dict(rank=int(cfg.r), alpha=cfg.lora_alpha, target_modules=cfg.target_modules,
                                 use_rslora=bool(cfg.use_rslora),
                                 base_model=base_model_name or cfg.base_model_name_or_path,
                                 dropout=float(cfg.lora_dropout))
    return write_adapter_dir(Path(path), config, state)


def load_lora(base_model, path: str | os.PathLike, *, adapter_name: str = "default", is_trainable: bool = False):
    """Wraps ``base_model`` (a transformers model) in a PEFT model carrying the adapter saved at ``path``."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(path), adapter_name=adapter_name, is_trainable=is_trainable)
