"""What LoadAdapter verifies before an adapter reaches a backend, each refusal mapped to its precise gRPC status.

Order of the checks (cheap and safe first, nothing outside the adapter root is ever looked at):

1. the name (INVALID_ARGUMENT) and the sha256's form (INVALID_ARGUMENT);
2. the URI: ``file://`` or a plain path (INVALID_ARGUMENT for other schemes), resolved with ``..`` and symlinks
   followed, must lie strictly inside the adapter root (PERMISSION_DENIED otherwise: the request is well formed but
   this engine is not allowed to read there), then exist (NOT_FOUND);
3. the directory, by the trainer library's validator :func:`vllm_train.lora.validate_adapter_dir` (files present,
   config vLLM can serve, tensor keys and shapes, rank ≤ max, base model, sha256), its reasons mapped below;
4. the tensors against the engine's own model (:class:`ModelShapes`): every LoRA pair must sit on a linear layer of
   this model with matching in/out features (FAILED_PRECONDITION otherwise: a valid adapter, but for another model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from vllm_train.engine.errors import (EngineError, FailedPrecondition, InvalidArgument, NotFound,
                                      PermissionDenied)

ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+@-]{0,199}")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

# AdapterFormatError.reason (vllm_train.lora) → the refusal an engine answers with.
_REASON_TO_ERROR: dict[str, type[EngineError]] = {
    "not_found": NotFound,
    "missing_file": NotFound,
    "unexpected_file": InvalidArgument,
    "bad_config": InvalidArgument,
    "dora": InvalidArgument,
    "bias": InvalidArgument,
    "modules_to_save": InvalidArgument,
    "unsupported_feature": InvalidArgument,
    "bad_weights": InvalidArgument,
    "non_finite": InvalidArgument,
    "rank": FailedPrecondition,            # a fine adapter, above this engine's --max-lora-rank
    "base_model": FailedPrecondition,      # a fine adapter, for another base model
    "sha256_mismatch": FailedPrecondition,  # torn copy, or not the version the caller meant
}


def check_adapter_name(name: str) -> str:
    if not ADAPTER_NAME.fullmatch(name or ""):
        raise InvalidArgument(f"adapter name {name!r} is not valid: 1-200 characters of letters, digits and . _ : / "
                              "+ @ -, starting with a letter or digit (e.g. an AdapterVersion id like run-1/v000003)")
    return name


def check_sha256(sha256: str) -> str:
    if not SHA256_HEX.fullmatch(sha256 or ""):
        raise InvalidArgument(f"sha256 must be the 64 hex digits of the adapter directory's digest (as published in "
                              f"AdapterVersion.sha256), got {sha256!r}")
    return sha256.lower()


def resolve_adapter_uri(uri: str, adapter_root: Path) -> Path:
    """The adapter directory ``uri`` names, resolved (``..`` and symlinks followed) and proven inside the root.

    Accepts ``file:///abs/dir``, ``/abs/dir`` and ``rel/dir`` (relative to the root)."""
    if not uri:
        raise InvalidArgument("uri is empty: give the adapter directory, e.g. file:///adapters/run-1/v000003 or a "
                              "path relative to the engine's adapter root")
    if "\x00" in uri:
        raise InvalidArgument("uri contains a NUL byte")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument(f"uri {uri!r} names host {parsed.netloc!r}; only local file:// URIs are served")
        raw = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:  # one letter would be a Windows drive, not a scheme
        raise InvalidArgument(f"uri scheme {parsed.scheme!r} is not supported: this engine loads adapters from local "
                              "directories (file:// URIs or paths) inside its adapter root")
    else:
        raw = uri
    root = adapter_root.resolve()
    target = (root / raw).resolve()  # an absolute raw replaces root here
    if target == root or not target.is_relative_to(root):
        raise PermissionDenied(f"uri {uri!r} resolves to {target}, outside this engine's adapter root {root}; only "
                               "adapter directories inside the root are loaded")
    if not target.exists():
        raise NotFound(f"adapter directory {target} (from uri {uri!r}) does not exist")
    if not target.is_dir():
        raise NotFound(f"{target} (from uri {uri!r}) is not a directory; an adapter is a directory holding "
                       "adapter_config.json and adapter_model.safetensors")
    return target


def validate_adapter(path: Path, *, expected_sha256: str, base_model_name: str, max_rank: int):
    """Runs the trainer library's validator and answers its findings with engine refusals. Returns its AdapterInfo."""
    from vllm_train.lora import AdapterFormatError, validate_adapter_dir

    try:
        return validate_adapter_dir(path, base_model_name=base_model_name, max_rank=max_rank,
                                    expected_sha256=expected_sha256)
    except AdapterFormatError as e:
        raise _REASON_TO_ERROR.get(e.reason, InvalidArgument)(str(e)) from None


@dataclass(frozen=True)
class ModelShapes:
    """The linear layers of the base model (module path → (in_features, out_features)), read from its config alone
    (weights never loaded: built on the meta device), so both backends can check an adapter before loading it."""

    linear: dict[str, tuple[int, int]]

    @classmethod
    def of_model(cls, model) -> "ModelShapes":
        import torch

        return cls({name: (m.in_features, m.out_features) for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear)})

    @classmethod
    def from_pretrained(cls, model: str) -> "ModelShapes":
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(model)
        with torch.device("meta"):
            return cls.of_model(AutoModelForCausalLM.from_config(config))

    def check(self, weights_file: Path) -> None:
        """Refuses (FAILED_PRECONDITION) LoRA tensors that do not fit a linear layer of this model."""
        from safetensors import safe_open

        with safe_open(str(weights_file), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        for key, shape in sorted(shapes.items()):
            module, _, kind = key.removeprefix("base_model.model.").rpartition(".lora_")
            layer = self.linear.get(module)
            if layer is None:
                raise FailedPrecondition(f"{weights_file}: tensor {key} adapts {module!r}, which is not a linear layer "
                                         "of this engine's base model; the adapter was made for another model")
            in_features, out_features = layer
            if kind == "A.weight" and shape[1] != in_features or kind == "B.weight" and shape[0] != out_features:
                raise FailedPrecondition(f"{weights_file}: tensor {key} has shape {list(shape)}, but {module} of this "
                                         f"engine's base model maps {in_features} → {out_features} features; the "
                                         "adapter was made for another model")
