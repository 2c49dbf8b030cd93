"""The Python side of the contracts is generated from schemas/ and agrees with it."""

import json

import fastavro
import pytest

from vllm_train.codegen import GENERATED_SCHEMAS, REPO_SCHEMAS, inline_avro_schemas
from vllm_train.events import TOPICS, topic
from vllm_train.events.serde import schema_json
from vllm_train.events.settings import KafkaSettings, env_overrides

TOPIC_VALUES = ["PromptEvent", "ResponseEvent", "FeedbackEvent", "PreferencePair", "PreferenceBatch",
                "AdapterVersion"]


@pytest.mark.parametrize("name", TOPIC_VALUES)
def test_every_topic_value_schema_is_self_contained_and_parses(name):
    schema = json.loads(schema_json(name))
    parsed = fastavro.parse_schema(schema)  # raises on any unresolved named type
    assert parsed["name"] == f"io.vllmtrain.events.{name}"


def test_inlining_defines_each_named_type_once_and_references_it_after():
    batch = inline_avro_schemas(REPO_SCHEMAS / "avro")["PreferenceBatch"]
    text = json.dumps(batch)
    assert text.count('"name": "PreferencePair"') == 1
    assert text.count('"name": "ChatMessage"') == 1


def test_every_field_has_a_doc():
    for path in (REPO_SCHEMAS / "avro").rglob("*.avsc"):
        schema = json.loads(path.read_text())
        assert schema.get("doc"), f"{path.name} has no doc"
        for field in schema.get("fields", []):
            assert field.get("doc"), f"{path.name}: field {field['name']} has no doc"


def test_timestamps_use_logical_types():
    for name in TOPIC_VALUES:
        for field in json.loads(schema_json(name))["fields"]:
            if field["name"] in ("created_at", "window_start", "window_end"):
                assert field["type"] == {"type": "long", "logicalType": "timestamp-millis"}, (name, field["name"])


def test_topic_table_is_the_generated_copy_of_the_java_resource():
    source = json.loads((REPO_SCHEMAS / "resources" / "vllm_train" / "topics.json").read_text())
    assert json.loads((GENERATED_SCHEMAS / "topics.json").read_text()) == source
    assert topic("adapter_versions") == "llm.adapter-versions"
    assert TOPICS["adapter_versions"].config["cleanup.policy"] == "compact"


def test_join_inputs_are_co_partitioned():
    # The Streams joins need no repartition only if these three agree.
    assert len({TOPICS[t].partitions for t in ("prompts", "responses", "feedback")}) == 1


def test_unknown_topic_id_names_the_known_ones():
    with pytest.raises(KeyError, match="known"):
        topic("nope")


def test_generated_grpc_stubs_import():
    from vllm_train.proto.v1 import adapter_pb2_grpc, engine_pb2, feedback_pb2_grpc, inference_pb2_grpc  # noqa

    assert engine_pb2.LoadAdapterRequest(name="run/v000001").name == "run/v000001"


def test_settings_pass_kafka_security_keys_through_and_read_env():
    s = KafkaSettings.from_config({
        "kafka.bootstrap.servers": "broker:9093", "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "PLAIN", "registry.url": "https://reg:8443/", "registry.username": "u",
        "registry.password": "p"})
    assert s.producer_conf()["security.protocol"] == "SASL_SSL"
    assert s.consumer_conf("g")["sasl.mechanism"] == "PLAIN"
    assert s.registry_client_conf() == {"url": "https://reg:8443/apis/ccompat/v7", "basic.auth.user.info": "u:p",
                                        "timeout": 10.0}
    assert env_overrides({"VT_KAFKA_BOOTSTRAP_SERVERS": "x:1", "HOME": "/"}) == {"kafka.bootstrap.servers": "x:1"}


def test_settings_refuse_a_missing_bootstrap_with_the_key_to_set():
    with pytest.raises(ValueError, match="VT_KAFKA_BOOTSTRAP_SERVERS"):
        KafkaSettings.from_config({"registry.url": "http://r"})


def test_settings_refuse_a_bad_registry_timeout():
    with pytest.raises(ValueError, match="registry.timeout.s"):
        KafkaSettings.from_config({"kafka.bootstrap.servers": "b:9092", "registry.url": "http://r",
                                   "registry.timeout.s": "soon"})
    with pytest.raises(ValueError, match="registry.timeout.s"):
        KafkaSettings.from_config({"kafka.bootstrap.servers": "b:9092", "registry.url": "http://r",
                                   "registry.timeout.s": "0"})


def test_a_registry_that_never_answers_is_an_error_not_a_hang():
    """The registry client's requests are bounded by registry.timeout.s (httpx waits forever without one)."""
    import socket
    import threading

    from confluent_kafka.schema_registry import SchemaRegistryClient

    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections (backlog), never reads or answers
    port = silent.getsockname()[1]
    settings = KafkaSettings.from_config({"kafka.bootstrap.servers": "b:9092",
                                          "registry.url": f"http://127.0.0.1:{port}", "registry.timeout.s": "0.3"})
    conf = {**settings.registry_client_conf(), "max.retries": 1, "retries.wait.ms": 10, "retries.max.wait.ms": 10}
    outcome: list[BaseException | None] = []

    def call():
        try:
            SchemaRegistryClient(conf).get_subjects()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - the test reports whatever came back
            outcome.append(e)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=20)
    silent.close()
    assert not worker.is_alive(), "the registry call hung past 20 s although registry.timeout.s is 0.3"
    assert outcome and outcome[0] is not None and "timed out" in str(outcome[0]).lower()
