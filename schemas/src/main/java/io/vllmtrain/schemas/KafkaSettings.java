package io.vllmtrain.schemas;

import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * How a component reaches Kafka and the schema registry. Every key {@code kafka.X} of the service's config becomes
 * the client setting {@code X} (so {@code kafka.security.protocol}, {@code kafka.sasl.jaas.config},
 * {@code kafka.ssl.truststore.location}... work as in any Kafka client); {@code registry.url} is the registry's base
 * URL (Apicurio: {@code http://host:port}; the Java serdes use its {@code /apis/registry/v3} API and Python uses
 * {@code /apis/ccompat/v7}), with optional {@code registry.username}/{@code registry.password} and
 * {@code registry.truststore.location}/{@code registry.truststore.password}. With {@code registry.flavor=confluent}
 * the URL is a Confluent Schema Registry API (Confluent's registry itself, or Apicurio's {@code /apis/ccompat/v7}) and
 * the serdes speak that API instead (basic auth only).
 */
public record KafkaSettings(Map<String, String> client, String registryUrl, Map<String, String> registryAuth,
    String registryFlavor) {
  public static final String KAFKA_PREFIX = "kafka.";

  public KafkaSettings {
    if (!"apicurio".equals(registryFlavor) && !"confluent".equals(registryFlavor)) {
      throw new IllegalArgumentException("registry.flavor must be apicurio or confluent, not '" + registryFlavor + "'");
    }
    client = Map.copyOf(client);
    registryAuth = Map.copyOf(registryAuth);
    Objects.requireNonNull(registryUrl, "registryUrl");
    if (!client.containsKey("bootstrap.servers")) {
      throw new IllegalArgumentException("kafka.bootstrap.servers is not set (config key kafka.bootstrap.servers or "
          + "environment variable VT_KAFKA_BOOTSTRAP_SERVERS)");
    }
  }

  /** Reads the {@code kafka.*} and {@code registry.*} keys of a service config map. */
  public static KafkaSettings fromConfig(Map<String, String> config) {
    Map<String, String> client = new TreeMap<>();
    config.forEach((k, v) -> {
      if (k.startsWith(KAFKA_PREFIX)) {
        client.put(k.substring(KAFKA_PREFIX.length()), v);
      }
    });
    String url = config.get("registry.url");
    if (url == null || url.isBlank()) {
      throw new IllegalArgumentException("registry.url is not set (config key registry.url or environment variable "
          + "VT_REGISTRY_URL), e.g. http://127.0.0.1:8081");
    }
    Map<String, String> auth = new TreeMap<>();
    copy(config, "registry.username", auth, "apicurio.registry.auth.username");
    copy(config, "registry.password", auth, "apicurio.registry.auth.password");
    copy(config, "registry.truststore.location", auth, "apicurio.registry.tls.truststore.location");
    copy(config, "registry.truststore.password", auth, "apicurio.registry.tls.truststore.password");
    return new KafkaSettings(client, stripSlash(url), auth, config.getOrDefault("registry.flavor", "apicurio"));
  }

  public static KafkaSettings of(String bootstrapServers, String registryUrl) {
    return new KafkaSettings(Map.of("bootstrap.servers", bootstrapServers), stripSlash(registryUrl), Map.of(),
        "apicurio");
  }

  /** The same cluster, through a Confluent Schema Registry API at {@code url} (e.g. Apicurio's /apis/ccompat/v7). */
  public KafkaSettings withConfluentRegistry(String url) {
    return new KafkaSettings(client, stripSlash(url), registryAuth, "confluent");
  }

  public boolean confluentRegistry() {
    return "confluent".equals(registryFlavor);
  }

  public String bootstrapServers() {
    return client.get("bootstrap.servers");
  }

  /** Client settings for producers, consumers, admin clients and Streams (security included). */
  public Map<String, Object> clientProperties() {
    return new HashMap<>(client);
  }

  /** Settings for the Apicurio Avro serdes: Confluent framing, registry v3 API, auto-registration. */
  public Map<String, Object> serdeProperties() {
    Map<String, Object> props = new HashMap<>(registryAuth);
    props.put("apicurio.registry.url", registryUrl + "/apis/registry/v3");
    props.put("apicurio.registry.auto-register", "true");
    props.put("apicurio.registry.use-specific-avro-reader", "true");
    props.put("apicurio.registry.avro-datum-provider", CachingAvroDatumProvider.class.getName());
    return props;
  }

  private static void copy(Map<String, String> from, String key, Map<String, String> to, String as) {
    String v = from.get(key);
    if (v != null && !v.isBlank()) {
      to.put(as, v);
    }
  }

  private static String stripSlash(String url) {
    return url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
  }
}
