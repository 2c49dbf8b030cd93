"""vllm_train: continuous DPO on LoRA adapters, fed by Kafka, served by vLLM.

The library follows the seed design "vLLM-Train: Public API Integration Strategy": HF/PEFT for training, vLLM's
public API for inference. Generated code (Protobuf stubs, the inlined Avro schemas, the topic table) comes from the
repository's ``schemas/`` folder; see :mod:`vllm_train.codegen`.
"""

__version__ = "0.1.0"
