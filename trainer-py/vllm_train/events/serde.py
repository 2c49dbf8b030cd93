"""The one Avro serde factory on the Python side: Confluent framing through the registry's ccompat API.

``AvroCodec(settings).encode("PromptEvent", topic, record)`` returns the bytes a Java Apicurio serde reads, and
``decode(topic, data)`` reads what Java wrote. Errors say what is wrong in one line (:class:`SchemaError`).
"""

from __future__ import annotations

import json
import struct
from functools import lru_cache

from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from vllm_train.codegen import GENERATED_SCHEMAS, ensure_generated
from vllm_train.events.settings import KafkaSettings


class SchemaError(ValueError):
    """A record that does not match its schema, or bytes that cannot be decoded."""


@lru_cache(maxsize=None)
def schema_json(name: str) -> str:
    """The self-contained Avro schema (named types inlined) of a record type, e.g. ``PromptEvent``."""
    ensure_generated()
    path = GENERATED_SCHEMAS / "avro" / f"{name}.avsc"
    if not path.exists():
        known = sorted(p.stem for p in (GENERATED_SCHEMAS / "avro").glob("*.avsc"))
        raise KeyError(f"no Avro schema named {name!r}; known: {known}")
    return path.read_text()


def _explain(record: dict, schema: dict, path: str = "") -> str | None:
    """Finds the first field of ``record`` that does not fit ``schema`` and says which and why."""
    if schema.get("type") != "record" or not isinstance(record, dict):
        return None
    for f in schema["fields"]:
        name = path + f["name"]
        if f["name"] not in record:
            if "default" not in f:
                return f"field '{name}' is missing (no default)"
            continue
        value, ftype = record[f["name"]], f["type"]
        branches = ftype if isinstance(ftype, list) else [ftype]
        if value is None and "null" not in branches:
            return f"field '{name}' is null but its type does not allow null"
        for b in branches:
            if isinstance(b, dict) and b.get("type") == "record" and isinstance(value, dict):
                inner = _explain(value, b, name + ".")
                if inner:
                    return inner
    return None


class AvroCodec:
    """Encodes and decodes records of the project's schemas for a topic (subject ``<topic>-value``)."""

    def __init__(self, settings: KafkaSettings, client: SchemaRegistryClient | None = None):
        self.settings = settings
        self.client = client or SchemaRegistryClient(settings.registry_client_conf())
        self._serializers: dict[str, AvroSerializer] = {}
        self._deserializer = AvroDeserializer(self.client, conf={"subject.name.strategy": topic_subject_name_strategy})

    def encode(self, schema_name: str, topic: str, record: dict) -> bytes:
        ser = self._serializers.get(schema_name)
        if ser is None:
            # Subjects are named after the topic (the contract, as on the Java side); said explicitly here and for the
            # deserializer, so that newer clients do not look the subject up through the registry's association API,
            # which Apicurio's ccompat does not serve (an extra request, and a CI run once hung on it).
            ser = AvroSerializer(self.client, schema_json(schema_name), conf={
                "auto.register.schemas": True, "subject.name.strategy": topic_subject_name_strategy})
            self._serializers[schema_name] = ser
        try:
            return ser(record, SerializationContext(topic, MessageField.VALUE))
        except SerializationError as e:
            why = _explain(record, json.loads(schema_json(schema_name)))
            raise SchemaError(f"{schema_name} record does not match its schema: {why or e}") from None
        except (ValueError, TypeError) as e:
            why = _explain(record, json.loads(schema_json(schema_name)))
            raise SchemaError(f"{schema_name} record does not match its schema: {why or e}") from None

    def decode(self, topic: str, data: bytes | None) -> dict | None:
        if data is None:
            return None
        if len(data) < 5 or data[0] != 0:
            raise SchemaError(f"not a schema-registry framed Avro record (expected magic byte 0 + 4-byte schema id, "
                              f"got {len(data)} bytes starting {data[:5].hex() or 'nothing'})")
        try:
            return self._deserializer(data, SerializationContext(topic, MessageField.VALUE))
        except SchemaRegistryError as e:
            schema_id = struct.unpack(">I", data[1:5])[0]
            raise SchemaError(f"schema id {schema_id} is unknown to the registry at {self.settings.ccompat_url} "
                              f"({e.http_status_code}: {e.error_message})") from None
        except (SerializationError, EOFError, ValueError, IndexError) as e:
            raise SchemaError(f"cannot decode Avro record from {topic}: {e}") from None
