package io.vllmtrain.streams;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Properties;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StreamsAppConfigTest {
  private static final Map<String, String> MINIMAL =
      Map.of("kafka.bootstrap.servers", "localhost:9092", "registry.url", "http://localhost:8081");

  @Test
  void defaultsMatchTheIssue() {
    StreamsAppConfig c = StreamsAppConfig.from(MINIMAL);
    assertEquals(32, c.batching().size());
    assertEquals(Duration.ofSeconds(30), c.batching().maxWait());
    assertEquals(Duration.ofDays(7), c.rules().retention());
    assertTrue(c.rules().crossRequestEnabled());
    assertEquals(PairingRules.DEFAULTS, c.rules());
  }

  @Test
  void theFileIsReadAndEnvironmentVariablesOverrideIt(@TempDir Path dir) throws Exception {
    Path file = dir.resolve("streams.properties");
    Files.writeString(file, "kafka.bootstrap.servers=broker:9092\nregistry.url=http://registry:8080\n"
        + "streams.batch.size=8\nstreams.batch.max.wait=2s\nstreams.retention=3d\n");
    StreamsAppConfig c = StreamsAppConfig.load(file, Map.of("VT_STREAMS_BATCH_SIZE", "64",
        "VT_STREAMS_CROSS_REQUEST_ENABLED", "false", "VT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"));
    assertEquals(64, c.batching().size());
    assertEquals(Duration.ofSeconds(2), c.batching().maxWait());
    assertEquals(Duration.ofDays(3), c.rules().retention());
    assertEquals(false, c.rules().crossRequestEnabled());

    Properties p = c.streamsProperties();
    assertEquals("exactly_once_v2", p.get("processing.guarantee"));
    assertEquals("broker:9092", p.get("bootstrap.servers"));
    assertEquals("SASL_SSL", p.get("security.protocol"), "kafka.* passes through to the clients");
  }

  @Test
  void producerBatchesAndRocksDbSettingsHaveDefaultsThatKafkaKeysReplace() {
    Properties defaults = StreamsAppConfig.from(MINIMAL).streamsProperties();
    assertEquals(StreamsAppConfig.PRODUCER_BATCH_BYTES, defaults.get("producer.batch.size"));
    assertEquals(RocksDBSettings.class, defaults.get("rocksdb.config.setter"));

    Properties prefixed = StreamsAppConfig.from(with("kafka.producer.batch.size", "65536")).streamsProperties();
    assertEquals("65536", prefixed.get("producer.batch.size"));
    Properties plain = StreamsAppConfig.from(with("kafka.batch.size", "32768")).streamsProperties();
    assertEquals("32768", plain.get("batch.size"));
    assertEquals(null, plain.get("producer.batch.size"), "a prefixed default would override the user's plain key");
    Properties setter = StreamsAppConfig.from(with("kafka.rocksdb.config.setter", "com.example.Mine"))
        .streamsProperties();
    assertEquals("com.example.Mine", setter.get("rocksdb.config.setter"));
  }

  @Test
  void limitsHaveDocumentedDefaults() {
    StreamsAppConfig c = StreamsAppConfig.from(MINIMAL);
    assertEquals(4 * 1024 * 1024, c.batching().maxBytes());
    assertEquals(1024 * 1024, c.limits().stateMaxBytes());
    assertEquals(100, c.rules().feedbackPerRequest());
    assertEquals(Duration.ofHours(1), c.rules().orphanRetention());
    assertEquals(16 * 1024 * 1024 - 1024, c.limits().deadLetterMaxBytes(), "the DLQ's limit in the topic table");
  }

  @Test
  void theProducerAndTheInternalTopicsTakeRecordsAsLargeAsTheTopicTableAllows() {
    Properties p = StreamsAppConfig.from(MINIMAL).streamsProperties();
    assertEquals(16 * 1024 * 1024, p.get("producer.max.request.size"), "Kafka's default is 1 MB");
    assertEquals(Integer.toString(16 * 1024 * 1024), p.get("topic.max.message.bytes"));

    Map<String, String> smaller = new java.util.HashMap<>(MINIMAL);
    smaller.put("kafka.max.request.size", "3145728");
    smaller.put("streams.batch.max.bytes", "1048576");
    StreamsAppConfig c = StreamsAppConfig.from(smaller);
    assertEquals("3145728", c.streamsProperties().get("max.request.size"));
    assertEquals(null, c.streamsProperties().get("producer.max.request.size"));
    assertEquals(3145728 - 1024, c.limits().deadLetterMaxBytes(), "dead letters fit the producer's limit");
  }

  @Test
  void aLimitLargerThanKafkaTakesIsAConfigErrorThatSaysTheMostItCanBe() {
    IllegalArgumentException batch = assertThrows(IllegalArgumentException.class,
        () -> StreamsAppConfig.from(with("kafka.producer.max.request.size", "1048576")));
    assertTrue(batch.getMessage().startsWith("streams.batch.max.bytes (VT_STREAMS_BATCH_MAX_BYTES) = 4194304 is more "
        + "than Kafka takes: at most 1047552"), batch.getMessage());
    IllegalArgumentException state = assertThrows(IllegalArgumentException.class,
        () -> StreamsAppConfig.from(with("streams.state.max.bytes", "10000000")));
    assertTrue(state.getMessage().startsWith("streams.state.max.bytes (VT_STREAMS_STATE_MAX_BYTES) = 10000000 is "
        + "more than a changelog record can hold: at most 8388096"), state.getMessage());
    IllegalArgumentException orphan = assertThrows(IllegalArgumentException.class,
        () -> StreamsAppConfig.from(with("streams.feedback.orphan.retention", "1m")));
    assertTrue(orphan.getMessage().contains("must be at least the feedback grace"), orphan.getMessage());
  }

  @Test
  void mistakesAreNamedWithTheirKeyAndVariable() {
    IllegalArgumentException typo = assertThrows(IllegalArgumentException.class,
        () -> StreamsAppConfig.from(with("streams.batch.sise", "8")));
    assertTrue(typo.getMessage().contains("unknown config key(s) [streams.batch.sise]"), typo.getMessage());

    IllegalArgumentException duration = assertThrows(IllegalArgumentException.class,
        () -> StreamsAppConfig.from(with("streams.batch.max.wait", "soon")));
    assertEquals("streams.batch.max.wait (VT_STREAMS_BATCH_MAX_WAIT) = 'soon' is not a duration "
        + "(e.g. 250ms, 30s, 5m, 2h, 7d)", duration.getMessage());

    IllegalArgumentException margin = assertThrows(IllegalArgumentException.class,
        () -> StreamsAppConfig.from(with("streams.rating.margin", "0")));
    assertTrue(margin.getMessage().contains("rating margin must be in (0, 1]"), margin.getMessage());

    IllegalArgumentException bootstrap = assertThrows(IllegalArgumentException.class,
        () -> StreamsAppConfig.from(Map.of("registry.url", "http://r")));
    assertTrue(bootstrap.getMessage().contains("VT_KAFKA_BOOTSTRAP_SERVERS"), bootstrap.getMessage());
  }

  private static Map<String, String> with(String key, String value) {
    Map<String, String> m = new java.util.HashMap<>(MINIMAL);
    m.put(key, value);
    return m;
  }
}
