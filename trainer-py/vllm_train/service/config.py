"""``TrainerServiceConfig``: the one typed configuration of the trainer service, read from a file and the environment.

The file is TOML (``.toml``) or Java-style properties (anything else); both flatten to dotted keys
(``[train] rank = 8`` is ``train.rank=8``). Environment variables ``VT_<KEY>`` override the file, with ``_`` read
as ``.`` (``VT_TRAIN_RANK=8``, ``VT_KAFKA_BOOTSTRAP_SERVERS=...``); in the service's own keys ``_`` and ``.`` are
interchangeable, so ``train.max_prompt_length`` and ``VT_TRAIN_MAX_PROMPT_LENGTH`` name the same setting.
Everything is checked at start and a mistake is reported with its key.

Keys (defaults in brackets):

- ``run.id`` (required): the training run; names the adapter folders, version ids, consumer group and
  transactional id. Restarting with the same id resumes the run.
- ``adapter.root`` [adapters]: shared folder the versions are written under (engines mount the same folder).
- ``train.*``: every field of :class:`vllm_train.config.LoRATrainConfig` (``train.model`` is required).
- ``kafka.*``, ``registry.*``: Kafka client and schema registry settings (see :mod:`vllm_train.events.settings`).
- ``consumer.group.id`` [vllm-train-trainer-<run.id>], ``producer.transactional.id`` [vllm-train-trainer-<run.id>],
  ``producer.transaction.timeout.ms`` [60000].
- ``gate.margin`` [0.05], ``gate.min.pairs`` [8]: see :class:`vllm_train.service.gate.QualityGate`.
- ``heldout.percent`` [10], ``heldout.max.pairs`` [256]: share of pairs held out for the gate; how many recent ones
  are kept.
- ``metrics.port`` [9400; 0 picks a free port, -1 turns it off], ``metrics.host`` [127.0.0.1]: Prometheus endpoint.
- ``dedup.max.batch.ids`` [100000]: how many recent batch ids are remembered to skip duplicates.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vllm_train.config import ConfigError, LoRATrainConfig
from vllm_train.events.settings import KafkaSettings, env_overrides
from vllm_train.service.intake import RUN_ID

# The service's own keys, in canonical form ("_" and "-" written as ".").
_SERVICE_KEYS = {
    "run.id", "adapter.root", "consumer.group.id", "producer.transactional.id", "producer.transaction.timeout.ms",
    "gate.margin", "gate.min.pairs", "heldout.percent", "heldout.max.pairs", "metrics.port", "metrics.host",
    "dedup.max.batch.ids",
}
_PASS_THROUGH = ("kafka.", "registry.", "train.")
_REGISTRY_KEYS = {"registry.url", "registry.username", "registry.password", "registry.flavor"}
# VT_* variables of other components (the local stack's ports and folders) that look like kafka.*/registry.* keys.
_NOT_CLIENT_SETTINGS = {"kafka.port"}


def _canonical(key: str) -> str:
    return key.strip().lower().replace("_", ".").replace("-", ".")


@dataclass(frozen=True)
class TrainerServiceConfig:
    run_id: str
    train: LoRATrainConfig
    kafka: KafkaSettings
    adapter_root: Path = Path("adapters")
    group_id: str = ""
    transactional_id: str = ""
    transaction_timeout_ms: int = 60_000
    gate_margin: float = 0.05
    gate_min_pairs: int = 8
    heldout_percent: float = 10.0
    heldout_max_pairs: int = 256
    metrics_port: int = 9400
    metrics_host: str = "127.0.0.1"
    max_seen_batch_ids: int = 100_000

    def __post_init__(self):
        if not RUN_ID.match(self.run_id or ""):
            raise ConfigError(f"run.id: {self.run_id!r} must be 1-64 letters, digits, '.', '_' or '-', starting with "
                              "a letter or digit (it names folders and version ids)")
        if not self.group_id:
            object.__setattr__(self, "group_id", f"vllm-train-trainer-{self.run_id}")
        if not self.transactional_id:
            object.__setattr__(self, "transactional_id", f"vllm-train-trainer-{self.run_id}")
        if not 0 <= self.heldout_percent < 100:
            raise ConfigError(f"heldout.percent: must be in [0, 100), not {self.heldout_percent}")
        if self.heldout_max_pairs < 0 or self.gate_min_pairs < 1:
            raise ConfigError("heldout.max.pairs must be >= 0 and gate.min.pairs >= 1")
        if not 0 <= self.gate_margin <= 1:
            raise ConfigError(f"gate.margin: a difference in accuracy, in [0, 1]; not {self.gate_margin}")
        if self.metrics_port < -1 or self.metrics_port > 65535:
            raise ConfigError(f"metrics.port: {self.metrics_port} is not a port (0 = any free port, -1 = off)")
        if self.transaction_timeout_ms < 1000:
            raise ConfigError("producer.transaction.timeout.ms: must be >= 1000")
        if self.max_seen_batch_ids < 1:
            raise ConfigError("dedup.max.batch.ids: must be >= 1")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "TrainerServiceConfig":
        flat = {str(k).strip(): v for k, v in values.items()}
        own: dict[str, Any] = {}
        for key, value in flat.items():
            canon = _canonical(key)
            if canon in _SERVICE_KEYS:
                own[canon] = value
            elif not key.lower().startswith(_PASS_THROUGH):
                raise ConfigError(f"{key}: unknown setting; the trainer reads run.id, adapter.root, train.*, kafka.*, "
                                  f"registry.*, {', '.join(sorted(_SERVICE_KEYS - {'run.id', 'adapter.root'}))}")
        train_values = {"train." + _canonical(k[len("train."):]).replace(".", "_"): v for k, v in flat.items()
                        if k.lower().startswith("train.")}
        try:
            kafka = KafkaSettings.from_config({k: v for k, v in flat.items() if k.startswith(("kafka.", "registry."))})
        except ValueError as e:
            raise ConfigError(str(e)) from None

        def get(key, convert, default):
            if key not in own or own[key] in ("", None):
                return default
            try:
                return convert(own[key])
            except (TypeError, ValueError):
                raise ConfigError(f"{key}: cannot read {own[key]!r} as {convert.__name__}") from None

        if "run.id" not in own:
            raise ConfigError("run.id: set the training run id (config key run.id or VT_RUN_ID)")
        return cls(run_id=str(own["run.id"]), train=LoRATrainConfig.from_mapping(train_values, prefix="train."),
                   kafka=kafka, adapter_root=Path(get("adapter.root", str, "adapters")),
                   group_id=get("consumer.group.id", str, ""), transactional_id=get("producer.transactional.id", str, ""),
                   transaction_timeout_ms=get("producer.transaction.timeout.ms", int, 60_000),
                   gate_margin=get("gate.margin", float, 0.05), gate_min_pairs=get("gate.min.pairs", int, 8),
                   heldout_percent=get("heldout.percent", float, 10.0),
                   heldout_max_pairs=get("heldout.max.pairs", int, 256),
                   metrics_port=get("metrics.port", int, 9400), metrics_host=get("metrics.host", str, "127.0.0.1"),
                   max_seen_batch_ids=get("dedup.max.batch.ids", int, 100_000))


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A TOML (``.toml``) or properties file as flat dotted keys."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".toml":
        try:
            return _flatten(tomllib.loads(text))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file}: not valid TOML ({e})") from None
    values: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep < 0:
            raise ConfigError(f"{file}:{number}: expected key=value, got {line!r}")
        values[line[:sep].strip()] = line[sep + 1:].strip()
    return values


def _is_trainer_env_key(key: str) -> bool:
    """Environment variables are shared by every component: take the trainer's, leave the rest (VT_STACK_DIR...)."""
    canon = _canonical(key)
    if canon in _SERVICE_KEYS or canon.startswith("train."):
        return True
    if canon in _NOT_CLIENT_SETTINGS:
        return False
    return canon.startswith("kafka.") or canon in _REGISTRY_KEYS


def load_config(path: str | os.PathLike | None, env: Mapping[str, str] | None = None) -> TrainerServiceConfig:
    """The file's settings (if any), overridden by ``VT_*`` environment variables, validated."""
    values = read_config_file(path) if path else {}
    overrides = {k: v for k, v in env_overrides(env).items() if _is_trainer_env_key(k)}
    # An environment variable replaces the file's key whatever spelling ("_" or ".") the file used.
    by_canon = {_canonical(k): k for k in values}
    for key, value in overrides.items():
        values.pop(by_canon.get(_canonical(key), key), None)
        values[key] = value
    return TrainerServiceConfig.from_mapping(values)
