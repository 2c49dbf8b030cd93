"""Avro events through the real broker and the real schema registry (Confluent API of Apicurio)."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from vllm_train.events import AvroCodec, SchemaError, topic

pytestmark = pytest.mark.stack


def prompt_event(request_id: str) -> dict:
    return {"request_id": request_id, "user_id": "u1", "session_id": None,
            "prompt": {"messages": [{"role": "user", "content": "Name a colour."}], "text": None},
            "base_model": "tiny", "adapter_version": "run-a/v000003",
            "sampling": {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 16, "seed": 7, "stop": ["\n"]},
            "created_at": int(time.time() * 1000)}


def test_a_prompt_event_round_trips_through_kafka_and_the_registry(stack):
    codec = AvroCodec(stack.settings)
    rid = str(uuid.uuid4())
    producer = Producer(stack.settings.producer_conf(**{"enable.idempotence": True}))
    producer.produce(topic("prompts"), key=rid, value=codec.encode("PromptEvent", topic("prompts"),
                                                                    prompt_event(rid)))
    assert producer.flush(30) == 0
    consumer = Consumer(stack.settings.consumer_conf(f"t-{rid}"))
    consumer.subscribe([topic("prompts")])
    got = None
    deadline = time.time() + 30
    while time.time() < deadline and got is None:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error() and msg.key().decode() == rid:
            got = codec.decode(msg.topic(), msg.value())
    consumer.close()
    assert got is not None, "the event never came back"
    assert got["request_id"] == rid and got["adapter_version"] == "run-a/v000003"
    assert got["sampling"]["stop"] == ["\n"] and got["prompt"]["messages"][0]["content"] == "Name a colour."


def test_a_record_that_does_not_match_is_refused_naming_the_field(stack):
    codec = AvroCodec(stack.settings)
    bad = prompt_event("r1")
    bad["base_model"] = None
    with pytest.raises(SchemaError, match="'base_model'"):
        codec.encode("PromptEvent", topic("prompts"), bad)
    bad = prompt_event("r2")
    del bad["request_id"]
    with pytest.raises(SchemaError, match="'request_id' is missing"):
        codec.encode("PromptEvent", topic("prompts"), bad)


def test_an_unknown_schema_id_is_a_one_line_error(stack):
    codec = AvroCodec(stack.settings)
    with pytest.raises(SchemaError, match="schema id 99999 is unknown to the registry") as info:
        codec.decode(topic("prompts"), b"\x00" + (99999).to_bytes(4, "big") + b"\x02")
    assert "\n" not in str(info.value)


def test_unframed_bytes_are_refused_clearly(stack):
    with pytest.raises(SchemaError, match="magic byte"):
        AvroCodec(stack.settings).decode(topic("prompts"), b'{"json": true}')
