package io.vllmtrain.schemas;

import io.apicurio.registry.serde.avro.AvroKafkaDeserializer;
import io.apicurio.registry.serde.avro.AvroKafkaSerializer;
import java.nio.ByteBuffer;
import java.util.Map;
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
 * that does not match the schema, or the schema id the registry does not know.
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
    AvroKafkaDeserializer<T> d = new AvroKafkaDeserializer<>();
    d.configure(settings.serdeProperties(), false);
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

  private record ExplainingDeserializer<T>(Deserializer<T> inner, String registryUrl) implements Deserializer<T> {
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
        return headers == null ? inner.deserialize(topic, data) : inner.deserialize(topic, headers, data);
      } catch (RuntimeException e) {
        String why = rootMessage(e);
        if (!registryKnows(registryUrl, id)) {
          throw new SerializationException("schema id " + id + " of a record on " + topic
              + " is unknown to the registry at " + registryUrl);
        }
        throw new SerializationException("cannot decode a record on " + topic + " (schema id " + id + "): " + why, e);
      }
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {}

    @Override
    public void close() {
      inner.close();
    }
  }

  /** Asks the registry (Confluent API) whether it has a schema with this id; true when in doubt. */
  static boolean registryKnows(String registryUrl, int id) {
    try {
      var request = java.net.http.HttpRequest.newBuilder(
          java.net.URI.create(registryUrl + "/apis/ccompat/v7/schemas/ids/" + id))
          .timeout(java.time.Duration.ofSeconds(5)).GET().build();
      return java.net.http.HttpClient.newHttpClient()
          .send(request, java.net.http.HttpResponse.BodyHandlers.discarding()).statusCode() != 404;
    } catch (java.io.IOException e) {
      return true;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return true;
    }
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
