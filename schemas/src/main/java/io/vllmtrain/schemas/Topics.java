package io.vllmtrain.schemas;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The one table of topic names and settings, read from {@code vllm_train/topics.json} (shared with Python).
 * Components refer to topics through these constants, never through string literals.
 */
public final class Topics {
  private static final Map<String, TopicSpec> BY_ID = new LinkedHashMap<>();
  private static final Map<String, String> DLQ_HEADERS = new LinkedHashMap<>();

  static {
    try (InputStream in = Topics.class.getResourceAsStream("/vllm_train/topics.json")) {
      if (in == null) {
        throw new IllegalStateException("vllm_train/topics.json is missing from the classpath");
      }
      JsonNode root = new ObjectMapper().readTree(in);
      for (JsonNode t : root.get("topics")) {
        Map<String, String> config = new LinkedHashMap<>();
        t.get("config").fields().forEachRemaining(e -> config.put(e.getKey(), e.getValue().asText()));
        TopicSpec spec = new TopicSpec(t.get("id").asText(), t.get("name").asText(), t.get("partitions").asInt(),
            t.get("key").asText(), t.get("value").asText(), Map.copyOf(config));
        BY_ID.put(spec.id(), spec);
      }
      root.get("dlq_headers").fields().forEachRemaining(e -> DLQ_HEADERS.put(e.getKey(), e.getValue().asText()));
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read vllm_train/topics.json", e);
    }
  }

  public static final TopicSpec PROMPTS = byId("prompts");
  public static final TopicSpec RESPONSES = byId("responses");
  public static final TopicSpec FEEDBACK = byId("feedback");
  public static final TopicSpec PREFERENCE_PAIRS = byId("preference_pairs");
  public static final TopicSpec PREFERENCE_BATCHES = byId("preference_batches");
  public static final TopicSpec ADAPTER_VERSIONS = byId("adapter_versions");
  public static final TopicSpec DLQ = byId("dlq");

  /** Header names on {@link #DLQ} records. */
  public static final String DLQ_REASON = DLQ_HEADERS.get("reason");
  public static final String DLQ_SOURCE_TOPIC = DLQ_HEADERS.get("source_topic");
  public static final String DLQ_SOURCE_PARTITION = DLQ_HEADERS.get("source_partition");
  public static final String DLQ_SOURCE_OFFSET = DLQ_HEADERS.get("source_offset");
  public static final String DLQ_COMPONENT = DLQ_HEADERS.get("component");
  /** Present when a dead letter carries only the first bytes of the original value: the original size in bytes. */
  public static final String DLQ_PAYLOAD_TRUNCATED = DLQ_HEADERS.get("payload_truncated");

  private Topics() {}

  public static TopicSpec byId(String id) {
    TopicSpec spec = BY_ID.get(id);
    if (spec == null) {
      throw new IllegalArgumentException("unknown topic id '" + id + "'; known: " + BY_ID.keySet());
    }
    return spec;
  }

  public static List<TopicSpec> all() {
    return new ArrayList<>(BY_ID.values());
  }
}
