"""How a Python component reaches Kafka and the schema registry.

Same keys as the Java services: every ``kafka.X`` setting is handed to librdkafka as ``X`` (so
``kafka.security.protocol``, ``kafka.sasl.mechanism``, ``kafka.sasl.username``, ``kafka.ssl.ca.location``... work as
documented for confluent-kafka), ``registry.url`` is the registry's base URL (``/apis/ccompat/v7`` is appended for
Apicurio; a Confluent Schema Registry URL without that suffix is used as is when ``registry.flavor=confluent``),
``registry.username``/``registry.password`` give basic auth, and ``registry.timeout.s`` (10) bounds each registry
request, so a registry that accepts connections but never answers is an error instead of a hang. Environment
variables ``VT_KAFKA_BOOTSTRAP_SERVERS``, ``VT_REGISTRY_URL``... override file values (``VT_`` stripped,
lower-cased, ``_`` read as ``.``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

ENV_PREFIX = "VT_"
REGISTRY_TIMEOUT_S = 10.0


def env_overrides(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {k[len(ENV_PREFIX):].lower().replace("_", "."): v for k, v in env.items()
            if k.startswith(ENV_PREFIX) and len(k) > len(ENV_PREFIX)}


@dataclass(frozen=True)
class KafkaSettings:
    client: dict[str, str]
    registry_url: str
    registry_flavor: str = "apicurio"
    registry_auth: tuple[str, str] | None = None
    registry_timeout_s: float = REGISTRY_TIMEOUT_S
    extra_registry: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if "bootstrap.servers" not in self.client:
            raise ValueError("kafka.bootstrap.servers is not set (config key kafka.bootstrap.servers or environment "
                             "variable VT_KAFKA_BOOTSTRAP_SERVERS)")
        if not self.registry_url:
            raise ValueError("registry.url is not set (config key registry.url or VT_REGISTRY_URL), "
                             "e.g. http://127.0.0.1:8081")
        if self.registry_flavor not in ("apicurio", "confluent"):
            raise ValueError(f"registry.flavor must be apicurio or confluent, not {self.registry_flavor!r}")
        if not self.registry_timeout_s > 0:
            raise ValueError("registry.timeout.s must be a positive number of seconds, "
                             f"not {self.registry_timeout_s!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> "KafkaSettings":
        client = {k[len("kafka."):]: str(v) for k, v in config.items() if k.startswith("kafka.")}
        user, password = config.get("registry.username"), config.get("registry.password")
        timeout = config.get("registry.timeout.s", REGISTRY_TIMEOUT_S)
        try:
            timeout = float(timeout)
        except ValueError:
            raise ValueError(f"registry.timeout.s must be a number of seconds, not {timeout!r}") from None
        return cls(client=client, registry_url=str(config.get("registry.url", "")).rstrip("/"),
                   registry_flavor=str(config.get("registry.flavor", "apicurio")),
                   registry_auth=(user, password) if user else None, registry_timeout_s=timeout)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "KafkaSettings":
        return cls.from_config(env_overrides(env))

    @classmethod
    def of(cls, bootstrap_servers: str, registry_url: str) -> "KafkaSettings":
        return cls(client={"bootstrap.servers": bootstrap_servers}, registry_url=registry_url.rstrip("/"))

    @property
    def bootstrap_servers(self) -> str:
        return self.client["bootstrap.servers"]

    @property
    def ccompat_url(self) -> str:
        """The Confluent-compatible API: Apicurio serves it under /apis/ccompat/v7."""
        if self.registry_flavor == "confluent" or self.registry_url.endswith("/apis/ccompat/v7"):
            return self.registry_url
        return self.registry_url + "/apis/ccompat/v7"

    def registry_client_conf(self) -> dict[str, object]:
        conf: dict[str, object] = {"url": self.ccompat_url, "timeout": self.registry_timeout_s}
        if self.registry_auth:
            conf["basic.auth.user.info"] = f"{self.registry_auth[0]}:{self.registry_auth[1]}"
        return conf

    def producer_conf(self, **overrides) -> dict:
        return {**self.client, **overrides}

    def consumer_conf(self, group_id: str, **overrides) -> dict:
        return {**self.client, "group.id": group_id, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", **overrides}
