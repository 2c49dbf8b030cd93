"""The adapter directory: the one on-disk format of a LoRA adapter version, written by the trainer, read by engines.

A directory in PEFT's documented format that vLLM loads as is:

- ``adapter_config.json``: PEFT ``LoraConfig`` fields; the ones vLLM reads are ``r``, ``lora_alpha``,
  ``target_modules`` and ``use_rslora``. ``use_dora`` is false, ``bias`` is ``"none"`` and ``modules_to_save`` is
  null, because vLLM refuses anything else. JSON with sorted keys, so the bytes depend only on the values.
- ``adapter_model.safetensors``: tensors named ``base_model.model.<module path>.lora_A.weight`` (shape ``[r, in]``)
  and ``...lora_B.weight`` (shape ``[out, r]``), nothing else.

Its digest (:func:`adapter_sha256`, recorded in ``AdapterVersion.sha256``) is SHA-256 over every regular file below
the directory, taken in order of relative POSIX path: for each file, the UTF-8 path, one NUL byte, then the file's
bytes. :func:`validate_adapter_dir` checks a directory against all of the above and says precisely what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# Ranks vLLM accepts for --max-lora-rank; an adapter of rank r loads where r <= max_lora_rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

_LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")
_CHUNK = 1 << 20


class AdapterFormatError(ValueError):
    """An adapter directory that an engine must refuse. ``reason`` is a short, stable code for metrics and RPC
    statuses; the message says what is wrong in words.

    Reasons: ``not_found``, ``missing_file``, ``unexpected_file``, ``bad_config``, ``dora``, ``bias``,
    ``modules_to_save``, ``unsupported_feature``, ``rank``, ``base_model``, ``bad_weights``, ``non_finite``, ``sha256_mismatch``.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AdapterInfo:
    """What a validated adapter directory contains."""

    path: Path
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    use_rslora: bool
    base_model: str | None
    sha256: str
    num_tensors: int

    @property
    def scaling(self) -> float:
        """The factor applied to B·A: alpha / r, or alpha / sqrt(r) with rsLoRA."""
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)


def _files(root: Path) -> list[tuple[str, Path]]:
    """Regular files below ``root`` as (relative POSIX path, path), sorted by relative path; refuses links and
    anything else that is not a plain file, since their bytes could change after the digest was taken."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            if p.is_symlink():
                raise AdapterFormatError("unexpected_file", f"{p} is a symbolic link; adapter dirs hold plain files")
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_file():
                raise AdapterFormatError("unexpected_file", f"{p} is not a regular file")
            found.append((p.relative_to(root).as_posix(), p))
    return sorted(found, key=lambda item: item[0].encode("utf-8"))


def adapter_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of an adapter directory: for each regular file in order of relative POSIX path (compared as
    UTF-8 bytes), the path, a NUL byte, then the file's bytes."""
    root = Path(path)
    if not root.is_dir():
        raise AdapterFormatError("not_found", f"adapter directory {root} does not exist or is not a directory")
    digest = hashlib.sha256()
    for rel, p in _files(root):
        digest.update(rel.encode("utf-8"))
        digest.update(b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def same_base_model(a: str | None, b: str | None) -> bool:
    """Whether two base-model references name the same model: equal, or equal in their last path component, so that a
    hub name (``Qwen/Qwen2.5-0.5B``) matches a local copy of it (``/models/Qwen2.5-0.5B``)."""
    if not a or not b:
        return False
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]


def adapter_config_dict(*, rank: int, alpha: float, target_modules, use_rslora: bool, base_model: str | None,
                        dropout: float = 0.0) -> dict[str, Any]:
    """The ``adapter_config.json`` content this project writes: PEFT's LoRA fields with every vLLM-refused option off.
    Only fields with a meaning here are written, so older PEFT and vLLM versions read it too."""
    return {
        "alpha_pattern": {},
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": rank,
        "rank_pattern": {},
        # PEFT also accepts one regex string; kept as is, lists are sorted so the bytes do not depend on set order
        "target_modules": target_modules if isinstance(target_modules, str) else sorted(target_modules),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": use_rslora,
    }


def write_adapter_dir(path: str | os.PathLike, config: Mapping[str, Any], tensors: Mapping[str, Any]) -> AdapterInfo:
    """Writes ``adapter_config.json`` and ``adapter_model.safetensors`` into ``path`` (created; must hold no adapter
    yet) and returns the validated result. ``tensors`` maps PEFT key names to torch tensors."""
    import torch
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if (out / name).exists():
            raise FileExistsError(f"{out / name} exists; adapter directories are immutable, write a new one")
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in sorted(tensors.items())}
    bad = [k for k, v in cpu.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise AdapterFormatError("non_finite", f"refusing to save an adapter with NaN/inf values in {bad[:3]}")
    save_file(cpu, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (out / ADAPTER_CONFIG).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    return validate_adapter_dir(out, check_finite=False)


def fsync_tree(path: str | os.PathLike) -> None:
    """Flushes a freshly written directory (its files, then the directory entry) to disk, so that a rename published
    after it never exposes a directory whose bytes were lost in a power cut."""
    path = Path(path)
    for p in [*path.iterdir(), path]:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``adapter_config.json`` of an adapter directory, or an :class:`AdapterFormatError`."""
    cfg_path = Path(path) / ADAPTER_CONFIG
    if not cfg_path.is_file():
        raise AdapterFormatError("missing_file", f"{cfg_path} is missing; an adapter dir needs {ADAPTER_CONFIG} and "
                                                 f"{ADAPTER_WEIGHTS}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, ValueError) as e:
        raise AdapterFormatError("bad_config", f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise AdapterFormatError("bad_config", f"{cfg_path} must hold a JSON object")
    return cfg


def _check_config(cfg: dict[str, Any], where: Path) -> tuple[int, float, tuple[str, ...], bool]:
    if cfg.get("peft_type", "LORA") != "LORA":
        raise AdapterFormatError("bad_config", f"{where}: peft_type is {cfg.get('peft_type')!r}, only LORA is served")
    if cfg.get("use_dora"):
        raise AdapterFormatError("dora", f"{where}: use_dora is true; vLLM does not serve DoRA adapters")
    if cfg.get("bias", "none") != "none":
        raise AdapterFormatError("bias", f"{where}: bias is {cfg.get('bias')!r}; vLLM serves only bias \"none\"")
    if cfg.get("modules_to_save"):
        raise AdapterFormatError("modules_to_save", f"{where}: modules_to_save is {cfg['modules_to_save']!r}; vLLM "
                                                    "serves adapters without fully trained modules only")
    if cfg.get("lora_bias"):
        raise AdapterFormatError("bias", f"{where}: lora_bias is true; vLLM does not serve LoRA biases")
    init = cfg.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in ("gaussian", "eva", "orthogonal", "mica", "lora_ga"):
        raise AdapterFormatError("unsupported_feature", f"{where}: init_lora_weights={init!r} changes the base "
                                                        "weights when loaded; vLLM cannot serve it")
    for key, what in (("alora_invocation_tokens", "Activated LoRA"), ("layer_replication", "layer replication"),
                      ("use_bdlora", "block-diagonal LoRA"), ("use_qalora", "QALoRA"),
                      ("rank_pattern", "per-module ranks (rank_pattern)"),
                      ("alpha_pattern", "per-module alphas (alpha_pattern)")):
        if cfg.get(key):
            raise AdapterFormatError("unsupported_feature", f"{where}: {key} is set; {what} is not served here")
    r, alpha, targets = cfg.get("r"), cfg.get("lora_alpha"), cfg.get("target_modules")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise AdapterFormatError("bad_config", f"{where}: r must be a positive integer, got {r!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha) or alpha <= 0:
        raise AdapterFormatError("bad_config", f"{where}: lora_alpha must be a positive number, got {alpha!r}")
    if isinstance(targets, str):
        targets = [targets]  # PEFT allows a regex string; vLLM matches it against module names the same way
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise AdapterFormatError("bad_config", f"{where}: target_modules must be a non-empty list of module names")
    return r, float(alpha), tuple(targets), bool(cfg.get("use_rslora", False))


def validate_adapter_dir(path: str | os.PathLike, base_model_name: str | None = None, max_rank: int | None = None,
                         expected_sha256: str | None = None, check_finite: bool = True) -> AdapterInfo:
    """Checks that ``path`` is an adapter directory an engine can load and returns what it holds.

    ``base_model_name``: refuse an adapter whose ``base_model_name_or_path`` names another model (see
    :func:`same_base_model`; an adapter that names none is accepted). ``max_rank``: refuse ranks above it (the
    engine's ``--max-lora-rank``). ``expected_sha256``: refuse a directory whose digest differs (a torn or altered
    copy). ``check_finite``: read the tensors and refuse NaN/inf. Raises :class:`AdapterFormatError`.
    """
    root = Path(path)
    if not root.is_dir():
        raise AdapterFormatError("not_found", f"adapter directory {root} does not exist or is not a directory")
    cfg = read_adapter_config(root)
    rank, alpha, targets, use_rslora = _check_config(cfg, root / ADAPTER_CONFIG)
    base = cfg.get("base_model_name_or_path")
    if base_model_name is not None and base and not same_base_model(base, base_model_name):
        raise AdapterFormatError("base_model", f"{root} was trained on {base!r}, this engine serves "
                                               f"{base_model_name!r}")
    if max_rank is not None and rank > max_rank:
        raise AdapterFormatError("rank", f"{root}: rank {rank} is above this engine's max LoRA rank {max_rank}")
    num_tensors = _check_weights(root / ADAPTER_WEIGHTS, rank, targets, check_finite)
    digest = adapter_sha256(root)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise AdapterFormatError("sha256_mismatch", f"{root}: sha256 is {digest}, expected {expected_sha256}; the "
                                                    "directory is incomplete or was altered")
    return AdapterInfo(path=root, rank=rank, alpha=alpha, target_modules=targets, use_rslora=use_rslora,
                       base_model=base, sha256=digest, num_tensors=num_tensors)


def _check_weights(weights: Path, rank: int, targets: tuple[str, ...], check_finite: bool) -> int:
    from safetensors import SafetensorError, safe_open

    if not weights.is_file():
        raise AdapterFormatError("missing_file", f"{weights} is missing (vLLM loads adapter_model.safetensors)")
    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            if check_finite:
                import torch

                for k in shapes:
                    t = f.get_tensor(k)
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        raise AdapterFormatError("non_finite", f"{weights}: tensor {k} holds NaN or inf")
    except AdapterFormatError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        raise AdapterFormatError("bad_weights", f"{weights} is not a readable safetensors file: {e}") from None
    if not shapes:
        raise AdapterFormatError("bad_weights", f"{weights} holds no tensors")
    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        suffix = next((s for s in _LORA_SUFFIXES if key.endswith(s)), None)
        if suffix is None:
            raise AdapterFormatError("bad_weights", f"{weights}: tensor {key!r} is not a LoRA A/B weight (keys must "
                                                    f"end in .lora_A.weight or .lora_B.weight)")
        if len(shape) != 2:
            raise AdapterFormatError("bad_weights", f"{weights}: tensor {key!r} has shape {shape}, expected 2-D")
        modules.setdefault(key[: -len(suffix)], {})[suffix[1:7]] = shape
    for module, ab in sorted(modules.items()):
        if set(ab) != {"lora_A", "lora_B"}:
            missing = ({"lora_A", "lora_B"} - set(ab)).pop()
            raise AdapterFormatError("bad_weights", f"{weights}: module {module} has no {missing} weight")
        if ab["lora_A"][0] != rank or ab["lora_B"][1] != rank:
            raise AdapterFormatError("bad_weights", f"{weights}: module {module} has A {ab['lora_A']} and B "
                                                    f"{ab['lora_B']}, which do not match rank {rank}")
        leaf = module.rsplit(".", 1)[-1]
        if not any(leaf == t or module.endswith("." + t) for t in targets) and not _regex_target(targets, module):
            raise AdapterFormatError("bad_weights", f"{weights}: module {module} is not among target_modules "
                                                    f"{list(targets)}")
    return len(shapes)


def _regex_target(targets: tuple[str, ...], module: str) -> bool:
    import re

    if len(targets) != 1:
        return False
    try:
        return re.fullmatch(targets[0], module.removeprefix("base_model.model.")) is not None
    except re.error:
        return False
