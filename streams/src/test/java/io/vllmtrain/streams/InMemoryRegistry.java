package io.vllmtrain.streams;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.specific.SpecificData;
import org.apache.avro.specific.SpecificDatumReader;
import org.apache.avro.specific.SpecificDatumWriter;
import org.apache.avro.specific.SpecificRecordBase;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/**
 * A schema registry in a map, for TopologyTestDriver tests: values are written in the same Confluent framing as the
 * real serdes (magic byte 0, 4-byte schema id, Avro binary) and read back into their specific classes by the writer
 * schema's id. Bytes that are not framed, or carry an id it never issued, fail as they would against the registry.
 */
final class InMemoryRegistry {
  private final Map<Integer, Schema> byId = new ConcurrentHashMap<>();
  private final Map<String, Integer> idBySchema = new ConcurrentHashMap<>();

  <T extends SpecificRecordBase> Serializer<T> serializer() {
    return (topic, record) -> {
      if (record == null) {
        return null;
      }
      Schema schema = record.getSchema();
      int id = idBySchema.computeIfAbsent(schema.toString(), s -> {
        int next = byId.size() + 1;
        byId.put(next, schema);
        return next;
      });
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      out.write(0);
      out.writeBytes(ByteBuffer.allocate(4).putInt(id).array());
      BinaryEncoder enc = EncoderFactory.get().binaryEncoder(out, null);
      try {
        new SpecificDatumWriter<T>(schema, record.getSpecificData()).write(record, enc);
        enc.flush();
      } catch (IOException e) {
        throw new SerializationException(e);
      }
      return out.toByteArray();
    };
  }

  Deserializer<Object> deserializer() {
    return (topic, data) -> {
      if (data == null) {
        return null;
      }
      if (data.length < 5 || data[0] != 0) {
        throw new SerializationException("not a schema-registry framed Avro record");
      }
      int id = ByteBuffer.wrap(data, 1, 4).getInt();
      Schema writer = byId.get(id);
      if (writer == null) {
        throw new SerializationException("schema id " + id + " is unknown to the registry");
      }
      SpecificData model = SpecificData.getForSchema(writer);
      Schema reader = model.getSchema(model.getClass(writer));
      BinaryDecoder dec = DecoderFactory.get().binaryDecoder(data, 5, data.length - 5, null);
      try {
        return new SpecificDatumReader<>(writer, reader, model).read(null, dec);
      } catch (IOException | RuntimeException e) {
        throw new SerializationException("cannot decode schema id " + id + ": " + e.getMessage(), e);
      }
    };
  }

  @SuppressWarnings("unchecked")
  <T extends SpecificRecordBase> Deserializer<T> deserializer(Class<T> type) {
    Deserializer<Object> any = deserializer();
    return (topic, data) -> type.cast(any.deserialize(topic, data));
  }

  <T extends SpecificRecordBase> Serde<T> serde(Class<T> type) {
    return Serdes.serdeFrom(serializer(), deserializer(type));
  }

  EventSerdes eventSerdes() {
    return new EventSerdes(deserializer(), serde(io.vllmtrain.events.PreferencePair.class),
        serde(io.vllmtrain.events.PreferenceBatch.class));
  }
}
