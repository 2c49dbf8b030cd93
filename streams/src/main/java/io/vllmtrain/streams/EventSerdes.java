package io.vllmtrain.streams;

import io.vllmtrain.events.PreferenceBatch;
import io.vllmtrain.events.PreferencePair;
import io.vllmtrain.schemas.AvroSerdes;
import io.vllmtrain.schemas.KafkaSettings;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;

/**
 * The serdes of the contract topics, handed to {@link PreferenceTopology}: in production the registry serdes of
 * {@link AvroSerdes}; tests may pass others that write the same framing without a registry.
 *
 * @param events decodes a value of any event topic into its Avro class (the writer schema decides which)
 */
public record EventSerdes(Deserializer<Object> events, Serde<PreferencePair> pairs, Serde<PreferenceBatch> batches) {
  @SuppressWarnings({"unchecked", "rawtypes"})
  public static EventSerdes registry(KafkaSettings settings) {
    Deserializer events = AvroSerdes.valueDeserializer(settings);
    return new EventSerdes(events, AvroSerdes.valueSerde(settings), AvroSerdes.valueSerde(settings));
  }
}
