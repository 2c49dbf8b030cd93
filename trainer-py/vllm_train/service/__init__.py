"""The continuous DPO trainer service: preference batches from Kafka in, numbered adapter versions out.

Pure logic lives in :mod:`~vllm_train.service.intake` (what to train on), :mod:`~vllm_train.service.gate` (whether a
candidate may be published) and :mod:`~vllm_train.service.versions` (the adapter folders); Kafka and the process
around them in :mod:`~vllm_train.service.trainer_service`.
"""
