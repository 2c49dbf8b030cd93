"""The vLLM version gate: every vLLM name this project uses is imported here, and only here.

vLLM moves fast and its internals are not an API. This project uses only public names (``LLM``, ``SamplingParams``,
``LoRARequest``, ``AsyncLLM``, ``AsyncEngineArgs``, ``RequestOutput``, ``CompletionOutput``, ``RequestOutputKind``),
each listed in :data:`VLLM_NAMES` with the module it comes from in the supported releases, and it runs only on the
vLLM releases in :data:`SUPPORTED_VLLM_VERSIONS`:

- **0.33.0**, the newest (needs torch 2.14): the ``vllm`` extra of pyproject.toml and the docker image;
- **0.26.x**, the newest line built for torch 2.11 + CUDA 13 (the ``vllm-torch211`` extra): what a machine with that
  torch runs, e.g. the lent H200 on which the GPU figures were measured (trainer-py/bench/GPU_E2E.md).

Both are checked against the backend statically (tests/engine/test_vllm_conformance.py reads each wheel's source).
Another version is refused with a message saying which to install, unless ``VLLM_TRAIN_ALLOW_UNSUPPORTED_VLLM=1``
is set (then it warns).

vLLM is optional: without it (or without a GPU) the rest of the library works, and :func:`vllm_status` says why vLLM
cannot be used, in words, for callers that fall back to HF/PEFT.
"""

from __future__ import annotations

import importlib
import fnmatch
import importlib.metadata
import logging
import os
from dataclasses import dataclass
from types import SimpleNamespace

log = logging.getLogger(__name__)

# Release patterns (fnmatch), newest first; the first is what a fresh install gets.
SUPPORTED_VLLM_VERSIONS = ("0.33.0", "0.26.*")
# The concrete releases whose wheels the conformance test reads (one per supported line).
CHECKED_VLLM_RELEASES = ("0.33.0", "0.26.0")
ALLOW_UNSUPPORTED_ENV = "VLLM_TRAIN_ALLOW_UNSUPPORTED_VLLM"

# name -> module in the supported release. The engine's conformance test checks each against the pinned wheel.
VLLM_NAMES = {
    "LLM": "vllm.entrypoints.llm",
    "SamplingParams": "vllm.sampling_params",
    "RequestOutput": "vllm.outputs",
    "CompletionOutput": "vllm.outputs",
    "LoRARequest": "vllm.lora.request",
    "AsyncEngineArgs": "vllm.engine.arg_utils",
    "AsyncLLM": "vllm.v1.engine.async_llm",
    "RequestOutputKind": "vllm.sampling_params",
}


class VLLMUnavailableError(RuntimeError):
    """vLLM cannot be used here; the message says why and what to do."""


@dataclass(frozen=True)
class VLLMStatus:
    usable: bool
    version: str | None
    reason: str | None
    """Why vLLM is not usable (None when it is)."""


def installed_vllm_version() -> str | None:
    try:
        return importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return None


def version_problem(version: str | None) -> str | None:
    """Why this vLLM version cannot be used, or None if it can. Pure: no imports, no environment."""
    if version is None:
        return (f"vLLM is not installed; install the supported release with "
                f"pip install 'vllm-train[vllm]' (vllm=={SUPPORTED_VLLM_VERSIONS[0]})")
    if not is_supported(version):
        return (f"vLLM {version} is installed but vllm-train supports only {' and '.join(SUPPORTED_VLLM_VERSIONS)}; "
                f"install vllm=={SUPPORTED_VLLM_VERSIONS[0]} (torch 2.14) or vllm==0.26.0 (torch 2.11) "
                f"(or set {ALLOW_UNSUPPORTED_ENV}=1 to try anyway)")
    return None


def is_supported(version: str) -> bool:
    return any(fnmatch.fnmatchcase(version, pattern) for pattern in SUPPORTED_VLLM_VERSIONS)


def _gpu_problem() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch (vLLM serves on GPUs; use the HF/PEFT path on a CPU)"
    return None


def vllm_status() -> VLLMStatus:
    """Whether vLLM can be used in this process, and if not, why (installation, version, GPU)."""
    version = installed_vllm_version()
    problem = version_problem(version)
    if problem and version is not None and os.environ.get(ALLOW_UNSUPPORTED_ENV) == "1":
        log.warning("%s; continuing because %s=1", problem, ALLOW_UNSUPPORTED_ENV)
        problem = None
    problem = problem or _gpu_problem()
    return VLLMStatus(usable=problem is None, version=version, reason=problem)


_api: SimpleNamespace | None = None


def vllm_api() -> SimpleNamespace:
    """The vLLM names of :data:`VLLM_NAMES` as attributes (``vllm_api().LLM``...), imported on first use after the
    version gate. Raises :class:`VLLMUnavailableError` with the reason when vLLM cannot be used."""
    global _api
    if _api is not None:
        return _api
    version = installed_vllm_version()
    problem = version_problem(version)
    if problem and not (version is not None and os.environ.get(ALLOW_UNSUPPORTED_ENV) == "1"):
        raise VLLMUnavailableError(problem)
    names = {}
    for name, module in VLLM_NAMES.items():
        try:
            names[name] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise VLLMUnavailableError(f"vLLM {version}: cannot import {name} from {module} ({e}); this vLLM is "
                                       f"one of the supported {' and '.join(SUPPORTED_VLLM_VERSIONS)}") from None
    _api = SimpleNamespace(version=version, **names)
    return _api
