"""LoRA adapters: the on-disk format vLLM loads, its digest and validation, and PEFT save/load helpers."""

from vllm_train.lora.adapter_dir import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    VLLM_LORA_RANKS,
    AdapterFormatError,
    AdapterInfo,
    adapter_config_dict,
    adapter_sha256,
    fsync_tree,
    read_adapter_config,
    same_base_model,
    validate_adapter_dir,
    write_adapter_dir,
)
from vllm_train.lora.save import load_lora, save_lora

__all__ = [
    "ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "VLLM_LORA_RANKS", "AdapterFormatError", "AdapterInfo",
    "adapter_config_dict", "adapter_sha256", "fsync_tree", "load_lora", "read_adapter_config", "same_base_model",
    "save_lora", "validate_adapter_dir", "write_adapter_dir",
]
