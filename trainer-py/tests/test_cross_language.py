"""Java (Apicurio serdes) and Python (confluent-kafka's schema-registry serdes) read each other's records, field
for field, through the real broker and registry: every record type, both directions."""

import datetime as dt
import io
import json
import uuid

import fastavro
import pytest
from confluent_kafka import Consumer, Producer

from vllm_train.events import AvroCodec
from vllm_train.events.serde import schema_json
from vllm_train.testing.stack import run_java

pytestmark = pytest.mark.stack

NOW = 1_795_000_000_123
PROMPT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ünïcödé ✓"}],
          "text": None}
PAIR = {"pair_id": "p1", "request_id": "r1", "base_model": "tiny", "prompt": PROMPT, "chosen": "yes", "rejected": "no",
        "chosen_response_id": "r1-0", "rejected_response_id": None, "chosen_adapter_version": "run/v000001",
        "rejected_adapter_version": None, "source": "RATING_CROSS_REQUEST", "weight": 0.75,
        "feedback_ids": ["f1", "f2"], "created_at": NOW}
SAMPLES = {
    "PromptEvent": {"request_id": "r1", "user_id": None, "session_id": "s1", "prompt": {"messages": [], "text": "raw"},
                    "base_model": "tiny", "adapter_version": None,
                    "sampling": {"n": 2, "temperature": 0.0, "top_p": 0.5, "max_tokens": 9, "seed": 2**40,
                                 "stop": ["a", "b"]}, "created_at": NOW},
    "ResponseEvent": {"response_id": "r1-1", "request_id": "r1", "index": 1, "text": "hello\nworld", "finish_reason":
                      "length", "prompt_tokens": 12, "completion_tokens": 9, "base_model": "tiny",
                      "adapter_version": "run/v000002", "engine_replica": "engine-0", "latency_ms": 12.5,
                      "created_at": NOW},
    "FeedbackEvent": {"feedback_id": "f1", "request_id": "r1", "user_id": "u", "kind": "PAIRWISE", "response_id": None,
                      "rating": None, "chosen_response_id": "r1-0", "rejected_response_id": "r1-1",
                      "edited_text": None, "created_at": NOW},
    "PreferencePair": PAIR,
    "PreferenceBatch": {"batch_id": "b1", "pairs": [PAIR, {**PAIR, "pair_id": "p2", "source": "EDIT"}],
                        "window_start": NOW - 5000, "window_end": NOW},
    "AdapterVersion": {"version_id": "run/v000002", "run_id": "run", "version": 2, "base_model": "tiny",
                       "uri": "file:///adapters/run/v000002", "sha256": "ab" * 32, "rank": 16, "alpha": 32.0,
                       "target_modules": ["q_proj", "v_proj"], "use_rslora": True, "parent_version": "run/v000001",
                       "metrics": {"loss": 0.61, "reward_accuracy": 0.8, "reward_margin": 0.3, "steps": 40,
                                   "pairs": 320},
                       "batch_ids": ["b1"], "offsets": [{"topic": "llm.preference-batches", "partition": 0,
                                                         "offset": 7}], "created_at": NOW},
}


def normalise(value):
    """Timestamps come back as datetimes; compare them as epoch milliseconds."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def avro_json_lines(name: str, records: list[dict]) -> str:
    out = io.StringIO()
    fastavro.json_writer(out, fastavro.parse_schema(json.loads(schema_json(name))), records)
    return out.getvalue()


@pytest.mark.parametrize("name", list(SAMPLES))
def test_java_writes_python_reads(stack, tmp_path, name):
    topic = f"xlang.java-to-py.{name}.{uuid.uuid4().hex[:8]}"
    (tmp_path / "in.json").write_text(avro_json_lines(name, [SAMPLES[name]]))
    run_java("io.vllmtrain.stack.AvroProbe", "write", name, topic, str(tmp_path / "in.json"), env=stack.env)

    codec = AvroCodec(stack.settings)
    consumer = Consumer(stack.settings.consumer_conf(f"xlang-{uuid.uuid4()}"))
    consumer.subscribe([topic])
    got = None
    for _ in range(60):
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            got = codec.decode(topic, msg.value())
            break
    consumer.close()
    assert normalise(got) == SAMPLES[name]


@pytest.mark.parametrize("name", list(SAMPLES))
def test_python_writes_java_reads(stack, tmp_path, name):
    topic = f"xlang.py-to-java.{name}.{uuid.uuid4().hex[:8]}"
    producer = Producer(stack.settings.producer_conf())
    # The Java side creates the topic (auto-creation is off on the stack's broker).
    run_java("io.vllmtrain.stack.AvroProbe", "read", name, topic, "0", str(tmp_path / "none.json"), env=stack.env)
    producer.produce(topic, key="k", value=AvroCodec(stack.settings).encode(name, topic, SAMPLES[name]))
    assert producer.flush(30) == 0
    run_java("io.vllmtrain.stack.AvroProbe", "read", name, topic, "1", str(tmp_path / "out.json"), env=stack.env)
    schema = fastavro.parse_schema(json.loads(schema_json(name)))
    with open(tmp_path / "out.json") as f:
        records = list(fastavro.json_reader(f, schema))
    assert len(records) == 1
    assert normalise(records[0]) == SAMPLES[name]
