package io.vllmtrain.streams;

import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Deserializer;

/** Reads a whole topic from the beginning, committed records only (read_committed), without a consumer group. */
final class TopicReader<V> implements AutoCloseable {
  private final KafkaConsumer<byte[], V> consumer;

  private TopicReader(KafkaSettings settings, String topic, Deserializer<V> values) {
    Map<String, Object> props = new HashMap<>(settings.clientProperties());
    props.put("isolation.level", "read_committed");
    props.put("enable.auto.commit", "false");
    consumer = new KafkaConsumer<>(props, new ByteArrayDeserializer(), values);
    List<TopicPartition> parts = new ArrayList<>();
    consumer.partitionsFor(topic).forEach(p -> parts.add(new TopicPartition(topic, p.partition())));
    consumer.assign(parts);
    consumer.seekToBeginning(parts);
  }

  static <T extends org.apache.avro.specific.SpecificRecord> TopicReader<T> avro(KafkaSettings settings, String topic) {
    return new TopicReader<>(settings, topic, AvroSerdes.valueDeserializer(settings));
  }

  static TopicReader<byte[]> bytes(KafkaSettings settings, String topic) {
    return new TopicReader<>(settings, topic, new ByteArrayDeserializer());
  }

  /** Polls once (up to {@code wait}) and hands every record to {@code each}. */
  void poll(Duration wait, Consumer<ConsumerRecord<byte[], V>> each) {
    consumer.poll(wait).forEach(each);
  }

  @Override
  public void close() {
    consumer.close(Duration.ofSeconds(5));
  }
}
