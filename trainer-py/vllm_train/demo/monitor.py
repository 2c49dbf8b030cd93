"""What the live view and the report show about the pipeline, read from the pipeline itself: the Kafka topics
(events, pairs, batches, versions, dead letters), the inference service's AdapterService, the trainer's metrics."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field

import grpc
from confluent_kafka import Consumer

from vllm_train.demo.preference import Preference
from vllm_train.events import AvroCodec, KafkaSettings, topic
from vllm_train.events.serde import SchemaError
from vllm_train.events.topics import DLQ_HEADERS
from vllm_train.proto.v1 import adapter_pb2, adapter_pb2_grpc


@dataclass
class PipelineStats:
    counts: dict[str, int] = field(default_factory=dict)
    pair_feedback_ids: set[str] = field(default_factory=set)
    pairs_agreeing: int = 0   # pairs whose chosen side scores higher under the hidden preference
    dlq_feedback_ids: set[str] = field(default_factory=set)
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    published: list[dict] = field(default_factory=list)          # AdapterVersion records, in order
    batch_times: dict[str, float] = field(default_factory=dict)  # batch id -> wall time its record was produced
    activations: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, version id)
    active_version: str = ""
    version_status: dict[str, str] = field(default_factory=dict)
    trainer: dict[str, float] = field(default_factory=dict)
    event_times: deque = field(default_factory=lambda: deque(maxlen=20000))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events_per_second(self, window: float = 10.0) -> float:
        now = time.monotonic()
        with self.lock:
            return sum(1 for t in self.event_times if now - t <= window) / window


def last_user_message(prompt: dict) -> str:
    """The question of a recorded prompt (its last user message, or its text)."""
    users = [m["content"] for m in (prompt.get("messages") or []) if m["role"] == "user"]
    return users[-1] if users else (prompt.get("text") or "")


class PipelineMonitor:
    def __init__(self, settings: KafkaSettings, inference_address: str, trainer_metrics_url: str, started: float,
                 preference: Preference):
        self.settings = settings
        self.preference = preference
        self.inference_address = inference_address
        self.trainer_metrics_url = trainer_metrics_url
        self.started = started
        self.stats = PipelineStats()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._consume, name="monitor-kafka", daemon=True),
                         threading.Thread(target=self._poll, name="monitor-poll", daemon=True)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def _consume(self) -> None:
        codec = AvroCodec(self.settings)
        names = {topic(t): t for t in ("prompts", "responses", "feedback", "preference_pairs", "preference_batches",
                                       "adapter_versions", "dlq")}
        consumer = Consumer(self.settings.consumer_conf(f"demo-monitor-{uuid.uuid4()}",
                                                        **{"isolation.level": "read_committed"}))
        consumer.subscribe(list(names))
        s = self.stats
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(500, timeout=0.5):
                    if msg.error():
                        continue
                    kind = names.get(msg.topic())
                    with s.lock:
                        s.counts[kind] = s.counts.get(kind, 0) + 1
                        if kind in ("prompts", "responses", "feedback"):
                            s.event_times.append(time.monotonic())
                    if kind == "preference_pairs":
                        pair = codec.decode(msg.topic(), msg.value())
                        question = last_user_message(pair["prompt"])
                        agrees = self.preference.score(pair["chosen"], question) > \
                            self.preference.score(pair["rejected"], question)
                        with s.lock:
                            s.pair_feedback_ids.update(pair["feedback_ids"])
                            s.pairs_agreeing += agrees
                    elif kind == "preference_batches" and msg.key() is not None:
                        with s.lock:
                            s.batch_times[msg.key().decode(errors="replace")] = msg.timestamp()[1] / 1000.0
                    elif kind == "adapter_versions" and msg.value() is not None:
                        version = codec.decode(msg.topic(), msg.value())
                        with s.lock:
                            s.published.append(version)
                    elif kind == "dlq":
                        self._dead_letter(codec, msg)
        finally:
            consumer.close()

    def _dead_letter(self, codec: AvroCodec, msg) -> None:
        headers = {k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])}
        s = self.stats
        with s.lock:
            reason = headers.get(DLQ_HEADERS.reason, "?").split(":")[0]
            s.dlq_reasons[reason] = s.dlq_reasons.get(reason, 0) + 1
        if headers.get(DLQ_HEADERS.source_topic) == topic("feedback"):
            try:
                event = codec.decode(topic("feedback"), msg.value())
            except SchemaError:
                return
            with s.lock:
                s.dlq_feedback_ids.add(event["feedback_id"])

    def _poll(self) -> None:
        with grpc.insecure_channel(self.inference_address) as channel:
            adapters = adapter_pb2_grpc.AdapterServiceStub(channel)
            while not self._stop.wait(1.0):
                self._poll_adapters(adapters)
                self._poll_trainer()

    def _poll_adapters(self, adapters) -> None:
        try:
            reply = adapters.ListVersions(adapter_pb2.ListVersionsRequest(), timeout=2)
        except grpc.RpcError:
            return
        s = self.stats
        with s.lock:
            s.version_status = {v.version_id: adapter_pb2.VersionStatus.Name(v.status) for v in reply.versions}
            active = reply.rollout.active_version
            if active and active != s.active_version:
                s.activations.append((time.monotonic() - self.started, active))
            s.active_version = active

    def _poll_trainer(self) -> None:
        try:
            with urllib.request.urlopen(self.trainer_metrics_url, timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return
        values = {}
        for line in text.splitlines():
            if line.startswith("vllm_train_") and "{" not in line:
                name, _, value = line.partition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    pass
        with self.stats.lock:
            self.stats.trainer = values
