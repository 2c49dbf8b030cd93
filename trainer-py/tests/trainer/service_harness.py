"""Helpers of the trainer service tests: Avro batches in, versions/offsets/dead letters out, the service as a thread
or as a process that can be killed with SIGKILL."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from vllm_train.config import LoRATrainConfig
from vllm_train.data.synthetic import synthetic_pairs
from vllm_train.events import AvroCodec, topic
from vllm_train.service.config import TrainerServiceConfig
from vllm_train.service.trainer_service import TrainerService, read_run_versions

BATCHES, VERSIONS, DLQ = topic("preference_batches"), topic("adapter_versions"), topic("dlq")


def pair_record(example, base_model: str, **overrides) -> dict:
    record = {"pair_id": example.pair_id or str(uuid.uuid4()), "request_id": str(uuid.uuid4()),
              "base_model": base_model, "prompt": {"messages": [dict(m) for m in example.prompt], "text": None},
              "chosen": example.chosen, "rejected": example.rejected, "chosen_response_id": "c",
              "rejected_response_id": "r", "chosen_adapter_version": None, "rejected_adapter_version": None,
              "source": "PAIRWISE", "weight": example.weight, "feedback_ids": [], "created_at": 0}
    record.update(overrides)
    return record


def batch_record(pairs: list[dict]) -> dict:
    batch_id = hashlib.sha256("|".join(sorted(p["pair_id"] for p in pairs)).encode()).hexdigest()[:24]
    return {"batch_id": batch_id, "pairs": pairs, "window_start": 0, "window_end": 1}


def clean_batches(count: int, pairs_each: int, base_model: str, seed: int) -> list[dict]:
    examples = synthetic_pairs(count * pairs_each, seed=seed)
    return [batch_record([pair_record(e, base_model) for e in examples[i * pairs_each:(i + 1) * pairs_each]])
            for i in range(count)]


def poisoned_batch(pairs: int, base_model: str, seed: int) -> dict:
    """Chosen and rejected swapped: the hidden preference turned upside down."""
    swapped = [replace(e, chosen=e.rejected, rejected=e.chosen) for e in synthetic_pairs(pairs, seed=seed)]
    return batch_record([pair_record(e, base_model) for e in swapped])


class Stack:
    """What a test does with the broker and registry."""

    def __init__(self, stack):
        self.stack = stack
        self.settings = stack.settings
        self.codec = AvroCodec(self.settings)
        self.producer = Producer(self.settings.producer_conf(**{"enable.idempotence": True}))

    def produce_batches(self, batches: list[dict]) -> None:
        for b in batches:
            self.producer.produce(BATCHES, key=b["batch_id"].encode(),
                                  value=self.codec.encode("PreferenceBatch", BATCHES, b))
        assert self.producer.flush(30) == 0

    def produce_raw(self, key: bytes, value: bytes) -> None:
        self.producer.produce(BATCHES, key=key, value=value)
        assert self.producer.flush(30) == 0

    def end_offset(self, topic_name: str = BATCHES, partition: int = 0) -> int:
        c = Consumer(self.settings.consumer_conf(f"probe-{uuid.uuid4()}"))
        try:
            return c.get_watermark_offsets(TopicPartition(topic_name, partition), timeout=10)[1]
        finally:
            c.close()

    def start_group_at_end(self, group_id: str) -> int:
        """A new run reads only what the test produces: its group starts at the topic's current end."""
        end = self.end_offset()
        c = Consumer(self.settings.consumer_conf(group_id))
        try:
            c.commit(offsets=[TopicPartition(BATCHES, 0, end)], asynchronous=False)
        finally:
            c.close()
        return end

    def committed(self, group_id: str) -> int:
        """The group's committed offset. Offsets still pending in an open transaction do not count; read_uncommitted
        makes the broker answer with the last committed value instead of waiting for the transaction to end."""
        c = Consumer(self.settings.consumer_conf(group_id, **{"isolation.level": "read_uncommitted"}))
        try:
            return c.committed([TopicPartition(BATCHES, 0)], timeout=10)[0].offset
        finally:
            c.close()

    def versions(self, config: TrainerServiceConfig) -> list[dict]:
        return read_run_versions(config, self.codec, VERSIONS)

    def wait_versions(self, config, count: int, timeout: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.versions(config)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def dlq_records(self, since: int = 0, isolation: str = "read_committed") -> list[tuple[bytes, bytes, dict]]:
        """(key, value, headers) of the dead-letter topic from offset ``since``, read to its end."""
        c = Consumer(self.settings.consumer_conf(f"dlq-{uuid.uuid4()}", **{"isolation.level": isolation,
                                                                          "enable.partition.eof": True}))
        c.assign([TopicPartition(DLQ, 0, since)])
        out = []
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msg = c.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    break  # end of partition
                out.append((msg.key(), msg.value(), {k: v.decode() for k, v in msg.headers() or []}))
        finally:
            c.close()
        return out


def service_config(stack, tiny_model: str, adapter_root: Path, **train) -> TrainerServiceConfig:
    run_id = f"t-{uuid.uuid4().hex[:10]}"
    train_cfg = LoRATrainConfig(**{**dict(model=tiny_model, rank=8, alpha=16, learning_rate=2e-3,
                                          lr_schedule="constant", micro_batch_size=4, publish_every_batches=2,
                                          publish_every_seconds=3600.0), **train})
    return TrainerServiceConfig(run_id=run_id, train=train_cfg, kafka=stack.settings, adapter_root=adapter_root,
                                metrics_port=0, heldout_percent=0)


class ServiceThread:
    """The service in this process, for tests that need no crash."""

    def __init__(self, config: TrainerServiceConfig):
        self.service = TrainerService(config)
        self.service.start()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.service.run()
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def stop(self):
        self.service.stop()
        self.thread.join(60)
        if self.error:
            raise self.error


def write_properties(config: TrainerServiceConfig, path: Path) -> Path:
    t = config.train
    lines = {"run.id": config.run_id, "adapter.root": str(config.adapter_root),
             "kafka.bootstrap.servers": config.kafka.bootstrap_servers, "registry.url": config.kafka.registry_url,
             "metrics.port": "-1", "heldout.percent": str(config.heldout_percent),
             "train.model": t.model, "train.rank": t.rank, "train.alpha": t.alpha,
             "train.learning_rate": t.learning_rate, "train.lr_schedule": t.lr_schedule,
             "train.micro_batch_size": t.micro_batch_size, "train.publish_every_batches": t.publish_every_batches,
             "train.publish_every_seconds": t.publish_every_seconds}
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return path


class ServiceProcess:
    """``vllm-train trainer --config FILE`` as a child process, its log in a file, killable with SIGKILL."""

    def __init__(self, config_file: Path, log_file: Path, failpoint: str | None = None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
        env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
        if failpoint:
            env["VLLM_TRAIN_FAILPOINT"] = failpoint
        self.log_file = log_file
        self._log = open(log_file, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "vllm_train.cli", "trainer", "--config", str(config_file)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited ({self.proc.returncode}) before {text!r}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout}s:\n{self.log()}")
            time.sleep(0.2)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._log.close()
        return self.proc.returncode
