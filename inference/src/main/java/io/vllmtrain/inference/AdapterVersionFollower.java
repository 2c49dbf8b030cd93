package io.vllmtrain.inference;

import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import io.vllmtrain.schemas.Topics;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordDeserializationException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads {@code llm.adapter-versions} from the beginning (it is compacted: one record per version) and then follows
 * it, handing each version to the {@link RolloutController}; tells it when the history present at start has been
 * read. No consumer group: every instance of the service reads every version and commits nothing. With
 * {@code rollout.signing.key}, a record whose {@link VersionSignature} is missing or wrong is handed on as untrusted
 * (listed FAILED, never loaded).
 */
public final class AdapterVersionFollower implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(AdapterVersionFollower.class);

  private final Consumer<String, AdapterVersion> consumer;
  private final RolloutController controller;
  private final InferenceMetrics metrics;
  private final Optional<Secret> signingKey;
  private final Thread thread;
  private volatile boolean running = true;

  /** With {@code signingKey}, records without a valid {@link VersionSignature} are handed on as untrusted. */
  public AdapterVersionFollower(Consumer<String, AdapterVersion> consumer, RolloutController controller,
      InferenceMetrics metrics, Optional<Secret> signingKey) {
    this.consumer = consumer;
    this.controller = controller;
    this.metrics = metrics;
    this.signingKey = signingKey;
    this.thread = new Thread(this::run, "adapter-versions");
    thread.setDaemon(true);
  }

  public static Consumer<String, AdapterVersion> kafkaConsumer(KafkaSettings settings) {
    Map<String, Object> props = settings.clientProperties();
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    // A version published inside the trainer's transaction counts once the transaction commits.
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    props.putIfAbsent(ConsumerConfig.CLIENT_ID_CONFIG, "vllm-train-inference-versions");
    props.remove(ConsumerConfig.GROUP_ID_CONFIG);
    return new KafkaConsumer<>(props, new StringDeserializer(), AvroSerdes.<AdapterVersion>valueDeserializer(settings));
  }

  public void start() {
    thread.start();
  }

  private void run() {
    try {
      List<TopicPartition> partitions = partitions();
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      Map<TopicPartition, Long> end = retrying("reading the end offsets", () -> consumer.endOffsets(partitions));
      boolean caughtUp = false;
      while (running) {
        if (!caughtUp && retrying("reading positions", () -> end.entrySet().stream()
            .allMatch(e -> consumer.position(e.getKey()) >= e.getValue()))) {
          caughtUp = true;
          controller.caughtUp();
        }
        try {
          for (ConsumerRecord<String, AdapterVersion> record : consumer.poll(Duration.ofMillis(200))) {
            if (record.value() == null) {
              metrics.versionRecordsSkipped.inc();
              log.info("tombstone for adapter version {} at offset {} ignored", record.key(), record.offset());
            } else {
              controller.published(record.value(), untrusted(record));
            }
          }
        } catch (RecordDeserializationException e) {
          metrics.versionRecordsSkipped.inc();
          log.error("unreadable record on {} partition {} offset {} skipped: {}", e.topicPartition().topic(),
              e.topicPartition().partition(), e.offset(), e.getMessage());
          consumer.seek(e.topicPartition(), e.offset() + 1);
        }
      }
    } catch (WakeupException e) {
      // close() woke the consumer up
    } catch (KafkaException e) {
      if (running) {
        log.error("following {} stopped: {}", Topics.ADAPTER_VERSIONS.name(), e.toString(), e);
      }
    } finally {
      consumer.close(Duration.ofSeconds(5));
    }
  }

  /** Why the record fails the signature check, or null (also when no signing key is configured). */
  private String untrusted(ConsumerRecord<String, AdapterVersion> record) {
    if (signingKey.isEmpty()) {
      return null;
    }
    Header h = record.headers().lastHeader(VersionSignature.HEADER);
    return VersionSignature.refusal(signingKey.get().bytes(), record.value(), h == null ? null : h.value());
  }

  /** Runs {@code call} until Kafka answers: at start Kafka may be unreachable, and nothing can serve until then. */
  private <T> T retrying(String what, java.util.function.Supplier<T> call) {
    for (long wait = 200; running; wait = Math.min(wait * 2, 5_000)) {
      try {
        return call.get();
      } catch (org.apache.kafka.common.errors.TimeoutException e) {
        log.warn("Kafka unreachable while {} of {}; retrying: {}", what, Topics.ADAPTER_VERSIONS.name(),
            e.getMessage());
      }
      try {
        Thread.sleep(wait);
      } catch (InterruptedException e) {
        throw new WakeupException();
      }
    }
    throw new WakeupException();
  }

  /** Waits until the topic exists (the lead's stack creates it; in production an operator does). */
  private List<TopicPartition> partitions() {
    String topic = Topics.ADAPTER_VERSIONS.name();
    for (long wait = 200; running; wait = Math.min(wait * 2, 5_000)) {
      try {
        var infos = consumer.partitionsFor(topic, Duration.ofSeconds(10));
        if (infos != null && !infos.isEmpty()) {
          return infos.stream().map(p -> new TopicPartition(topic, p.partition())).collect(Collectors.toList());
        }
        log.warn("topic {} does not exist yet; waiting", topic);
      } catch (org.apache.kafka.common.errors.TimeoutException e) {
        log.warn("Kafka unreachable while looking up {}; retrying: {}", topic, e.getMessage());
      }
      try {
        Thread.sleep(wait);
      } catch (InterruptedException e) {
        throw new WakeupException();
      }
    }
    throw new WakeupException();
  }

  @Override
  public void close() {
    running = false;
    consumer.wakeup();
    try {
      thread.join(10_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
