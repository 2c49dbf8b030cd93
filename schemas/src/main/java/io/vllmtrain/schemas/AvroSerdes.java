package io.vllmtrain.schemas;

import com.microsoft.kiota.ApiException;
import io.apicurio.registry.serde.avro.AvroKafkaDeserializer;
import io.apicurio.registry.serde.avro.AvroKafkaSerializer;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/**
 * The one serde factory: Avro values in Confluent framing (magic byte 0 + 4-byte schema id) through the schema
 * registry, so Python's confluent-kafka clients read and write the same bytes. With the default
 * {@code registry.flavor=apicurio} these are the Apicurio serdes (Apicurio's v3 API); with {@code confluent} a small
 * client of the Confluent Schema Registry API (Confluent's registry, e.g. in the Testcontainers tests).
 *
 * <p>Failures come back as a {@link SerializationException} with one line that says what is wrong: the field
 * that does not match the schema, or the schema id the registry does not know. A registry that gives no definite
 * answer (unreachable, too slow, HTTP 5xx, 401/403, 429) is a {@link RegistryUnavailableException} instead: the
 * record is not at fault.
 */
public final class AvroSerdes {
  private AvroSerdes() {}

  public static <T extends SpecificRecord> Serializer<T> valueSerializer(KafkaSettings settings) {
    if (settings.confluentRegistry()) {
      return new ExplainingSerializer<>(new ConfluentWireSerde.AvroSerializer<>(ccompat(settings)));
    }
    AvroKafkaSerializer<T> s = new AvroKafkaSerializer<>();
    s.configure(settings.serdeProperties(), false);
    return new ExplainingSerializer<>(s);
  }

  public static <T extends SpecificRecord> Deserializer<T> valueDeserializer(KafkaSettings settings) {
    if (settings.confluentRegistry()) {
      return new ConfluentWireSerde.AvroDeserializer<>(ccompat(settings));
    }
    Map<String, Object> props = settings.serdeProperties();
    // A schema id always names the same schema: once fetched it never needs the registry again (as with Confluent's
    // client), whereas a refresh every 30 s (the default) would let an outage of the registry stop every consumer.
    props.put("apicurio.registry.check-period-ms", Long.toString(Duration.ofDays(3650).toMillis()));
    props.put("apicurio.registry.fault-tolerant-refresh", "true");
    AvroKafkaDeserializer<T> d = new AvroKafkaDeserializer<>();
    d.configure(props, false);
    return new ExplainingDeserializer<>(d, settings.registryUrl());
  }

  private static CcompatRegistryClient ccompat(KafkaSettings settings) {
    return new CcompatRegistryClient(settings.registryUrl(),
        settings.registryAuth().get("apicurio.registry.auth.username"),
        settings.registryAuth().get("apicurio.registry.auth.password"));
  }

  public static <T extends SpecificRecord> Serde<T> valueSerde(KafkaSettings settings) {
    return Serdes.serdeFrom(valueSerializer(settings), valueDeserializer(settings));
  }

  /** Reads the schema id of a Confluent-framed value, or fails with a message if the bytes are not framed. */
  public static int schemaId(byte[] data) {
    if (data == null || data.length < 5 || data[0] != 0) {
      throw new SerializationException("not a schema-registry framed Avro record (expected magic byte 0 and a 4-byte "
          + "schema id, got " + (data == null ? "null" : data.length + " bytes") + ")");
    }
    return ByteBuffer.wrap(data, 1, 4).getInt();
  }

  private record ExplainingSerializer<T extends SpecificRecord>(Serializer<T> inner) implements Serializer<T> {
    @Override
    public byte[] serialize(String topic, T data) {
      return serialize(topic, null, data);
    }

    @Override
    public byte[] serialize(String topic, Headers headers, T data) {
      try {
        return headers == null ? inner.serialize(topic, data) : inner.serialize(topic, headers, data);
      } catch (RuntimeException e) {
        String type = data == null ? "null" : data.getSchema().getName();
        String why = data == null ? rootMessage(e) : SchemaMismatch.find(data).orElse(rootMessage(e));
        throw new SerializationException(type + " for " + topic + " does not match its schema: " + why, e);
      }
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {}

    @Override
    public void close() {
      inner.close();
    }
  }

  /**
   * Apicurio's deserializer with failures explained and classified: an unknown schema id (HTTP 404) or bytes that
   * do not decode are a {@link SerializationException}; a registry that gives no definite answer is a
   * {@link RegistryUnavailableException}. Apicurio's client has no request timeout, so the first record of each
   * schema id (the one that asks the registry) is decoded on a helper thread and given up on after
   * {@link #REGISTRY_TIMEOUT}; later records of that id decode on the caller's thread from the client's cache.
   */
  private static final class ExplainingDeserializer<T> implements Deserializer<T> {
    private final Deserializer<T> inner;
    private final String registryUrl;
    private volatile int[] resolved = new int[0]; // schema ids fetched so far: a handful, scanned without boxing

    ExplainingDeserializer(Deserializer<T> inner, String registryUrl) {
      this.inner = inner;
      this.registryUrl = registryUrl;
    }

    @Override
    public T deserialize(String topic, byte[] data) {
      return deserialize(topic, null, data);
    }

    @Override
    public T deserialize(String topic, Headers headers, byte[] data) {
      if (data == null) {
        return null;
      }
      int id = schemaId(data);
      try {
        if (resolved(id)) {
          return decode(topic, headers, data);
        }
        T value = withTimeout(() -> decode(topic, headers, data), topic, id);
        markResolved(id);
        return value;
      } catch (RegistryUnavailableException e) {
        throw e;
      } catch (RuntimeException e) {
        int status = httpStatus(e);
        if (status == 404) {
          throw new SerializationException("schema id " + id + " of a record on " + topic
              + " is unknown to the registry at " + registryUrl);
        }
        if (status > 0 || transportFailure(e)) {
          throw new RegistryUnavailableException("the registry at " + registryUrl + " gave no answer about schema id "
              + id + " of a record on " + topic + " (" + (status > 0 ? "HTTP " + status : rootMessage(e))
              + "); the record may be valid: retry it later", e);
        }
        markResolved(id); // the registry answered: these bytes do not decode with their schema
        throw new SerializationException("cannot decode a record on " + topic + " (schema id " + id + "): "
            + rootMessage(e), e);
      }
    }

    private boolean resolved(int id) {
      for (int r : resolved) {
        if (r == id) {
          return true;
        }
      }
      return false;
    }

    private synchronized void markResolved(int id) {
      if (!resolved(id)) {
        int[] more = java.util.Arrays.copyOf(resolved, resolved.length + 1);
        more[resolved.length] = id;
        resolved = more;
      }
    }

    private T decode(String topic, Headers headers, byte[] data) {
      return headers == null ? inner.deserialize(topic, data) : inner.deserialize(topic, headers, data);
    }

    private T withTimeout(java.util.function.Supplier<T> decode, String topic, int id) {
      Future<T> future = REGISTRY_CALLS.submit(decode::get);
      try {
        return future.get(REGISTRY_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      } catch (ExecutionException e) {
        throw e.getCause() instanceof RuntimeException r ? r : new SerializationException(e.getCause());
      } catch (TimeoutException e) {
        future.cancel(true); // interrupts the client's wait, which frees the helper thread
        throw new RegistryUnavailableException("the registry at " + registryUrl + " did not answer within "
            + REGISTRY_TIMEOUT.toSeconds() + " s about schema id " + id + " of a record on " + topic
            + "; the record may be valid: retry it later", e);
      } catch (InterruptedException e) {
        future.cancel(true);
        Thread.currentThread().interrupt();
        throw new RegistryUnavailableException("interrupted while asking the registry at " + registryUrl
            + " about schema id " + id, e);
      }
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {}

    @Override
    public void close() {
      inner.close();
    }
  }

  /** How long a registry request may take: the same 10 s as the Confluent-API client and Python's default. */
  static final Duration REGISTRY_TIMEOUT = Duration.ofSeconds(10);

  private static final ExecutorService REGISTRY_CALLS = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "registry-lookup");
    t.setDaemon(true);
    return t;
  });

  /** The HTTP status of the registry's answer among the causes (Apicurio's client, Kiota), or -1. */
  static int httpStatus(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof ApiException api && api.getResponseStatusCode() > 0) {
        return api.getResponseStatusCode();
      }
    }
    return -1;
  }

  /** Whether a request failed on its way (refused, reset, timed out, TLS, interrupted) instead of being answered. */
  static boolean transportFailure(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      String type = t.getClass().getName();
      if (t instanceof java.net.SocketException || t instanceof java.net.SocketTimeoutException
          || t instanceof java.net.UnknownHostException || t instanceof java.net.http.HttpTimeoutException
          || t instanceof TimeoutException || t instanceof javax.net.ssl.SSLException
          || t instanceof InterruptedException || type.startsWith("io.vertx.") || type.startsWith("io.netty.")) {
        return true;
      }
    }
    return false;
  }

  static String rootMessage(Throwable e) {
    Throwable t = e;
    while (t.getCause() != null && t.getCause() != t) {
      t = t.getCause();
    }
    String m = t.getMessage();
    return (m == null ? t.getClass().getSimpleName() : m).lines().findFirst().orElse("");
  }
}
