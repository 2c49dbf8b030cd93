"""The engine worker's one configuration: :class:`EngineConfig`, read from CLI flags, ``VT_ENGINE_*`` environment
variables and an optional properties file, validated once at start.

Precedence (highest first): command-line flag (``--adapter-root``), environment variable (``VT_ENGINE_ADAPTER_ROOT``),
config file given by ``--config`` (``adapter_root=...`` or ``engine.adapter_root=...`` lines, ``#`` comments), the
default written below. Every field's help text is its documentation (``vllm-train serve --help``).
"""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

ENV_PREFIX = "VT_ENGINE_"
BACKENDS = ("hf", "vllm")
# vLLM accepts exactly these --max-lora-rank values; the hf backend uses the same set so limits mean the same on both.
SUPPORTED_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _opt(default: Any = MISSING, help: str = "", **kw) -> Any:
    return field(default=default, metadata={"help": help}, **kw)


@dataclass(frozen=True)
class EngineConfig:
    """Every knob of one engine worker (one base model, one gRPC port, hot-loadable LoRA adapters)."""

    model: str = _opt("", help="base model: a Hugging Face model directory, a hub name, or a short name: smollm2 "
                                "(after `vllm-train model smollm2`) or tiny (required)")
    backend: str = _opt("hf", help="hf (transformers + PEFT, CPU or GPU) or vllm (vLLM AsyncLLM, GPU)")
    served_model_name: str = _opt("", help="the base model's name in Health and in adapters' base_model_name_or_path "
                                          "(default: --model)")
    host: str = _opt("127.0.0.1", help="address to listen on (0.0.0.0 to accept other hosts)")
    port: int = _opt(50061, help="gRPC port (0 = any free port; the bound port is logged)")
    adapter_root: Path = _opt(Path("adapters"), help="directory holding adapter versions; LoadAdapter accepts only "
                                                     "URIs inside it (must exist)")
    replica: str = _opt("", help="this replica's name in replies and Health (default: host name and port)")
    max_lora_rank: int = _opt(64, help=f"largest adapter rank accepted, one of {SUPPORTED_MAX_LORA_RANKS}")
    max_loras: int = _opt(8, help="adapters loaded at once; LoadAdapter beyond it is refused until one is unloaded")
    max_loras_per_batch: int = _opt(0, help="vllm: adapters mixed in one GPU batch (vLLM's max_loras), at most "
                                            "max_loras (0 = min(4, max_loras))")
    device: str = _opt("auto", help="hf: cpu, cuda or auto (cuda when available)")
    dtype: str = _opt("auto", help="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16 or float16")
    max_n: int = _opt(8, help="largest n (completions per request) accepted")
    default_max_tokens: int = _opt(128, help="max_tokens when a request leaves it unset")
    max_tokens_limit: int = _opt(4096, help="largest max_tokens accepted")
    max_stop_strings: int = _opt(16, help="most stop strings accepted per request")
    shutdown_grace_s: float = _opt(30.0, help="on SIGTERM/SIGINT: seconds in-flight requests get to finish")
    gpu_memory_utilization: float = _opt(0.85, help="vllm: fraction of GPU memory vLLM may take")
    max_model_len: int = _opt(0, help="vllm: context length (0 = the model's)")
    enforce_eager: bool = _opt(False, help="vllm: no CUDA graphs (faster start, slower decode)")
    seed: int = _opt(0, help="engine seed (vllm); requests without a seed sample from the engine's RNG")

    def __post_init__(self):
        object.__setattr__(self, "adapter_root", Path(self.adapter_root))
        model_problem = None
        if self.model:
            from vllm_train.models import ModelError, resolve_model

            try:
                object.__setattr__(self, "model", resolve_model(self.model))
            except ModelError as e:
                model_problem = str(e)
        if not self.served_model_name:
            object.__setattr__(self, "served_model_name", self.model)
        if self.max_loras_per_batch == 0:
            object.__setattr__(self, "max_loras_per_batch", min(4, max(self.max_loras, 1)))
        if not self.replica:
            object.__setattr__(self, "replica", f"{socket.gethostname()}:{self.port}")
        problems = self.problems() + ([f"model: {model_problem} (flag --model, env {ENV_PREFIX}MODEL)"]
                                      if model_problem else [])
        if problems:
            raise ValueError("invalid engine configuration:\n  - " + "\n  - ".join(problems))

    def problems(self) -> list[str]:
        """Every reason this config cannot start an engine, each naming the flag and env variable to fix."""
        out: list[str] = []

        def bad(name: str, why: str):
            out.append(f"{name} {why} (flag --{name.replace('_', '-')}, env {ENV_PREFIX}{name.upper()})")

        if not self.model:
            bad("model", "is required: a model directory or hub name")
        if self.backend not in BACKENDS:
            bad("backend", f"must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if not 0 <= self.port <= 65535:
            bad("port", f"must be 0..65535, not {self.port}")
        if not self.adapter_root.is_dir():
            bad("adapter_root", f"must be an existing directory; {str(self.adapter_root)!r} is not (create it, "
                                "or point it at where the trainer publishes adapter versions)")
        if self.max_lora_rank not in SUPPORTED_MAX_LORA_RANKS:
            bad("max_lora_rank", f"must be one of {SUPPORTED_MAX_LORA_RANKS} (vLLM's choices), not {self.max_lora_rank}")
        if self.max_loras < 1:
            bad("max_loras", f"must be at least 1, not {self.max_loras}")
        if not 1 <= self.max_loras_per_batch <= max(self.max_loras, 1):
            bad("max_loras_per_batch", f"must be 1..max_loras ({self.max_loras}), not {self.max_loras_per_batch}")
        if self.device not in DEVICES:
            bad("device", f"must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.dtype not in DTYPES:
            bad("dtype", f"must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.max_n < 1:
            bad("max_n", f"must be at least 1, not {self.max_n}")
        if self.max_tokens_limit < 1:
            bad("max_tokens_limit", f"must be at least 1, not {self.max_tokens_limit}")
        if not 1 <= self.default_max_tokens <= max(self.max_tokens_limit, 1):
            bad("default_max_tokens", f"must be 1..max_tokens_limit ({self.max_tokens_limit}), "
                                      f"not {self.default_max_tokens}")
        if self.max_stop_strings < 0:
            bad("max_stop_strings", f"must be at least 0, not {self.max_stop_strings}")
        if self.shutdown_grace_s < 0:
            bad("shutdown_grace_s", f"must be at least 0, not {self.shutdown_grace_s}")
        if not 0 < self.gpu_memory_utilization <= 1:
            bad("gpu_memory_utilization", f"must be in (0, 1], not {self.gpu_memory_utilization}")
        if self.max_model_len < 0:
            bad("max_model_len", f"must be at least 0, not {self.max_model_len}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    # --- loading -------------------------------------------------------------------------------------------------

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog="vllm-train serve",
            description="The engine worker: a gRPC EngineService (Generate, GenerateStream, LoadAdapter, UnloadAdapter, "
                        "ListAdapters, Health) over one base model with hot-loadable LoRA adapters, plus standard gRPC "
                        f"health and reflection. Every flag can also be set as {ENV_PREFIX}<FLAG> "
                        f"(e.g. {ENV_PREFIX}ADAPTER_ROOT) or in a --config file.")
        p.add_argument("--config", help="properties file of field=value lines (lower precedence than env and flags)")
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            default_text = "" if f.default in (MISSING, "") else f" (default {f.default})"
            if f.type in ("bool", bool):
                p.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                               help=f.metadata["help"] + default_text)
            else:
                p.add_argument(flag, dest=f.name, default=None, help=f.metadata["help"] + default_text)
        return p

    @classmethod
    def load(cls, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> "EngineConfig":
        """Flags over env over file over defaults; raises ``ValueError`` with every problem at once."""
        env = os.environ if env is None else env
        args = vars(cls.parser().parse_args(list(argv or [])))
        merged: dict[str, Any] = {}
        config_file = args.pop("config", None) or env.get(ENV_PREFIX + "CONFIG")
        if config_file:
            merged.update(_read_properties(Path(config_file)))
        names = {f.name for f in fields(cls)}
        merged.update({k[len(ENV_PREFIX):].lower(): v for k, v in env.items()
                       if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX):].lower() in names})
        merged.update({k: v for k, v in args.items() if v is not None})
        unknown = sorted(set(merged) - names)
        if unknown:
            raise ValueError(f"invalid engine configuration: unknown keys {unknown} in {config_file}")
        return cls(**{k: _coerce(cls, k, v) for k, v in merged.items()})


def _read_properties(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ValueError(f"invalid engine configuration: config file {path} does not exist")
    out = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"invalid engine configuration: {path}:{number}: expected key=value, got {raw!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        out[key.removeprefix("engine.").replace("-", "_").replace(".", "_")] = value
    return out


def _coerce(cls, name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(cls)}[name]
    if not isinstance(value, str):
        return value
    try:
        if kind in ("int", int):
            return int(value)
        if kind in ("float", float):
            return float(value)
        if kind in ("bool", bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
    except ValueError:
        raise ValueError(f"invalid engine configuration: {name} must be a {kind}, not {value!r} "
                         f"(flag --{name.replace('_', '-')}, env {ENV_PREFIX}{name.upper()})") from None
    if kind in ("Path", Path):
        return Path(value)
    return value
