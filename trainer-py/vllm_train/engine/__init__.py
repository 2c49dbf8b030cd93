"""The engine worker: a gRPC ``EngineService`` over one base model with hot-loadable LoRA adapters.

``server`` (process bootstrap, ``vllm-train serve``), ``service`` (the RPCs), ``registry`` (adapters and in-flight
requests, pure), ``adapter_checks`` (what LoadAdapter verifies), ``generation`` (request semantics, prompt rendering,
incremental detokenization), ``config`` (the one typed config), backends ``hf_backend`` and ``vllm_backend``.
"""
