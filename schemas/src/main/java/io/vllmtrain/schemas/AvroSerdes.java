package io.vllmtrain.schemas;

import io.apicurio.registry.serde.avro.AvroKafkaDeserializer;
import io.apicurio.registry.serde.avro.AvroKafkaSerializer;
import io.apicurio.registry.serde.avro.AvroSerde;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/**
 * The one serde factory: Avro values in Confluent framing (magic byte 0 + 4-byte schema id) through the
 * schema registry, so Python's confluent-kafka clients read and write the same bytes.
 */
public final class AvroSerdes {
  private AvroSerdes() {}

  public static <T extends SpecificRecord> Serializer<T> valueSerializer(KafkaSettings settings) {
    AvroKafkaSerializer<T> s = new AvroKafkaSerializer<>();
    s.configure(settings.serdeProperties(), false);
    return s;
  }

  public static <T extends SpecificRecord> Deserializer<T> valueDeserializer(KafkaSettings settings) {
    AvroKafkaDeserializer<T> d = new AvroKafkaDeserializer<>();
    d.configure(settings.serdeProperties(), false);
    return d;
  }

  public static <T extends SpecificRecord> Serde<T> valueSerde(KafkaSettings settings) {
    AvroSerde<T> serde = new AvroSerde<>();
    serde.configure(settings.serdeProperties(), false);
    return serde;
  }
}
