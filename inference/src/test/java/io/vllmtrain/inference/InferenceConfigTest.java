package io.vllmtrain.inference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The typed config: defaults, file + environment, and start-time validation that names every bad key. */
class InferenceConfigTest {
  static Map<String, String> minimal() {
    return new HashMap<>(Map.of(
        "base.model", "tiny-base",
        "engine.addresses", "127.0.0.1:50061, 127.0.0.1:50062",
        "kafka.bootstrap.servers", "127.0.0.1:9092",
        "registry.url", "http://127.0.0.1:8081/"));
  }

  @Test
  void defaultsFillEverythingButTheFourRequiredKeys() {
    InferenceConfig c = InferenceConfig.fromMap(minimal());
    assertEquals(50051, c.port());
    assertEquals(List.of("127.0.0.1:50061", "127.0.0.1:50062"), c.engines());
    assertEquals(Optional.empty(), c.tls());
    assertEquals(3, c.keepVersions());
    assertEquals(Duration.ofSeconds(60), c.loadTimeout());
    assertEquals(10_000, c.eventBufferCapacity());
    assertEquals("http://127.0.0.1:8081", c.kafka().registryUrl());
    assertFalse(c.startPaused());
    assertEquals(RequestLimits.DEFAULTS, c.limits());
  }

  @Test
  void sizeLimitsAreSetByTheirKeysAndCheckedAtStart() {
    Map<String, String> values = minimal();
    values.put("limits.edited.text.bytes", "4096");
    values.put("limits.prompt.messages", "8");
    assertEquals(new RequestLimits(256 * 1024, 8, 16, 512, 256, 4096), InferenceConfig.fromMap(values).limits());
    values.put("limits.id.chars", "10");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> InferenceConfig.fromMap(values));
    assertTrue(e.getMessage().contains("limits.id.chars (env VT_LIMITS_ID_CHARS) = 10 is outside [64, 65536]"),
        e.getMessage());
  }

  @Test
  void environmentOverridesTheFile(@TempDir Path dir) throws Exception {
    Path file = dir.resolve("inference.properties");
    StringBuilder text = new StringBuilder();
    minimal().forEach((k, v) -> text.append(k).append('=').append(v).append('\n'));
    text.append("server.port=6000\nrollout.keep=5\n");
    Files.writeString(file, text);
    InferenceConfig c = InferenceConfig.load(file, Map.of("VT_SERVER_PORT", "7000", "VT_ROLLOUT_PIN", "run/v000002"));
    assertEquals(7000, c.port());
    assertEquals(5, c.keepVersions());
    assertEquals(Optional.of("run/v000002"), c.startPinned());
  }

  @Test
  void everyProblemIsReportedAtOnceWithItsKeyAndVariable() {
    Map<String, String> values = new HashMap<>(Map.of(
        "engine.addresses", "localhost",
        "server.port", "http",
        "rollout.keep", "1",
        "server.tls.cert", "/nonexistent/cert.pem"));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> InferenceConfig.fromMap(values));
    String m = e.getMessage();
    assertTrue(m.contains("base.model (env VT_BASE_MODEL) is not set"), m);
    assertTrue(m.contains("engine.addresses (env VT_ENGINE_ADDRESSES): 'localhost' is not host:port"), m);
    assertTrue(m.contains("server.port (env VT_SERVER_PORT) = 'http' is not an integer"), m);
    assertTrue(m.contains("rollout.keep (env VT_ROLLOUT_KEEP) = 1 is outside [2, 64]"), m);
    assertTrue(m.contains("server.tls.cert (env VT_SERVER_TLS_CERT) = /nonexistent/cert.pem: no readable file"), m);
    assertTrue(m.contains("server.tls.cert and server.tls.key must be set together"), m);
    assertTrue(m.contains("kafka.bootstrap.servers (env VT_KAFKA_BOOTSTRAP_SERVERS) is not set"), m);
    assertTrue(m.contains("registry.url (env VT_REGISTRY_URL) is not set"), m);
  }

  @Test
  void theIdsSigningKeyIsBase64OfAtLeast32BytesAndNeverShown() {
    Map<String, String> values = minimal();
    String key = java.util.Base64.getEncoder().encodeToString("0123456789abcdef0123456789abcdef".getBytes());
    values.put("ids.signing.key", key);
    InferenceConfig c = InferenceConfig.fromMap(values);
    assertEquals(32, c.idsSigningKey().orElseThrow().bytes().length);
    assertFalse(c.toString().contains(key), "the key is not in the config's toString");
    values.put("ids.signing.key", "c2hvcnQ=");
    IllegalArgumentException shortKey = assertThrows(IllegalArgumentException.class,
        () -> InferenceConfig.fromMap(values));
    assertTrue(shortKey.getMessage().contains("ids.signing.key (env VT_IDS_SIGNING_KEY) holds 5 bytes; at least 32"),
        shortKey.getMessage());
    values.put("ids.signing.key", "not base64!");
    IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> InferenceConfig.fromMap(values));
    assertTrue(bad.getMessage().contains("ids.signing.key (env VT_IDS_SIGNING_KEY) is not base64"), bad.getMessage());
    assertFalse(bad.getMessage().contains("not base64!"), "the value is not echoed");
  }

  @Test
  void trustedRunsAndTheVersionSigningKey() {
    Map<String, String> values = minimal();
    assertEquals(List.of(), InferenceConfig.fromMap(values).trustedRuns());
    assertEquals(Optional.empty(), InferenceConfig.fromMap(values).rolloutSigningKey());
    values.put("rollout.trusted.runs", " run-1, prod-* ,");
    values.put("rollout.signing.key", java.util.Base64.getEncoder().encodeToString(new byte[40]));
    InferenceConfig c = InferenceConfig.fromMap(values);
    assertEquals(List.of("run-1", "prod-*"), c.trustedRuns());
    assertEquals(40, c.rolloutSigningKey().orElseThrow().bytes().length);
  }

  @Test
  void mutualTlsNeedsTheServerCertificateToo(@TempDir Path dir) throws Exception {
    Path ca = Files.writeString(dir.resolve("ca.pem"), "x");
    Map<String, String> values = minimal();
    values.put("server.tls.client.ca", ca.toString());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> InferenceConfig.fromMap(values));
    assertTrue(e.getMessage().contains("server.tls.client.ca needs server.tls.cert and server.tls.key"));
  }
}
