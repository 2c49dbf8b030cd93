package io.vllmtrain.inference;

import io.vllmtrain.events.AdapterVersion;
import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import io.vllmtrain.schemas.Topics;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** Reading and writing the real topics of the embedded stack the way other components do (AvroSerdes). */
final class StackTopics {
  private StackTopics() {}

  /** Publishes adapter versions as the trainer does: keyed by version id, on llm.adapter-versions. */
  static void publish(KafkaSettings settings, AdapterVersion... versions) {
    try (Publisher p = new Publisher(settings)) {
      for (AdapterVersion v : versions) {
        p.publish(v);
      }
    }
  }

  /** Publishes one version with record headers (a signature, say). */
  static void publish(KafkaSettings settings, AdapterVersion v, Map<String, byte[]> headers) {
    try (Publisher p = new Publisher(settings)) {
      p.publish(v, headers);
    }
  }

  /** A producer of adapter versions kept open across publishes (the benchmark times from the send). */
  static final class Publisher implements AutoCloseable {
    private final KafkaProducer<String, AdapterVersion> producer;

    Publisher(KafkaSettings settings) {
      Map<String, Object> props = settings.clientProperties();
      props.put("enable.idempotence", true);
      producer = new KafkaProducer<>(props, new StringSerializer(),
          AvroSerdes.<AdapterVersion>valueSerializer(settings));
    }

    /** Sends one version and waits for the broker's acknowledgement. */
    void publish(AdapterVersion v) {
      publish(v, Map.of());
    }

    void publish(AdapterVersion v, Map<String, byte[]> headers) {
      ProducerRecord<String, AdapterVersion> record = new ProducerRecord<>(Topics.ADAPTER_VERSIONS.name(),
          v.getVersionId(), v);
      headers.forEach((k, value) -> record.headers().add(k, value));
      try {
        producer.send(record).get();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException(e);
      } catch (java.util.concurrent.ExecutionException e) {
        throw new IllegalStateException("publishing " + v.getVersionId() + " failed", e.getCause());
      }
    }

    @Override
    public void close() {
      producer.close();
    }
  }

  /**
   * Reads {@code topic} from the start until {@code count} records match, or fails after {@code timeout}. Records
   * that are not this test's (other tests share the stack's topics, bad bytes included) are skipped undecoded.
   */
  static <T extends SpecificRecord> List<ConsumerRecord<String, T>> read(KafkaSettings settings, String topic,
      Predicate<ConsumerRecord<String, T>> match, int count, Duration timeout) {
    Map<String, Object> props = settings.clientProperties();
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    List<ConsumerRecord<String, T>> found = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(props, new StringDeserializer(),
        new org.apache.kafka.common.serialization.ByteArrayDeserializer());
        var values = AvroSerdes.<T>valueDeserializer(settings)) {
      List<TopicPartition> partitions = c.partitionsFor(topic).stream()
          .map(p -> new TopicPartition(topic, p.partition())).toList();
      c.assign(partitions);
      c.seekToBeginning(partitions);
      long deadline = System.nanoTime() + timeout.toNanos();
      while (found.size() < count && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> raw : c.poll(Duration.ofMillis(200))) {
          T value;
          try {
            value = values.deserialize(topic, raw.value());
          } catch (org.apache.kafka.common.errors.SerializationException e) {
            continue; // not an event of ours
          }
          ConsumerRecord<String, T> r = new ConsumerRecord<>(raw.topic(), raw.partition(), raw.offset(), raw.key(),
              value);
          if (match.test(r)) {
            found.add(r);
          }
        }
      }
    }
    if (found.size() < count) {
      throw new AssertionError("found " + found.size() + " of " + count + " records on " + topic + " within "
          + timeout.toSeconds() + " s");
    }
    return found;
  }
}
