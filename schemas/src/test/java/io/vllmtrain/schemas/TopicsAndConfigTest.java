package io.vllmtrain.schemas;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TopicsAndConfigTest {
  @Test
  void theTopicTableHasEveryTopicOfTheDesign() {
    assertEquals("llm.prompts", Topics.PROMPTS.name());
    assertEquals("llm.preference-batches", Topics.PREFERENCE_BATCHES.name());
    assertTrue(Topics.ADAPTER_VERSIONS.compacted());
    assertEquals("dlq.reason", Topics.DLQ_REASON);
    assertEquals(7, Topics.all().size());
  }

  @Test
  void everyTopicTheStreamsAppWritesSaysHowLargeARecordItTakes() {
    assertEquals(16 * 1024 * 1024, Topics.PREFERENCE_BATCHES.maxMessageBytes());
    assertEquals(16 * 1024 * 1024, Topics.PREFERENCE_PAIRS.maxMessageBytes());
    assertEquals(16 * 1024 * 1024, Topics.DLQ.maxMessageBytes());
    assertEquals(TopicSpec.KAFKA_DEFAULT_MAX_MESSAGE_BYTES, Topics.ADAPTER_VERSIONS.maxMessageBytes(),
        "no limit in the table: a default broker's");
    assertEquals("dlq.payload.truncated", Topics.DLQ_PAYLOAD_TRUNCATED);
  }

  @Test
  void joinInputsAreCoPartitioned() {
    assertEquals(Topics.PROMPTS.partitions(), Topics.RESPONSES.partitions());
    assertEquals(Topics.PROMPTS.partitions(), Topics.FEEDBACK.partitions());
  }

  @Test
  void environmentOverridesTheFile(@TempDir Path dir) throws Exception {
    Path file = dir.resolve("svc.properties");
    Files.writeString(file, "kafka.bootstrap.servers=file:9092\nbatch.max.pairs=32\n");
    Map<String, String> cfg = ConfigSource.load(file, Map.of("VT_KAFKA_BOOTSTRAP_SERVERS", "env:9092", "PATH", "/x"));
    assertEquals("env:9092", cfg.get("kafka.bootstrap.servers"));
    assertEquals("32", cfg.get("batch.max.pairs"));
    assertEquals(2, cfg.size());
    assertEquals("VT_BATCH_MAX_PAIRS", ConfigSource.envName("batch.max.pairs"));
  }

  @Test
  void aMissingConfigFileIsNamed() {
    var e = assertThrows(IllegalArgumentException.class, () -> ConfigSource.load(Path.of("nope.properties"), Map.of()));
    assertTrue(e.getMessage().contains("nope.properties"));
  }

  @Test
  void securitySettingsReachEveryClientAndTheRegistry() {
    KafkaSettings s = KafkaSettings.fromConfig(Map.of(
        "kafka.bootstrap.servers", "b:9093", "kafka.security.protocol", "SASL_SSL",
        "kafka.sasl.mechanism", "SCRAM-SHA-512", "kafka.ssl.truststore.location", "/certs/ts.jks",
        "registry.url", "https://reg:8443/", "registry.username", "svc", "registry.password", "secret"));
    assertEquals("SASL_SSL", s.clientProperties().get("security.protocol"));
    assertEquals("/certs/ts.jks", s.clientProperties().get("ssl.truststore.location"));
    assertEquals("https://reg:8443/apis/registry/v3", s.serdeProperties().get("apicurio.registry.url"));
    assertEquals("svc", s.serdeProperties().get("apicurio.registry.auth.username"));
  }

  @Test
  void missingKafkaOrRegistrySettingsSayWhatToSet() {
    var e1 = assertThrows(IllegalArgumentException.class, () -> KafkaSettings.fromConfig(Map.of("registry.url", "x")));
    assertTrue(e1.getMessage().contains("VT_KAFKA_BOOTSTRAP_SERVERS"));
    var e2 = assertThrows(IllegalArgumentException.class,
        () -> KafkaSettings.fromConfig(Map.of("kafka.bootstrap.servers", "b:1")));
    assertTrue(e2.getMessage().contains("VT_REGISTRY_URL"));
  }
}
