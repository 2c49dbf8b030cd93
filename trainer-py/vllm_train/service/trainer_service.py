"""``vllm-train trainer --config FILE``: continuous DPO on a LoRA adapter, fed by ``llm.preference-batches``.

The loop, top to bottom:

1. **Start.** The transactional producer (``transactional.id`` fixed per run) is initialised first, which fences any
   earlier incarnation of this run and aborts its unfinished transaction. The run's committed AdapterVersion records
   are read (``read_committed``); the last one is the resume point: its adapter and trainer state are loaded, and
   version folders newer than it (written but never committed) are removed.
2. **Consume and train.** Each batch is decoded (Avro via the registry) and sorted by :mod:`.intake`: malformed or
   undecodable batches are set aside for the dead-letter topic, duplicates skipped, stale pairs dropped, some pairs
   held out for the gate, the rest trained on (one log line per optimizer step).
3. **Publish**, every ``train.publish_every_batches`` batches or ``train.publish_every_seconds`` seconds: the
   candidate passes the :mod:`.gate` or is refused. A passing candidate's trainer state and adapter folder are
   written (temp dir + rename), then ONE Kafka transaction holds the dead-letter records, the AdapterVersion record
   and the consumed offsets (``send_offsets_to_transaction``). Until that commit, nothing of the window is visible
   and a restart re-reads the same batches into the same starting state: no batch is lost, no version published twice.
   A refused candidate is logged, the trainer returns to the last published state, and the window's batches go to
   the dead-letter topic in a transaction with the offsets.

Offsets are never committed any other way (``enable.auto.commit=false``), and the consumer reads ``read_committed``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_train.service.config import TrainerServiceConfig, load_config

log = logging.getLogger("vllm_train.trainer")

# Test hook: the service pauses (and logs that it did) at the named point, so a test can kill -9 it exactly there.
FAILPOINT_ENV = "VLLM_TRAIN_FAILPOINT"
COMPONENT = "trainer"


def failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        log.warning("failpoint %s reached: pausing until killed", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        while True:
            time.sleep(3600)


@dataclass
class Window:
    """What happened since the last commit: consumed positions, batches, losses, records for the dead-letter topic."""

    started: float | None = None
    consumed: int = 0
    trained_batches: int = 0
    batch_ids: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    dlq: list[tuple[Any, bytes | None, str]] = field(default_factory=list)  # (message, value, reason)
    messages: list[Any] = field(default_factory=list)  # trained messages, for the dead-letter topic if refused
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


class PublishAborted(RuntimeError):
    """The publishing transaction was aborted; the window stays and is published again later."""


class TrainerService:
    """The service: owns the Kafka clients, the trainer and the run's folders. ``run()`` until ``stop()``."""

    def __init__(self, config: TrainerServiceConfig):
        from vllm_train.service.gate import QualityGate
        from vllm_train.service.metrics import TrainerMetrics
        from vllm_train.service.versions import RunFolders

        self.config = config
        self.folders = RunFolders(config.adapter_root, config.run_id)
        self.gate = QualityGate(config.gate_margin, config.gate_min_pairs)
        self.metrics = TrainerMetrics()
        self.window = Window()
        self.last_version = 0
        self.heldout: list[dict] = []  # recent held-out pair records, with "_batch_id"
        self._stop = threading.Event()
        self.trainer = None
        self.metrics_port: int | None = None
        self._lag = 0

    # --- start ------------------------------------------------------------------------------------------------------

    def start(self) -> None:
        from confluent_kafka import Consumer, Producer

        from vllm_train.events import AvroCodec, topic
        from vllm_train.service.intake import SeenBatches
        from vllm_train.trainer import HybridTrainer

        cfg = self.config
        self.batches_topic, self.versions_topic, self.dlq_topic = (
            topic("preference_batches"), topic("adapter_versions"), topic("dlq"))
        self.codec = AvroCodec(cfg.kafka)
        self.metrics_port = self.metrics.serve(cfg.metrics_port, cfg.metrics_host)
        if self.metrics_port is not None:
            log.info("metrics on http://%s:%d/metrics", cfg.metrics_host, self.metrics_port)

        self.producer = Producer(cfg.kafka.producer_conf(**{
            "transactional.id": cfg.transactional_id, "enable.idempotence": True,
            "transaction.timeout.ms": cfg.transaction_timeout_ms}))
        self.producer.init_transactions(60)  # fences an earlier incarnation and aborts its open transaction

        history = read_run_versions(cfg, self.codec, self.versions_topic)
        last = max(history, key=lambda r: r["version"]) if history else None
        self.last_version = int(last["version"]) if last else 0
        removed = self.folders.remove_unpublished(self.last_version)
        if removed:
            log.info("removed %d folder(s) of versions that were written but never committed: %s", len(removed),
                     ", ".join(str(p.relative_to(cfg.adapter_root)) for p in removed))
        seen_ids: list[str] = []
        if last:
            adapter, state = self.folders.version_dir(self.last_version), self.folders.state_dir(self.last_version)
            if not adapter.is_dir() or not state.is_dir():
                raise RuntimeError(f"cannot resume run {cfg.run_id}: version {last['version_id']} is published but "
                                   f"{adapter if not adapter.is_dir() else state} is missing under {cfg.adapter_root}")
            self.trainer = HybridTrainer(cfg.train, adapter_path=adapter)
            extra = self.trainer.load_state(state)
            self.heldout = list(extra.get("heldout", []))
            seen_ids = list(extra.get("seen_batch_ids", []))
            log.info("resuming run %s from %s (step %d, %d pairs)", cfg.run_id, last["version_id"],
                     self.trainer.step, self.trainer.pairs_seen)
        else:
            self.trainer = HybridTrainer(cfg.train)
            log.info("starting run %s from %s with a fresh rank-%d adapter", cfg.run_id, cfg.train.model,
                     cfg.train.rank)
        self.seen = SeenBatches(cfg.max_seen_batch_ids, seen_ids)
        self.published = self.trainer.snapshot()
        self.has_published = last is not None
        self.metrics.published_version.set(self.last_version)

        self.consumer = Consumer(cfg.kafka.consumer_conf(cfg.group_id, **{
            "isolation.level": "read_committed", "enable.auto.commit": False, "enable.auto.offset.store": False,
            # Static membership: a restarted trainer takes its old place at once instead of waiting for the
            # killed one's session to expire.
            "group.instance.id": f"{cfg.group_id}-0", "session.timeout.ms": 30000}))
        self.consumer.subscribe([self.batches_topic], on_revoke=self._on_revoke)

    def _on_revoke(self, consumer, partitions) -> None:
        if self.window.consumed:
            log.warning("partitions revoked with %d uncommitted batch(es): back to the last published state",
                        self.window.consumed)
            self._discard_window()

    def _discard_window(self) -> None:
        self.trainer.restore(self.published)
        for batch_id in self.window.batch_ids:
            self.seen.discard(batch_id)
        self.heldout = [p for p in self.heldout if p["_batch_id"] not in set(self.window.batch_ids)]
        self.window = Window()

    # --- the loop ---------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Consumes, trains and publishes until :meth:`stop`; then closes the clients (uncommitted work is simply
        re-read by the next start)."""
        try:
            while not self._stop.is_set():
                msg = self.consumer.poll(0.5)
                if msg is not None:
                    self.handle(msg)
                if self._publish_due():
                    try:
                        self.publish()
                    except PublishAborted as e:
                        log.warning("%s; will publish again", e)
                        time.sleep(1.0)
        finally:
            self.close()

    def close(self) -> None:
        consumer = getattr(self, "consumer", None)
        if consumer is not None:
            consumer.close()
            self.consumer = None
        self.metrics.close()

    def _publish_due(self) -> bool:
        """Every K trained batches, or K set-aside ones (dead letters, duplicates), or T seconds after the window's
        first batch."""
        w, cfg = self.window, self.config.train
        if not w.consumed:
            return False
        return (w.trained_batches >= cfg.publish_every_batches
                or w.consumed - w.trained_batches >= cfg.publish_every_batches
                or time.monotonic() - w.started >= cfg.publish_every_seconds)

    def handle(self, msg) -> None:
        """One message of the batches topic: decode, sort, train."""
        from confluent_kafka import KafkaError

        from vllm_train.events import SchemaError
        from vllm_train.service.intake import take_batch

        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return
            if msg.error().fatal():
                raise RuntimeError(f"Kafka consumer error: {msg.error()}")
            log.warning("consumer: %s", msg.error())
            return
        w = self.window
        if w.started is None:
            w.started = time.monotonic()
        w.consumed += 1
        w.positions[(msg.topic(), msg.partition())] = msg.offset() + 1
        self._update_lag(msg)
        try:
            batch = self.codec.decode(msg.topic(), msg.value())
        except SchemaError as e:
            return self._to_dlq(msg, f"undecodable PreferenceBatch: {e}")
        if batch is None:
            return self._to_dlq(msg, "empty record (tombstone) on the batches topic")
        cfg = self.config
        result = take_batch(batch, base_model=cfg.train.model, run_id=cfg.run_id, latest_version=self.last_version,
                            max_staleness=cfg.train.max_staleness_versions, heldout_percent=cfg.heldout_percent,
                            seen=self.seen)
        if result.invalid_reason:
            return self._to_dlq(msg, f"invalid PreferenceBatch: {result.invalid_reason}")
        if result.duplicate:
            self.metrics.batches.labels("duplicate").inc()
            log.info("batch %s was trained on already: skipped", batch["batch_id"])
            return
        w.batch_ids.append(batch["batch_id"])
        w.messages.append(msg)
        if result.stale:
            self.metrics.pairs_dropped.labels("stale").inc(result.stale)
            log.info("batch %s: dropped %d stale pair(s) (generated %d+ versions ago)", batch["batch_id"],
                     result.stale, cfg.train.max_staleness_versions)
        self.heldout.extend({**p, "_batch_id": batch["batch_id"]} for p in result.heldout)
        del self.heldout[:max(0, len(self.heldout) - cfg.heldout_max_pairs)]
        self.metrics.pairs_dropped.labels("heldout").inc(len(result.heldout))
        if not result.train:
            self.metrics.batches.labels("no_trainable_pairs").inc()
            return
        self._train(batch["batch_id"], result.train)

    def _train(self, batch_id: str, pairs: list[dict]) -> None:
        from vllm_train.data import PreferenceExample

        tokenized = self.trainer.tokenize([PreferenceExample.from_record(p) for p in pairs])
        truncated = sum(t.truncated for t in tokenized)
        if truncated:
            self.metrics.pairs_truncated.inc(truncated)
        for m in self.trainer.train_dpo(tokenized):
            self.window.losses.append(m.loss)
            self.window.accuracies.append(m.reward_accuracy)
            self.window.margins.append(m.reward_margin)
            self._record_step(m, batch_id, truncated)
        self.window.trained_batches += 1
        self.metrics.batches.labels("trained").inc()

    def _record_step(self, m, batch_id: str, truncated: int) -> None:
        mt = self.metrics
        mt.steps.inc()
        mt.pairs_trained.inc(m.pairs)
        mt.tokens.inc(m.tokens)
        mt.loss.set(m.loss)
        mt.reward_accuracy.set(m.reward_accuracy)
        mt.reward_margin.set(m.reward_margin)
        mt.tokens_per_second.set(m.tokens_per_s)
        log.info("step %d loss %.4f reward_acc %.3f margin %.4f tokens/s %.0f lag %d pairs %d truncated %d "
                 "batch %s", m.step, m.loss, m.reward_accuracy, m.reward_margin, m.tokens_per_s,
                 self._lag, m.pairs, truncated, batch_id)

    def _update_lag(self, msg) -> None:
        from confluent_kafka import TopicPartition

        try:
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(msg.topic(), msg.partition()),
                                                             cached=True)
            self._lag = max(0, high - msg.offset() - 1)
            self.metrics.consumer_lag.set(self._lag)
        except Exception:  # the cached figure is not always there yet; lag is a progress hint
            pass

    def _to_dlq(self, msg, reason: str) -> None:
        log.warning("to %s: offset %d: %s", self.dlq_topic, msg.offset(), reason)
        self.window.dlq.append((msg, msg.value(), reason))
        self.metrics.batches.labels("dlq").inc()

    # --- publishing -------------------------------------------------------------------------------------------------

    def _heldout_preferences(self):
        """Per held-out pair, the implicit preference of the candidate and of the last published version, both
        measured against the base model (see :mod:`.gate`)."""
        from vllm_train.data import PreferenceExample

        # Only pairs of windows already published: the window being judged could be the poisoned one, and its own
        # held-out pairs would then vouch for it.
        window_ids = set(self.window.batch_ids)
        judged = [p for p in self.heldout if p["_batch_id"] not in window_ids]
        if not judged:
            return None, None
        pairs = self.trainer.tokenize([PreferenceExample.from_record(p) for p in judged])
        base = self.trainer.pair_logps(pairs, adapter="base")
        cur = self.trainer.pair_logps(pairs)
        pref = lambda x: ((x.chosen - base.chosen) - (x.rejected - base.rejected)).tolist()
        previous = pref(self.trainer.pair_logps(pairs, weights=self.published.lora)) if self.has_published else \
            [0.0] * len(pairs)
        return pref(cur), previous

    def publish(self) -> None:
        """Gates the candidate, then writes and commits a version, or refuses it; commits offsets either way."""
        w = self.window
        started = time.monotonic()
        if not w.trained_batches:
            self._commit(None, reason="no trainable batches")  # offsets (and dead letters) only
            return
        candidate, previous = self._heldout_preferences()
        decision = self.gate.decide(w.losses, candidate, previous)
        beta = self.config.train.beta
        mean = lambda xs: sum(xs) / len(xs) if xs else 0.0
        metrics = {
            "loss": mean(w.losses),
            "reward_accuracy": decision.candidate_accuracy if decision.candidate_accuracy is not None
            else mean(w.accuracies),
            "reward_margin": beta * decision.candidate_margin if decision.candidate_margin is not None
            else mean(w.margins),
            "steps": self.trainer.step, "pairs": self.trainer.pairs_seen}
        number = self.last_version + 1
        if not decision.accepted:
            self.metrics.versions.labels("refused").inc()
            log.warning("refused candidate v%06d: %s; metrics %s; batches %s go to %s and training returns to v%06d",
                        number, decision.reason, _fmt(metrics), w.batch_ids, self.dlq_topic, self.last_version)
            reason = f"quality gate refused the version trained on this batch: {decision.reason}"
            refused_ids = set(w.batch_ids)
            for msg in w.messages:
                w.dlq.append((msg, msg.value(), reason))
            self.trainer.restore(self.published)
            self.heldout = [p for p in self.heldout if p["_batch_id"] not in refused_ids]
            self._commit(None, reason="refused candidate")
            return
        record = self._write_version(number, metrics)
        self._commit(record, reason=decision.reason)
        self.last_version = number
        self.published = self.trainer.snapshot()
        self.has_published = True
        if self.config.train.reference == "previous":
            self.trainer.set_reference(self.published.lora)
        self.metrics.versions.labels("published").inc()
        self.metrics.published_version.set(number)
        self.metrics.publish_seconds.observe(time.monotonic() - started)
        log.info("published %s (%s): %s; %d batch(es), sha256 %s…", record["version_id"], decision.reason,
                 _fmt(metrics), len(record["batch_ids"]), record["sha256"][:12])

    def _write_version(self, number: int, metrics: dict) -> dict:
        from vllm_train.service.intake import version_id

        cfg, w = self.config, self.window
        seen_after = self.seen.to_list()
        extra = {"run_id": cfg.run_id, "version": number, "heldout": self.heldout, "seen_batch_ids": seen_after}
        self.folders.write(self.folders.state_dir(number), lambda tmp: self.trainer.save_state(tmp, extra))
        failpoint("publish.after_state")
        saved = {}
        self.folders.write(self.folders.version_dir(number), lambda tmp: saved.update(info=self.trainer.save_lora(tmp)))
        failpoint("publish.after_adapter")
        info = saved["info"]
        return {
            "version_id": version_id(cfg.run_id, number), "run_id": cfg.run_id, "version": number,
            "base_model": cfg.train.model, "uri": self.folders.relative_uri(number), "sha256": info.sha256,
            "rank": info.rank, "alpha": info.alpha, "target_modules": list(info.target_modules),
            "use_rslora": info.use_rslora,
            "parent_version": version_id(cfg.run_id, self.last_version) if self.last_version else None,
            "metrics": {k: (float(v) if k not in ("steps", "pairs") else int(v)) for k, v in metrics.items()},
            "batch_ids": list(w.batch_ids),
            "offsets": [{"topic": t, "partition": p, "offset": o} for (t, p), o in sorted(w.positions.items())],
            "created_at": int(time.time() * 1000)}

    def _commit(self, record: dict | None, reason: str) -> None:
        """One transaction: dead letters, the version record (if any), the consumed offsets."""
        from confluent_kafka import KafkaException, TopicPartition

        from vllm_train.events.topics import DLQ_HEADERS

        w = self.window
        try:
            self.producer.begin_transaction()
            for msg, value, why in w.dlq:
                headers = [(DLQ_HEADERS.reason, why.encode()), (DLQ_HEADERS.source_topic, msg.topic().encode()),
                           (DLQ_HEADERS.source_partition, str(msg.partition()).encode()),
                           (DLQ_HEADERS.source_offset, str(msg.offset()).encode()),
                           (DLQ_HEADERS.component, COMPONENT.encode())]
                self.producer.produce(self.dlq_topic, key=msg.key(), value=value, headers=headers)
            if record is not None:
                self.producer.produce(self.versions_topic, key=record["version_id"].encode(),
                                      value=self.codec.encode("AdapterVersion", self.versions_topic, record))
            offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(w.positions.items())]
            self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 60)
            failpoint("publish.before_commit")
            self._commit_transaction()
        except KafkaException as e:
            err = e.args[0]
            if err.fatal():
                raise RuntimeError(f"Kafka transaction failed fatally ({err}); another trainer with "
                                   f"transactional.id {self.config.transactional_id} may have taken over") from None
            if err.txn_requires_abort():
                self.producer.abort_transaction(60)
                if record is not None:
                    self.folders.remove_unpublished(self.last_version)
                raise PublishAborted(f"transaction aborted ({err})") from None
            raise
        failpoint("publish.after_commit")
        self.metrics.dlq_records.inc(len(w.dlq))
        if record is None:
            log.info("committed offsets %s (%s); %d record(s) to %s", _fmt_positions(w.positions), reason,
                     len(w.dlq), self.dlq_topic)
        self.window = Window()

    def _commit_transaction(self) -> None:
        from confluent_kafka import KafkaException

        for attempt in range(5):
            try:
                self.producer.commit_transaction(60)
                return
            except KafkaException as e:
                if not e.args[0].retriable() or attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))


def _fmt(metrics: dict) -> str:
    return " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def _fmt_positions(positions: dict) -> str:
    return ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(positions.items())) or "none"


def read_run_versions(config: TrainerServiceConfig, codec, versions_topic: str, timeout_s: float = 60) -> list[dict]:
    """Every committed AdapterVersion record of this run, read from the beginning of the versions topic."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(config.kafka.consumer_conf(f"{config.group_id}-history", **{
        "isolation.level": "read_committed", "enable.partition.eof": True, "enable.auto.commit": False}))
    try:
        metadata = consumer.list_topics(versions_topic, timeout=30).topics.get(versions_topic)
        if metadata is None or metadata.error is not None:
            raise RuntimeError(f"topic {versions_topic} is not available: "
                               f"{metadata.error if metadata else 'missing'}")
        partitions = [TopicPartition(versions_topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        consumer.assign(partitions)
        pending = {p.partition for p in partitions}
        records: list[dict] = []
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read {versions_topic} to its end within {timeout_s}s")
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise RuntimeError(f"reading {versions_topic}: {msg.error()}")
            try:
                record = codec.decode(msg.topic(), msg.value())
            except Exception as e:  # someone else's bad record must not stop this run from resuming
                log.warning("skipping unreadable record at %s[%d]@%d: %s", msg.topic(), msg.partition(),
                            msg.offset(), e)
                continue
            if record and record.get("run_id") == config.run_id:
                records.append(record)
        return records
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vllm-train trainer",
        description="Continuous DPO trainer: consumes preference batches from Kafka, trains a LoRA adapter and "
                    "publishes numbered adapter versions (exactly once, with the consumed offsets). Settings come "
                    "from the config file (TOML or properties) and VT_* environment variables; see docs/trainer.md.")
    parser.add_argument("--config", help="TOML (.toml) or properties file; VT_* environment variables override it")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpx2", "httpcore"):  # one line per registry request otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    from vllm_train.config import ConfigError

    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"vllm-train trainer: invalid configuration: {e}", file=sys.stderr)
        return 2
    service = TrainerService(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    try:
        service.start()
        service.run()
    except Exception as e:
        log.error("trainer stopped: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
