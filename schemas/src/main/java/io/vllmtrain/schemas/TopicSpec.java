package io.vllmtrain.schemas;

import java.util.Map;

/** One row of the topic table ({@code vllm_train/topics.json}): name, partitions and topic configs. */
public record TopicSpec(String id, String name, int partitions, String key, String value, Map<String, String> config) {
  /** Kafka's default {@code message.max.bytes}: what a topic without its own limit accepts on a default broker. */
  public static final int KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1048588;

  /**
   * The largest record batch the topic accepts: its {@code max.message.bytes} in the table, or Kafka's broker default
   * where the table sets none (the broker may allow more; writers should not count on it).
   */
  public int maxMessageBytes() {
    String v = config.get("max.message.bytes");
    return v == null ? KAFKA_DEFAULT_MAX_MESSAGE_BYTES : Integer.parseInt(v);
  }

  public boolean compacted() {
    return "compact".equals(config.get("cleanup.policy"));
  }
}
