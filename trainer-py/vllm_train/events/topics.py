"""The topic table, read from the generated copy of ``schemas/src/main/resources/vllm_train/topics.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from vllm_train.codegen import GENERATED_SCHEMAS, ensure_generated


@dataclass(frozen=True)
class TopicSpec:
    id: str
    name: str
    partitions: int
    key: str
    value: str
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DlqHeaders:
    reason: str
    source_topic: str
    source_partition: str
    source_offset: str
    component: str
    payload_truncated: str  # present when a dead letter keeps only the first bytes of its value: the original size


def _load() -> tuple[dict[str, TopicSpec], DlqHeaders]:
    ensure_generated()
    raw = json.loads((GENERATED_SCHEMAS / "topics.json").read_text())
    specs = {t["id"]: TopicSpec(t["id"], t["name"], t["partitions"], t["key"], t["value"], dict(t["config"]))
             for t in raw["topics"]}
    return specs, DlqHeaders(**raw["dlq_headers"])


TOPICS, DLQ_HEADERS = _load()


def topic(topic_id: str) -> str:
    """Name of the topic with this id (``prompts``, ``responses``, ``feedback``, ``preference_pairs``,
    ``preference_batches``, ``adapter_versions``, ``dlq``)."""
    try:
        return TOPICS[topic_id].name
    except KeyError:
        raise KeyError(f"unknown topic id {topic_id!r}; known: {sorted(TOPICS)}") from None
