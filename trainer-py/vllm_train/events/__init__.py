"""Kafka I/O shared by the Python components: the topic table, client settings and the one Avro serde factory."""

from vllm_train.events.settings import KafkaSettings
from vllm_train.events.topics import TOPICS, DlqHeaders, TopicSpec, topic
from vllm_train.events.serde import AvroCodec, SchemaError

__all__ = ["KafkaSettings", "TOPICS", "DlqHeaders", "TopicSpec", "topic", "AvroCodec", "SchemaError"]
